//! Streaming copies between the operator's buckets and the service's own image files.
//!
//! An import reads the source object once, in blocks read by range: every block is counted,
//! hashed (SHA-256) and sent as a part of a multipart upload of the image file; the qcow2
//! header is parsed from the first [`HEADER_PROBE_BYTES`] before any upload starts, so a
//! file that is not qcow2 is refused without writing anything. Once the upload completes,
//! the stored copy's tables are read back by range to refuse a truncated image. A failed
//! import leaves no image file behind.
//!
//! Memory: the object is read in blocks of one part each, at most `READS_AHEAD` (2) ahead,
//! and each block is sent as a part as it is, with at most `PARTS_IN_FLIGHT` (3) parts being
//! sent; so a copy holds at most `(READS_AHEAD + PARTS_IN_FLIGHT) × part size` bytes of the
//! file. A part is `PART_BYTES` (8 MiB), or larger for objects over 10 000 parts of that
//! size so an S3 upload stays within S3's 10 000-part limit: 40 MiB for anything up to
//! 78 GiB, 55 MiB at the default 100 GiB import limit. While checking, a copy also holds the
//! L1 table (at most 32 MiB, the parser's limit) or one 8 MiB span of L2 tables.
//!
//! Objects become visible only when their upload completes (S3 multipart uploads and local
//! staged files both publish at completion), and an aborted upload leaves no object. An
//! upload whose process is killed leaves its staged file in a local folder, which
//! [`ImageFiles::discard`] removes for image files, and the next export of the same key for
//! a bucket; on S3 its parts stay invisible until the bucket's lifecycle rule for incomplete
//! multipart uploads removes them.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use ens_domain::{ImageId, InvalidField};

use crate::buckets::{object_path, Bucket, ObjectError};
use crate::local_copy::copy_between_folders;
use crate::qcow2::{Header, Qcow2Error, HEADER_PROBE_BYTES};

/// Size of one uploaded part for objects up to `MAX_PARTS × PART_BYTES`.
const PART_BYTES: u64 = 8 << 20;

/// Parts of one upload being sent at once; bounds a copy's memory with the part size.
const PARTS_IN_FLIGHT: usize = 3;

/// S3's limit on the parts of one multipart upload.
const MAX_PARTS: u64 = 10_000;

/// Widest span of the stored copy whose L2 tables are read back in one request.
const CHECK_SPAN_BYTES: u64 = 8 << 20;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// How large an imported object may be; an operator setting, so an import cannot fill the
/// image store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Largest source object accepted, in bytes.
    pub max_bytes: u64,
}

impl Default for ImportLimits {
    /// 100 GiB.
    fn default() -> Self {
        Self { max_bytes: 100 * GIB }
    }
}

/// An imported disk as stored: what the catalog records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedFile {
    /// The image file's key in the image store (`images/<image-id>/disk-<n>.qcow2`).
    pub key: String,
    /// The file's length.
    pub bytes: u64,
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    /// The disk's virtual size from the qcow2 header, in bytes.
    pub virtual_size: u64,
    /// The virtual size in GiB, rounded up: the image's `ImageSize`.
    pub size_gib: u64,
}

/// Why a transfer failed; the `Display` text is the reason an image owner is shown.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The source object does not exist.
    #[error("object {bucket}/{key} does not exist")]
    SourceMissing {
        /// The bucket as the request named it.
        bucket: String,
        /// The object key.
        key: String,
    },
    /// The stored image file to export is gone.
    #[error("the image's file {key} is missing from the image store")]
    ImageFileMissing {
        /// The image file's key.
        key: String,
    },
    /// The source object has no bytes.
    #[error("object {bucket}/{key} is empty")]
    Empty {
        /// The bucket as the request named it.
        bucket: String,
        /// The object key.
        key: String,
    },
    /// The source object is over the import limit.
    #[error("object {bucket}/{key} is larger than the {} limit", describe_size(*.limit_bytes))]
    TooLarge {
        /// The bucket as the request named it.
        bucket: String,
        /// The object key.
        key: String,
        /// The limit, in bytes.
        limit_bytes: u64,
    },
    /// The object is not a usable qcow2 image (not qcow2, unsupported or truncated).
    #[error(transparent)]
    Image(#[from] Qcow2Error),
    /// A name that could reach outside its store.
    #[error(transparent)]
    InvalidName(#[from] InvalidField),
    /// The bucket could not be resolved (unknown bucket, invalid name).
    #[error(transparent)]
    Bucket(#[from] ObjectError),
    /// The object storage failed (network, permissions, disk).
    #[error("object storage failed: {0}")]
    Storage(#[source] object_store::Error),
}

impl TransferError {
    /// True when the same transfer may succeed if tried again (the storage or network
    /// failed); false when the content or the request must change first.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Storage(error) | Self::Bucket(ObjectError::Storage(error)) => {
                storage_failure_is_transient(error)
            }
            Self::Bucket(ObjectError::Removal { .. }) => true,
            Self::SourceMissing { .. }
            | Self::ImageFileMissing { .. }
            | Self::Empty { .. }
            | Self::TooLarge { .. }
            | Self::Image(_)
            | Self::InvalidName(_)
            | Self::Bucket(_) => false,
        }
    }
}

