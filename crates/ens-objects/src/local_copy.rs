//! An import from a bucket folder into a folder of image files, copied by the kernel.
//!
//! Both ends on this machine's filesystems: the bytes need not pass through the program to be
//! copied. The file is copied in chunks with `copy_file_range` (what `std::io::copy` uses
//! between two files), and a second thread hashes each chunk as it lands, reading it back from
//! the copy (from the page cache), so the recorded SHA-256 is that of the bytes stored, and the
//! copy of one chunk overlaps the hashing of the one before. BENCHMARKS.md ("Importing a large
//! image") has what it saves over the generic path, where every byte is read into the program
//! and written out of it.
//!
//! The copy goes to a staged file beside the target (`<file>#import-<n>`, the convention of the
//! generic path's uploads, which the image's clean-ups remove), made durable, then renamed into
//! place: the image file appears whole or not at all.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use sha2::{Digest, Sha256};

use crate::qcow2::{Header, HEADER_PROBE_BYTES};
use crate::transfer::TransferError;

/// Bytes one `copy_file_range` pass copies before its range is handed to the hasher.
const CHUNK_BYTES: u64 = 64 << 20;

/// Bytes the hasher reads back at a time (one reused buffer).
const HASH_READ_BYTES: usize = 8 << 20;

/// Chunks copied ahead of the hasher; bounds how far the copy runs ahead (the page cache
/// holds them, not the program).
const CHUNKS_AHEAD: usize = 2;

/// Staged file names taken by this process, so concurrent imports never share one.
static STAGED: AtomicU64 = AtomicU64::new(0);

/// What a copy between folders produced.
#[derive(Debug)]
pub(crate) struct LocalCopy {
    /// The qcow2 header of the source, checked before anything was written.
    pub header: Header,
    /// Bytes copied.
    pub bytes: u64,
    /// SHA-256 of the stored copy, lower-case hex.
    pub sha256: String,
}

/// Copies the `size`-byte file `source` to `target` (see the module doc). Refuses a file
/// that is not qcow2 before writing anything.
pub(crate) fn copy_between_folders(
    source: &Path,
    target: &Path,
    size: u64,
) -> Result<LocalCopy, TransferError> {
    let file = File::open(source).map_err(io_error)?;
    let probe_len = usize::try_from(size.min(HEADER_PROBE_BYTES as u64)).unwrap_or(HEADER_PROBE_BYTES);
    let mut probe = vec![0; probe_len];
    file.read_exact_at(&mut probe, 0).map_err(io_error)?;
    let header = Header::parse(&probe)?;

    let staged = staged_name(target)?;
    let copied = copy_and_hash(&file, &staged, size).and_then(|sha256| {
        publish(&staged, target)?;
        Ok(sha256)
    });
    match copied {
        Ok(sha256) => Ok(LocalCopy {
            header,
            bytes: size,
            sha256,
        }),
        Err(error) => {
            let _ = std::fs::remove_file(&staged);
            Err(error)
        }
    }
}

/// `<target>#import-<pid>-<n>`, in the target's folder (created if needed).
fn staged_name(target: &Path) -> Result<PathBuf, TransferError> {
    let (Some(folder), Some(name)) = (target.parent(), target.file_name()) else {
        return Err(io_error(std::io::Error::other(
            "an image file path without a folder",
        )));
    };
    std::fs::create_dir_all(folder).map_err(io_error)?;
    let n = STAGED.fetch_add(1, Ordering::Relaxed);
    Ok(folder.join(format!(
        "{}#import-{}-{n}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Copies `size` bytes of `source` into a new file `staged`, chunk by chunk, while another
/// thread hashes each copied chunk; returns the hex SHA-256 of the copy.
fn copy_and_hash(source: &File, staged: &Path, size: u64) -> Result<String, TransferError> {
    let copy = File::create(staged).map_err(io_error)?;
    let (copied_tx, copied_rx) = mpsc::sync_channel::<(u64, u64)>(CHUNKS_AHEAD);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || hash_ranges(staged, copied_rx));
        let copying = (|| {
            let mut reader = source;
            let mut writer = &copy;
            let mut done = 0_u64;
            while done < size {
                let want = CHUNK_BYTES.min(size - done);
                let got = std::io::copy(&mut Read::take(&mut reader, want), &mut writer).map_err(io_error)?;
                if got == 0 {
                    return Err(io_error(std::io::Error::other(
                        "the object became shorter while it was copied",
                    )));
                }
                // A hasher that stopped has its own error to report.
                if copied_tx.send((done, got)).is_err() {
                    break;
                }
                done += got;
            }
            copy.sync_all().map_err(io_error)
        })();
        drop(copied_tx);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(io_error(std::io::Error::other("the hashing thread failed"))));
        copying?;
        hashed
    })
}

/// Hashes the ranges of `path` received from `ranges`, in order, until the sender is done.
fn hash_ranges(path: &Path, ranges: mpsc::Receiver<(u64, u64)>) -> Result<String, TransferError> {
    let file = File::open(path).map_err(io_error)?;
    let mut buffer = vec![0; HASH_READ_BYTES];
    let mut hasher = Sha256::new();
    for (start, len) in ranges {
        let mut offset = start;
        let end = start.saturating_add(len);
        while offset < end {
            let step = usize::try_from((end - offset).min(HASH_READ_BYTES as u64)).unwrap_or(HASH_READ_BYTES);
            let block = buffer
                .get_mut(..step)
                .ok_or_else(|| io_error(std::io::Error::other("a hash step larger than its buffer")))?;
            file.read_exact_at(block, offset).map_err(io_error)?;
            hasher.update(&*block);
            offset += step as u64;
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Renames the durable staged file into place and makes the rename durable too.
fn publish(staged: &Path, target: &Path) -> Result<(), TransferError> {
    std::fs::rename(staged, target).map_err(io_error)?;
    if let Some(folder) = target.parent() {
        File::open(folder)
            .and_then(|folder| folder.sync_all())
            .map_err(io_error)?;
    }
    Ok(())
}

fn io_error(error: std::io::Error) -> TransferError {
    TransferError::Storage(object_store::Error::Generic {
        store: "local folder",
        source: Box::new(error),
    })
}