/// False for failures that repeat until someone changes a name, a permission or the code.
fn storage_failure_is_transient(error: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        error,
        E::NotFound { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

/// `1000 bytes`, `512 MiB`, `100 GiB`: a limit as a person reads it.
fn describe_size(bytes: u64) -> String {
    if bytes >= GIB && bytes % GIB == 0 {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= MIB && bytes % MIB == 0 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{bytes} bytes")
    }
}

/// The service's own image files, one folder `images/<image-id>/` per image holding
/// `disk-<n>.qcow2` (0 the system disk, 1.. data disks).
#[derive(Debug, Clone)]
pub struct ImageFiles {
    bucket: Bucket,
}

impl ImageFiles {
    pub(crate) fn new(bucket: Bucket) -> Self {
        Self { bucket }
    }

    fn store(&self) -> &dyn ObjectStore {
        self.bucket.store().as_ref()
    }

    /// Copies the qcow2 object `source_key` of `source` into disk `disk` of image
    /// `image_id`, checking it on the way (see the module doc). A failure discards every
    /// file of the image: an import is all or nothing, and a retry starts again at disk 0.
    ///
    /// # Errors
    /// Content problems (`SourceMissing`, `Empty`, `TooLarge`, `Image`, `InvalidName`) and
    /// `Storage` failures, which [`TransferError::is_retryable`] tells apart.
    pub async fn import(
        &self,
        source: &Bucket,
        source_key: &str,
        image_id: &str,
        disk: usize,
        limits: &ImportLimits,
    ) -> Result<ImportedFile, TransferError> {
        let target = disk_path(image_id, disk)?;
        match self.copy_checked(source, source_key, &target, limits).await {
            Ok(imported) => {
                tracing::info!(
                    image_id,
                    disk,
                    source = %format_args!("{}/{source_key}", source.name()),
                    key = %imported.key,
                    bytes = imported.bytes,
                    "imported an image file"
                );
                Ok(imported)
            }
            Err(error) => {
                if let Err(cleanup) = self.discard(image_id).await {
                    tracing::warn!(image_id, error = %cleanup, "could not discard a failed import");
                }
                Err(error)
            }
        }
    }

    async fn copy_checked(
        &self,
        source: &Bucket,
        source_key: &str,
        target: &ObjectPath,
        limits: &ImportLimits,
    ) -> Result<ImportedFile, TransferError> {
        let source_path = object_path("OSSObject", source_key)?;
        let found = source
            .store()
            .head(&source_path)
            .await
            .map_err(|error| match error {
                object_store::Error::NotFound { .. } => TransferError::SourceMissing {
                    bucket: source.name().to_owned(),
                    key: source_key.to_owned(),
                },
                other => TransferError::Storage(other),
            })?;
        let declared = found.size;
        if declared > limits.max_bytes {
            return Err(TransferError::TooLarge {
                bucket: source.name().to_owned(),
                key: source_key.to_owned(),
                limit_bytes: limits.max_bytes,
            });
        }
        if let (Some(from), Some(into), true) =
            (source.direct_folder(), self.bucket.direct_folder(), declared > 0)
        {
            let source_file = from
                .path_to_filesystem(&source_path)
                .map_err(TransferError::Storage)?;
            let target_file = into.path_to_filesystem(target).map_err(TransferError::Storage)?;
            let copied = tokio::task::spawn_blocking(move || {
                copy_between_folders(&source_file, &target_file, declared)
            })
            .await
            .map_err(|failed| {
                TransferError::Storage(object_store::Error::Generic {
                    store: "local folder",
                    source: Box::new(failed),
                })
            })??;
            self.check_tables(target, &copied.header, copied.bytes).await?;
            return Ok(ImportedFile {
                key: target.to_string(),
                bytes: copied.bytes,
                sha256: copied.sha256,
                virtual_size: copied.header.virtual_size,
                size_gib: copied.header.size_gib(),
            });
        }
        let mut incoming = Incoming {
            stream: read_blocks(source.store(), &source_path, declared),
            hasher: Sha256::new(),
            bytes: 0,
            limit_bytes: limits.max_bytes,
            bucket: source.name(),
            key: source_key,
        };

        let leading = incoming.leading(HEADER_PROBE_BYTES).await?;
        if leading.is_empty() {
            return Err(TransferError::Empty {
                bucket: source.name().to_owned(),
                key: source_key.to_owned(),
            });
        }
        let probe: Vec<u8> = leading
            .iter()
            .flat_map(|chunk| chunk.iter().copied())
            .take(HEADER_PROBE_BYTES)
            .collect();
        let header = Header::parse(&probe)?;

        let mut upload = PartWriter::start(self.store(), target).await?;
        let copied = async {
            for chunk in leading {
                upload.send(chunk).await?;
            }
            while let Some(chunk) = incoming.next().await? {
                upload.send(chunk).await?;
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => upload.finish().await?,
            Err(error) => {
                upload.abort().await;
                return Err(error);
            }
        }

        let bytes = incoming.bytes;
        self.check_tables(target, &header, bytes).await?;
        Ok(ImportedFile {
            key: target.to_string(),
            bytes,
            sha256: hex::encode(incoming.hasher.finalize()),
            virtual_size: header.virtual_size,
            size_gib: header.size_gib(),
        })
    }

    /// Reads the stored copy's tables back and refuses an image whose tables or data
    /// clusters point past its end.
    async fn check_tables(
        &self,
        path: &ObjectPath,
        header: &Header,
        file_len: u64,
    ) -> Result<(), TransferError> {
        header.check_tables_within(file_len)?;
        let l1_range = header.l1_table_range();
        let l1_table = if l1_range.is_empty() {
            Bytes::new()
        } else {
            let mut read = self.read_tables(path, &[l1_range], file_len).await?;
            read.pop().unwrap_or_default()
        };
        let mut l2_tables = header.l2_tables(&l1_table, file_len)?;
        drop(l1_table);
        l2_tables.sort_unstable();
        let table_len = header.l2_table_len();
        // Tables are read in groups spanning at most CHECK_SPAN_BYTES of the file: a store
        // may fetch a group's whole span in one request.
        let mut group: Vec<Range<u64>> = Vec::new();
        for offset in l2_tables {
            let range = offset..offset.saturating_add(table_len);
            if group
                .first()
                .is_some_and(|first| range.end.saturating_sub(first.start) > CHECK_SPAN_BYTES)
            {
                for table in self.read_tables(path, &group, file_len).await? {
                    header.check_l2_table(&table, file_len)?;
                }
                group.clear();
            }
            group.push(range);
        }
        if !group.is_empty() {
            for table in self.read_tables(path, &group, file_len).await? {
                header.check_l2_table(&table, file_len)?;
            }
        }
        Ok(())
    }

    /// The bytes of each of `ranges` (none empty) of the stored file of `file_len` bytes; a
    /// range the file ends within means a truncated image.
    async fn read_tables(
        &self,
        path: &ObjectPath,
        ranges: &[Range<u64>],
        file_len: u64,
    ) -> Result<Vec<Bytes>, TransferError> {
        if let Some(past_end) = ranges.iter().find(|range| range.end > file_len) {
            let reason = format!(
                "the table at offset {} ends past the end of the file",
                past_end.start
            );
            return Err(Qcow2Error::Truncated(reason).into());
        }
        self.store()
            .get_ranges(path, ranges)
            .await
            .map_err(TransferError::Storage)
    }

    /// Removes every file of `image_id`, including what an upload killed mid-way left in a
    /// local folder (its staged part files); nothing to remove is fine.
    ///
    /// # Errors
    /// `InvalidName` for a malformed ID; `Storage` or `Removal` when the store refuses.
    pub async fn discard(&self, image_id: &str) -> Result<(), ObjectError> {
        let folder = image_folder(image_id)?;
        if let Some(local) = self.bucket.folder() {
            // Staged uploads are files beside their target that listings skip: remove the
            // image's whole folder.
            let path = local.path_to_filesystem(&folder)?;
            return match tokio::fs::remove_dir_all(&path).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    Err(ObjectError::Removal { path, source: error })
                }
                _ => Ok(()),
            };
        }
        let listed = self
            .store()
            .list(Some(&folder))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store().delete_stream(listed);
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// The ID of every image with a folder in the store, including a folder holding only
    /// what a killed upload left, so a sweep can remove those no image refers to. Folders
    /// whose names are not image IDs are not the service's and are left out.
    ///
    /// # Errors
    /// `Storage` when the store cannot be listed.
    pub async fn image_ids(&self) -> Result<Vec<String>, ObjectError> {
        let listing = match self
            .store()
            .list_with_delimiter(Some(&ObjectPath::from(IMAGES_FOLDER)))
            .await
        {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(ObjectPath::filename)
            .filter(|name| ImageId::parse(name).is_ok())
            .map(str::to_owned)
            .collect())
    }

    /// Streams the image file `key` to `target_key` in `target` as a multipart upload, so
    /// the object appears only once complete; returns the bytes written.
    ///
    /// # Errors
    /// `ImageFileMissing`, `InvalidName` for a bad target key, or `Storage`.
    pub async fn export(&self, key: &str, target: &Bucket, target_key: &str) -> Result<u64, TransferError> {
        let source_path = object_path("image file key", key)?;
        let target_path = object_path("OSSObject", target_key)?;
        target.remove_staged(&target_path)?;
        let found = self
            .store()
            .head(&source_path)
            .await
            .map_err(|error| match error {
                object_store::Error::NotFound { .. } => {
                    TransferError::ImageFileMissing { key: key.to_owned() }
                }
                other => TransferError::Storage(other),
            })?;
        let mut upload = PartWriter::start(target.store().as_ref(), &target_path).await?;
        let mut stream = read_blocks(self.bucket.store(), &source_path, found.size);
        let copied = async {
            let mut bytes: u64 = 0;
            while let Some(chunk) = stream.try_next().await.map_err(TransferError::Storage)? {
                bytes += chunk.len() as u64;
                upload.send(chunk).await?;
            }
            Ok(bytes)
        }
        .await;
        match copied {
            Ok(bytes) => {
                upload.finish().await?;
                tracing::info!(
                    key,
                    target = %format_args!("{}/{target_key}", target.name()),
                    bytes,
                    "exported an image file"
                );
                Ok(bytes)
            }
            Err(error) => {
                upload.abort().await;
                Err(error)
            }
        }
    }

    /// Writes a small image made in memory (a sparse qcow2 standing for an image built by
    /// `CreateImage`) to `target_key` in `target` in one request; returns its length.
    ///
    /// # Errors
    /// `InvalidName` for a bad target key, or `Storage`.
    pub async fn export_bytes(
        &self,
        bytes: Bytes,
        target: &Bucket,
        target_key: &str,
    ) -> Result<u64, TransferError> {
        let target_path = object_path("OSSObject", target_key)?;
        target.remove_staged(&target_path)?;
        let len = bytes.len() as u64;
        target
            .store()
            .put(&target_path, PutPayload::from(bytes))
            .await
            .map_err(TransferError::Storage)?;
        Ok(len)
    }
}

/// The folder of the image store holding one folder per image.
const IMAGES_FOLDER: &str = "images";

/// `images/<image-id>`: refuses an ID that is not one plain path segment.
fn image_folder(image_id: &str) -> Result<ObjectPath, InvalidField> {
    let id = ImageId::parse(image_id)?;
    ObjectPath::parse(format!("{IMAGES_FOLDER}/{}", id.as_str()))
        .map_err(|error| InvalidField::new("ImageId", error.to_string()))
}

/// `images/<image-id>/disk-<n>.qcow2`.
fn disk_path(image_id: &str, disk: usize) -> Result<ObjectPath, InvalidField> {
    Ok(image_folder(image_id)?.join(format!("disk-{disk}.qcow2")))
}

/// The source stream of an import, counted against the limit and hashed as it passes.
struct Incoming<'a> {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    hasher: Sha256,
    bytes: u64,
    limit_bytes: u64,
    bucket: &'a str,
    key: &'a str,
}

impl Incoming<'_> {
    async fn next(&mut self) -> Result<Option<Bytes>, TransferError> {
        let Some(chunk) = self.stream.try_next().await.map_err(TransferError::Storage)? else {
            return Ok(None);
        };
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        if self.bytes > self.limit_bytes {
            return Err(self.too_large());
        }
        self.hasher.update(&chunk);
        Ok(Some(chunk))
    }

    /// The first chunks, holding at least `len` bytes unless the object is shorter.
    async fn leading(&mut self, len: usize) -> Result<Vec<Bytes>, TransferError> {
        let mut chunks = Vec::new();
        let mut held = 0;
        while held < len {
            let Some(chunk) = self.next().await? else { break };
            held += chunk.len();
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    fn too_large(&self) -> TransferError {
        TransferError::TooLarge {
            bucket: self.bucket.to_owned(),
            key: self.key.to_owned(),
            limit_bytes: self.limit_bytes,
        }
    }
}

/// Blocks read ahead while the one before is hashed and written: reading and writing
/// overlap, and at most this many blocks are held.
const READS_AHEAD: usize = 2;

/// The `size` bytes of `path` as blocks of one part each ([`part_size`]), in order, read by
/// range [`READS_AHEAD`] at a time. A store's own streaming read of a local file goes 8 KiB
/// at a time, each through the blocking thread pool, which made an import ten times slower
/// than a plain copy (BENCHMARKS.md, "Importing a large image"); a whole part read by range
/// costs one request on S3 and one blocking read on a folder, and is sent on as it is.
fn read_blocks(
    store: &Arc<dyn ObjectStore>,
    path: &ObjectPath,
    size: u64,
) -> BoxStream<'static, object_store::Result<Bytes>> {
    let (store, path) = (Arc::clone(store), path.clone());
    let block_bytes = part_size(size);
    futures_util::stream::iter(0..size.div_ceil(block_bytes))
        .map(move |block| {
            let (store, path) = (Arc::clone(&store), path.clone());
            let start = block.saturating_mul(block_bytes);
            let range = start..start.saturating_add(block_bytes).min(size);
            async move { store.get_range(&path, range).await }
        })
        .buffered(READS_AHEAD)
        .boxed()
}

/// Part size for an object of `total_bytes`: `PART_BYTES`, or whole MiB large enough to fit
/// in `MAX_PARTS` parts.
fn part_size(total_bytes: u64) -> u64 {
    total_bytes
        .div_ceil(MAX_PARTS)
        .next_multiple_of(MIB)
        .max(PART_BYTES)
}

/// A multipart upload fed whole parts, never with more than `PARTS_IN_FLIGHT` of them
/// being sent: each block read is sent as it is, without being copied into a part buffer.
struct PartWriter {
    upload: Box<dyn MultipartUpload>,
    sending: JoinSet<object_store::Result<()>>,
}

impl PartWriter {
    async fn start(store: &dyn ObjectStore, path: &ObjectPath) -> Result<Self, TransferError> {
        let upload = store.put_multipart(path).await.map_err(TransferError::Storage)?;
        Ok(Self {
            upload,
            sending: JoinSet::new(),
        })
    }

    /// Sends `part` as the next part, first waiting for one to finish whenever
    /// `PARTS_IN_FLIGHT` are under way.
    async fn send(&mut self, part: Bytes) -> Result<(), TransferError> {
        while self.sending.len() >= PARTS_IN_FLIGHT {
            self.settle_one().await?;
        }
        self.sending.spawn(self.upload.put_part(PutPayload::from(part)));
        Ok(())
    }

    /// Waits for one part being sent.
    async fn settle_one(&mut self) -> Result<(), TransferError> {
        match self.sending.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(error))) => Err(TransferError::Storage(error)),
            Some(Err(failed)) => Err(TransferError::Storage(object_store::Error::Generic {
                store: "upload",
                source: Box::new(failed),
            })),
        }
    }

    /// Waits for every part being sent.
    async fn settle(&mut self) -> Result<(), TransferError> {
        while !self.sending.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Waits for the parts and publishes the object.
    async fn finish(mut self) -> Result<(), TransferError> {
        self.settle().await?;
        self.upload.complete().await.map_err(TransferError::Storage)?;
        Ok(())
    }

    /// Drops the parts sent so far; the object never appears. A failure here only leaves
    /// parts for the store's own clean-up, so it is logged rather than returned.
    async fn abort(mut self) {
        self.sending.abort_all();
        while self.sending.join_next().await.is_some() {}
        if let Err(error) = self.upload.abort().await {
            tracing::warn!(%error, "could not abort a multipart upload");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use object_store::{
        Attributes, Extensions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
        ObjectMeta, PutMultipartOptions, PutOptions, PutResult, UploadPart,
    };
    use tokio::sync::Notify;

    use super::*;
    use crate::buckets::{BucketConfig, Buckets};

    /// A data directory with the default image store and two local buckets.
    struct World {
        dir: tempfile::TempDir,
        buckets: Buckets,
    }

    impl World {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for bucket in ["images-in", "exports"] {
                std::fs::create_dir_all(dir.path().join("buckets").join(bucket)).unwrap();
            }
            let buckets = Buckets::open(BucketConfig::load(None, dir.path()).unwrap()).unwrap();
            Self { dir, buckets }
        }

        fn bucket(&self, name: &str) -> Bucket {
            self.buckets.resolve("cn-beijing", name).unwrap()
        }

        fn bucket_folder(&self, name: &str) -> PathBuf {
            self.dir.path().join("buckets").join(name)
        }

        fn image_folder(&self, image_id: &str) -> PathBuf {
            self.dir.path().join("image-files/images").join(image_id)
        }

        /// Puts `content` in bucket `images-in` as `key`.
        fn upload(&self, key: &str, content: &[u8]) {
            let path = self.bucket_folder("images-in").join(key);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }

        async fn import(
            &self,
            key: &str,
            image_id: &str,
            disk: usize,
        ) -> Result<ImportedFile, TransferError> {
            self.import_limited(key, image_id, disk, &ImportLimits::default())
                .await
        }

        async fn import_limited(
            &self,
            key: &str,
            image_id: &str,
            disk: usize,
            limits: &ImportLimits,
        ) -> Result<ImportedFile, TransferError> {
            let source = self.bucket("images-in");
            self.buckets
                .image_files()
                .import(&source, key, image_id, disk, limits)
                .await
        }
    }

    async fn run(program: &str, args: &[&str]) -> Vec<u8> {
        let output = tokio::process::Command::new(program)
            .args(args)
            .output()
            .await
            .unwrap_or_else(|error| {
                panic!("{program} is needed by these tests (apt-get install qemu-utils): {error}")
            });
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// An empty qcow2 image of `virtual_size` (`64M`, `3G`) made by qemu-img.
    async fn empty_qcow2(dir: &Path, virtual_size: &str) -> Vec<u8> {
        let file = dir.join(format!("empty-{virtual_size}.qcow2"));
        run(
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                file.to_str().unwrap(),
                virtual_size,
            ],
        )
        .await;
        std::fs::read(file).unwrap()
    }

    /// A qcow2 image holding `data_mib` MiB of random data in a 64 MiB disk.
    async fn qcow2_with_data(dir: &Path, data_mib: u64) -> Vec<u8> {
        let raw = dir.join(format!("data-{data_mib}.raw"));
        let qcow2 = dir.join(format!("data-{data_mib}.qcow2"));
        let mut random = std::io::Read::take(std::fs::File::open("/dev/urandom").unwrap(), data_mib * MIB);
        let mut file = std::fs::File::create(&raw).unwrap();
        std::io::copy(&mut random, &mut file).unwrap();
        file.set_len(64 * MIB).unwrap();
        drop(file);
        run(
            "qemu-img",
            &[
                "convert",
                "-q",
                "-f",
                "raw",
                "-O",
                "qcow2",
                raw.to_str().unwrap(),
                qcow2.to_str().unwrap(),
            ],
        )
        .await;
        std::fs::read(qcow2).unwrap()
    }

    /// SHA-256 by `sha256sum`, independent of the code under test.
    async fn sha256sum(file: &Path) -> String {
        let output = run("sha256sum", &[file.to_str().unwrap()]).await;
        String::from_utf8(output)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn a_qcow2_object_is_imported_whole_and_hashed() {
        let world = World::new();
        let image = qcow2_with_data(world.dir.path(), 4).await;
        world.upload("dir/disk.qcow2", &image);

        let imported = world.import("dir/disk.qcow2", "m-abc", 0).await.unwrap();

        assert_eq!(imported.key, "images/m-abc/disk-0.qcow2");
        assert_eq!(imported.bytes, image.len() as u64);
        assert_eq!(
            imported.sha256,
            sha256sum(&world.bucket_folder("images-in").join("dir/disk.qcow2")).await
        );
        assert_eq!(imported.virtual_size, 64 * MIB);
        assert_eq!(imported.size_gib, 1);
        let stored = world.image_folder("m-abc").join("disk-0.qcow2");
        assert_eq!(std::fs::read(stored).unwrap(), image);
        assert_eq!(imported.key, "images/m-abc/disk-0.qcow2");
        assert!(!world.image_folder("m-abc").join("disk-1.qcow2").exists());
    }

    #[tokio::test]
    async fn data_disks_get_their_own_files_and_sizes() {
        let world = World::new();
        world.upload("system.qcow2", &empty_qcow2(world.dir.path(), "64M").await);
        world.upload("data.qcow2", &empty_qcow2(world.dir.path(), "3G").await);

        let system = world.import("system.qcow2", "m-two", 0).await.unwrap();
        let data = world.import("data.qcow2", "m-two", 1).await.unwrap();

        assert_eq!(
            (system.key.as_str(), system.size_gib),
            ("images/m-two/disk-0.qcow2", 1)
        );
        assert_eq!(
            (data.key.as_str(), data.size_gib),
            ("images/m-two/disk-1.qcow2", 3)
        );
        assert_eq!(data.virtual_size, 3 * GIB);
    }

    #[tokio::test]
    async fn a_missing_object_is_named_and_leaves_nothing() {
        let world = World::new();
        let error = world.import("nope/disk.qcow2", "m-missing", 0).await.unwrap_err();
        assert!(matches!(error, TransferError::SourceMissing { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            "object images-in/nope/disk.qcow2 does not exist"
        );
        assert!(!error.is_retryable());
        assert!(!world.image_folder("m-missing").exists());
    }

    #[tokio::test]
    async fn an_empty_object_is_refused() {
        let world = World::new();
        world.upload("empty.qcow2", b"");
        let error = world.import("empty.qcow2", "m-empty", 0).await.unwrap_err();
        assert!(matches!(error, TransferError::Empty { .. }), "{error:?}");
        assert_eq!(error.to_string(), "object images-in/empty.qcow2 is empty");
        assert!(!world.image_folder("m-empty").exists());
    }

    #[tokio::test]
    async fn random_bytes_are_not_qcow2() {
        let world = World::new();
        let mut random = vec![0_u8; 2 * 1024 * 1024];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut random).unwrap();
        world.upload("random.qcow2", &random);

        let error = world.import("random.qcow2", "m-random", 0).await.unwrap_err();

        assert!(
            matches!(error, TransferError::Image(Qcow2Error::NotQcow2)),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "the file is not a qcow2 image");
        assert!(!error.is_retryable());
        assert!(!world.image_folder("m-random").exists());
    }

    #[tokio::test]
    async fn a_file_shorter_than_a_header_is_refused() {
        let world = World::new();
        world.upload("tiny.qcow2", b"QFI\xfb");

        let error = world.import("tiny.qcow2", "m-tiny", 0).await.unwrap_err();

        assert!(
            matches!(error, TransferError::Image(Qcow2Error::Truncated(_))),
            "{error:?}"
        );
        assert!(!world.image_folder("m-tiny").exists());
    }

    #[tokio::test]
    async fn a_truncated_image_is_refused_and_removed() {
        let world = World::new();
        let image = qcow2_with_data(world.dir.path(), 4).await;
        // Half the data clusters, or only the last one: both are caught by reading the
        // stored copy's L2 tables back.
        for (key, len) in [
            ("half.qcow2", image.len() / 2),
            ("last.qcow2", image.len() - 65536),
        ] {
            world.upload(key, &image[..len]);

            let error = world.import(key, "m-cut", 0).await.unwrap_err();

            assert!(
                matches!(error, TransferError::Image(Qcow2Error::Truncated(_))),
                "{key}: {error:?}"
            );
            assert!(!world.image_folder("m-cut").exists());
        }
    }

    #[tokio::test]
    async fn a_table_read_past_the_end_means_truncated() {
        let world = World::new();
        let image_files = world.buckets.image_files();
        let path = ObjectPath::parse("images/m-short/disk-0.qcow2").unwrap();
        image_files
            .store()
            .put(&path, PutPayload::from_static(&[1; 100]))
            .await
            .unwrap();

        let read = image_files
            .read_tables(&path, &[0..10, 90..100], 100)
            .await
            .unwrap();
        assert_eq!(read.iter().map(Bytes::len).collect::<Vec<_>>(), [10, 10]);
        let error = image_files
            .read_tables(&path, &[0..10, 64..128], 100)
            .await
            .unwrap_err();
        assert!(
            matches!(error, TransferError::Image(Qcow2Error::Truncated(_))),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn an_object_over_the_limit_is_refused() {
        let world = World::new();
        world.upload("big.qcow2", &empty_qcow2(world.dir.path(), "64M").await);
        let limits = ImportLimits { max_bytes: 1000 };

        let error = world
            .import_limited("big.qcow2", "m-big", 0, &limits)
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                TransferError::TooLarge {
                    limit_bytes: 1000,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "object images-in/big.qcow2 is larger than the 1000 bytes limit"
        );
        assert!(!world.image_folder("m-big").exists());
        assert_eq!(ImportLimits::default().max_bytes, 100 * GIB);
        assert_eq!(describe_size(100 * GIB), "100 GiB");
        assert_eq!(describe_size(512 * MIB), "512 MiB");
    }

    #[tokio::test]
    async fn a_failed_disk_discards_the_whole_image() {
        let world = World::new();
        world.upload("good.qcow2", &empty_qcow2(world.dir.path(), "64M").await);
        world.upload("bad.qcow2", b"not an image at all");
        world.import("good.qcow2", "m-half", 0).await.unwrap();

        world.import("bad.qcow2", "m-half", 1).await.unwrap_err();

        assert!(!world.image_folder("m-half").exists());
    }

    #[tokio::test]
    async fn malformed_names_are_refused() {
        let world = World::new();
        world.upload("ok.qcow2", &empty_qcow2(world.dir.path(), "64M").await);
        for image_id in ["..", ".", "a/b", ""] {
            let error = world.import("ok.qcow2", image_id, 0).await.unwrap_err();
            assert!(
                matches!(error, TransferError::InvalidName(_)),
                "{image_id}: {error:?}"
            );
            assert!(world.buckets.image_files().discard(image_id).await.is_err());
        }
        std::fs::write(world.dir.path().join("buckets/outside.qcow2"), b"QFI").unwrap();
        for key in ["../outside.qcow2", "/etc/passwd", "a/../../outside.qcow2"] {
            let error = world.import(key, "m-names", 0).await.unwrap_err();
            assert!(matches!(error, TransferError::InvalidName(_)), "{key}: {error:?}");
        }
        let image_files = world.buckets.image_files();
        let error = image_files
            .export_bytes(Bytes::from_static(b"x"), &world.bucket("exports"), "../escaped")
            .await
            .unwrap_err();
        assert!(matches!(error, TransferError::InvalidName(_)), "{error:?}");
        assert!(!world.dir.path().join("buckets/escaped").exists());
    }

    #[tokio::test]
    async fn discard_removes_leftovers_of_a_killed_upload_and_is_idempotent() {
        let world = World::new();
        let folder = world.image_folder("m-killed");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("disk-0.qcow2"), b"complete").unwrap();
        std::fs::write(folder.join("disk-1.qcow2#1"), b"staged part").unwrap();
        let image_files = world.buckets.image_files();

        image_files.discard("m-killed").await.unwrap();
        assert!(!folder.exists());
        image_files.discard("m-killed").await.unwrap();
        image_files.discard("m-never").await.unwrap();
    }

    #[tokio::test]
    async fn image_ids_list_every_image_folder_and_nothing_else() {
        let world = World::new();
        let image_files = world.buckets.image_files();
        assert!(image_files.image_ids().await.unwrap().is_empty());
        world.upload("disk.qcow2", &empty_qcow2(world.dir.path(), "64M").await);
        world.import("disk.qcow2", "m-kept", 0).await.unwrap();
        let killed = world.image_folder("m-killed");
        std::fs::create_dir_all(&killed).unwrap();
        std::fs::write(killed.join("disk-0.qcow2#1"), b"staged part").unwrap();
        std::fs::create_dir_all(world.image_folder("lost+found")).unwrap();

        let mut ids = image_files.image_ids().await.unwrap();
        ids.sort();

        assert_eq!(ids, ["m-kept", "m-killed"]);
    }

    #[tokio::test]
    async fn an_export_copies_the_image_file_byte_for_byte() {
        let world = World::new();
        let image = qcow2_with_data(world.dir.path(), 4).await;
        world.upload("disk.qcow2", &image);
        let imported = world.import("disk.qcow2", "m-out", 0).await.unwrap();
        let exports = world.bucket("exports");

        let written = world
            .buckets
            .image_files()
            .export(&imported.key, &exports, "out/m-out.qcow2")
            .await
            .unwrap();

        assert_eq!(written, image.len() as u64);
        let exported = world.bucket_folder("exports").join("out/m-out.qcow2");
        assert_eq!(std::fs::read(&exported).unwrap(), image);
        assert_eq!(
            exports.url("out/m-out.qcow2"),
            format!("file://{}", exported.canonicalize().unwrap().display())
        );
    }

    #[tokio::test]
    async fn exporting_a_missing_file_says_so() {
        let world = World::new();
        let error = world
            .buckets
            .image_files()
            .export(
                "images/m-gone/disk-0.qcow2",
                &world.bucket("exports"),
                "m-gone.qcow2",
            )
            .await
            .unwrap_err();
        assert!(
            matches!(error, TransferError::ImageFileMissing { .. }),
            "{error:?}"
        );
        assert!(!world.bucket_folder("exports").join("m-gone.qcow2").exists());
    }

    #[tokio::test]
    async fn export_bytes_writes_one_object() {
        let world = World::new();
        let written = world
            .buckets
            .image_files()
            .export_bytes(
                Bytes::from_static(b"sparse image"),
                &world.bucket("exports"),
                "p/m-s.qcow2",
            )
            .await
            .unwrap();
        assert_eq!(written, 12);
        assert_eq!(
            std::fs::read(world.bucket_folder("exports").join("p/m-s.qcow2")).unwrap(),
            b"sparse image"
        );
    }

    #[tokio::test]
    async fn an_export_clears_what_a_killed_upload_of_its_key_left() {
        let world = World::new();
        let image = qcow2_with_data(world.dir.path(), 2).await;
        world.upload("disk.qcow2", &image);
        let imported = world.import("disk.qcow2", "m-again", 0).await.unwrap();
        let out = world.bucket_folder("exports").join("out");
        std::fs::create_dir_all(&out).unwrap();
        // A killed upload's staged files, and a neighbour that only looks alike.
        std::fs::write(out.join("m-again.qcow2#1"), b"half").unwrap();
        std::fs::write(out.join("m-again.qcow2#7"), b"half").unwrap();
        std::fs::write(out.join("m-again.qcow2.keep"), b"other").unwrap();
        let files = world.buckets.image_files();
        files
            .export(&imported.key, &world.bucket("exports"), "out/m-again.qcow2")
            .await
            .unwrap();
        assert_eq!(
            files_under(&world.bucket_folder("exports")),
            ["out/m-again.qcow2", "out/m-again.qcow2.keep"]
        );
        std::fs::write(out.join("m-sparse.qcow2#3"), b"half").unwrap();
        files
            .export_bytes(
                Bytes::from_static(b"sparse"),
                &world.bucket("exports"),
                "out/m-sparse.qcow2",
            )
            .await
            .unwrap();
        assert!(!out.join("m-sparse.qcow2#3").exists());
        assert_eq!(std::fs::read(out.join("m-sparse.qcow2")).unwrap(), b"sparse");
    }

    /// Files under `folder`, relative, sorted (staged upload files included).
    fn files_under(folder: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![folder.to_owned()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path.strip_prefix(folder).unwrap().display().to_string());
                }
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn an_unfinished_upload_publishes_nothing() {
        let world = World::new();
        let exports = world.bucket("exports");
        let target = ObjectPath::parse("out/partial.qcow2").unwrap();
        let mut upload = PartWriter::start(exports.store().as_ref(), &target)
            .await
            .unwrap();
        upload
            .send(Bytes::from(vec![7_u8; 9 * 1024 * 1024]))
            .await
            .unwrap();
        upload.settle().await.unwrap();

        let head = exports.store().head(&target).await;
        assert!(
            matches!(head, Err(object_store::Error::NotFound { .. })),
            "{head:?}"
        );
        upload.abort().await;

        assert!(matches!(
            exports.store().head(&target).await,
            Err(object_store::Error::NotFound { .. })
        ));
        assert!(files_under(&world.bucket_folder("exports")).is_empty());
    }

    #[tokio::test]
    async fn an_export_that_fails_mid_way_leaves_no_object() {
        let world = World::new();
        let image = qcow2_with_data(world.dir.path(), 20).await;
        world.upload("disk.qcow2", &image);
        let imported = world.import("disk.qcow2", "m-fail", 0).await.unwrap();
        let traffic = Arc::new(Traffic::default());
        let failing = watched(&world.buckets.image_files().bucket, &traffic, Some(12 * MIB));
        let image_files = ImageFiles::new(failing);

        let error = image_files
            .export(&imported.key, &world.bucket("exports"), "out/m-fail.qcow2")
            .await
            .unwrap_err();

        assert!(matches!(error, TransferError::Storage(_)), "{error:?}");
        assert!(error.is_retryable());
        assert!(files_under(&world.bucket_folder("exports")).is_empty());
    }

    #[test]
    fn parts_stay_few_and_small() {
        assert_eq!(part_size(5 * GIB), 8 << 20);
        for total in [0, 5 * GIB, 78 * GIB, 100 * GIB, 1 << 40] {
            let part = part_size(total);
            assert!(total.div_ceil(part) <= MAX_PARTS, "{total}");
            assert_eq!(part % MIB, 0);
        }
        // Parts being sent, and blocks read ahead that become the next parts.
        let peak_at_limit =
            (PARTS_IN_FLIGHT + READS_AHEAD) as u64 * part_size(ImportLimits::default().max_bytes);
        assert!(peak_at_limit < 64 * MIB, "{peak_at_limit}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_copies_hold_a_bounded_number_of_parts() {
        let world = World::new();
        let image = qcow2_with_data(world.dir.path(), 40).await;
        world.upload("large.qcow2", &image);
        let traffic = Arc::new(Traffic::default());
        let image_files = ImageFiles::new(watched(&world.buckets.image_files().bucket, &traffic, None));

        let imported = image_files
            .import(
                &world.bucket("images-in"),
                "large.qcow2",
                "m-large",
                0,
                &ImportLimits::default(),
            )
            .await
            .unwrap();

        assert_eq!(imported.bytes, image.len() as u64);
        // Through the store (not the folder-to-folder copy): the same checksum.
        assert_eq!(imported.sha256, hex::encode(Sha256::digest(&image)));
        assert_eq!(traffic.bytes.load(Ordering::SeqCst), imported.bytes);
        assert!(traffic.parts.load(Ordering::SeqCst) >= 5);
        assert_eq!(traffic.largest_part.load(Ordering::SeqCst), PART_BYTES);
        // Parts were held until the bound was reached: the writer had to wait.
        assert_eq!(
            traffic.most_parts_in_flight.load(Ordering::SeqCst),
            PARTS_IN_FLIGHT
        );
        let most_in_flight = traffic.most_bytes_in_flight.load(Ordering::SeqCst);
        assert!(
            most_in_flight <= PARTS_IN_FLIGHT as u64 * PART_BYTES,
            "{most_in_flight}"
        );
        // Plus the blocks read ahead: the whole bound.
        assert!(most_in_flight + READS_AHEAD as u64 * PART_BYTES <= 40 * MIB);

        let out = Arc::new(Traffic::default());
        let exports = watched(&world.bucket("exports"), &out, None);
        let written = image_files
            .export(&imported.key, &exports, "large.qcow2")
            .await
            .unwrap();
        assert_eq!(written, imported.bytes);
        assert!(out.most_parts_in_flight.load(Ordering::SeqCst) <= PARTS_IN_FLIGHT);
        assert_eq!(
            std::fs::read(world.bucket_folder("exports").join("large.qcow2")).unwrap(),
            image
        );
    }

    #[test]
    fn only_storage_failures_are_retried() {
        let transient = TransferError::Storage(object_store::Error::Generic {
            store: "S3",
            source: "connection reset".into(),
        });
        assert!(transient.is_retryable());
        let denied = TransferError::Storage(object_store::Error::PermissionDenied {
            path: "x".into(),
            source: "denied".into(),
        });
        assert!(!denied.is_retryable());
        assert!(!TransferError::Image(Qcow2Error::NotQcow2).is_retryable());
        let unknown = TransferError::from(ObjectError::UnknownBucket {
            region: "r".into(),
            bucket: "b".into(),
        });
        assert!(!unknown.is_retryable());
    }

    /// Longest a watched part waits for others to join it (only the last parts of an upload
    /// whose count is not a multiple of `PARTS_IN_FLIGHT` wait that long).
    const PART_HOLD: Duration = Duration::from_secs(10);

    /// What a watched store saw of its multipart uploads.
    #[derive(Debug, Default)]
    struct Traffic {
        bytes: AtomicU64,
        parts: AtomicUsize,
        largest_part: AtomicU64,
        parts_in_flight: AtomicUsize,
        most_parts_in_flight: AtomicUsize,
        bytes_in_flight: AtomicU64,
        most_bytes_in_flight: AtomicU64,
        /// Bytes read so far, over every read of the store.
        read: AtomicU64,
        /// Wakes held parts once `PARTS_IN_FLIGHT` are under way.
        crowd: Notify,
    }

    /// A store that records its uploads' parts and can make reads fail part-way. Each part is
    /// held until `PARTS_IN_FLIGHT` are under way, so uploading is slower than reading and the
    /// writer must wait for capacity: the bound is reached whatever the machine's speed.
    #[derive(Debug)]
    struct Watched {
        inner: Arc<dyn ObjectStore>,
        traffic: Arc<Traffic>,
        fail_reads_after: Option<u64>,
    }

    /// `bucket` seen through a [`Watched`] store.
    fn watched(bucket: &Bucket, traffic: &Arc<Traffic>, fail_reads_after: Option<u64>) -> Bucket {
        bucket.clone().with_store(Arc::new(Watched {
            inner: Arc::clone(bucket.store()),
            traffic: Arc::clone(traffic),
            fail_reads_after,
        }))
    }

    impl fmt::Display for Watched {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Watched({})", self.inner)
        }
    }

    #[derive(Debug)]
    struct WatchedUpload {
        inner: Box<dyn MultipartUpload>,
        traffic: Arc<Traffic>,
    }

    #[async_trait]
    impl MultipartUpload for WatchedUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            let len = data.content_length() as u64;
            let traffic = Arc::clone(&self.traffic);
            traffic.bytes.fetch_add(len, Ordering::SeqCst);
            traffic.parts.fetch_add(1, Ordering::SeqCst);
            traffic.largest_part.fetch_max(len, Ordering::SeqCst);
            let parts = traffic.parts_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            traffic.most_parts_in_flight.fetch_max(parts, Ordering::SeqCst);
            if parts >= PARTS_IN_FLIGHT {
                traffic.crowd.notify_waiters();
            }
            let bytes = traffic.bytes_in_flight.fetch_add(len, Ordering::SeqCst) + len;
            traffic.most_bytes_in_flight.fetch_max(bytes, Ordering::SeqCst);
            let sent = self.inner.put_part(data);
            Box::pin(async move {
                let crowded = traffic.crowd.notified();
                if traffic.parts_in_flight.load(Ordering::SeqCst) < PARTS_IN_FLIGHT {
                    let _held = tokio::time::timeout(PART_HOLD, crowded).await;
                }
                let result = sent.await;
                traffic.parts_in_flight.fetch_sub(1, Ordering::SeqCst);
                traffic.bytes_in_flight.fetch_sub(len, Ordering::SeqCst);
                result
            })
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            self.inner.abort().await
        }
    }

    #[async_trait]
    impl ObjectStore for Watched {
        async fn put_opts(
            &self,
            location: &ObjectPath,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &ObjectPath,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(WatchedUpload {
                inner,
                traffic: Arc::clone(&self.traffic),
            }))
        }

        async fn get_opts(
            &self,
            location: &ObjectPath,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            let result = self.inner.get_opts(location, options).await?;
            let Some(limit) = self.fail_reads_after else {
                return Ok(result);
            };
            let (meta, range) = (result.meta.clone(), result.range.clone());
            let traffic = Arc::clone(&self.traffic);
            let failing = result.into_stream().map(move |chunk| {
                let chunk = chunk?;
                let passed =
                    traffic.read.fetch_add(chunk.len() as u64, Ordering::SeqCst) + chunk.len() as u64;
                if passed > limit {
                    Err(object_store::Error::Generic {
                        store: "Watched",
                        source: "connection reset".into(),
                    })
                } else {
                    Ok(chunk)
                }
            });
            Ok(GetResult {
                payload: GetResultPayload::Stream(failing.boxed()),
                meta,
                range,
                attributes: Attributes::default(),
                extensions: Extensions::default(),
            })
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<ObjectPath>>,
        ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
            self.inner.delete_stream(locations)
        }

        fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(&self, prefix: Option<&ObjectPath>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &ObjectPath,
            to: &ObjectPath,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }
}
