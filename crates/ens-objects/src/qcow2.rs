//! The qcow2 checks an import must pass, and the empty qcow2 files that stand for images made by
//! `CreateImage`.
//!
//! The service only keeps standalone, unencrypted qcow2 images (versions 2 and 3). An import is
//! checked in steps that each need only a bounded part of the file, so callers can stream it:
//!
//! 1. [`Header::parse`] reads the first [`HEADER_PROBE_BYTES`] and refuses anything that is not a
//!    qcow2 ([`Qcow2Error::NotQcow2`]) or that this service cannot keep ([`Qcow2Error::Unsupported`]):
//!    a version other than 2 or 3, a backing file, encryption, an external data file, extended L2
//!    entries, the corrupt bit, unknown incompatible feature bits or compression types, a cluster
//!    size outside 512 B ..= 2 MiB, a virtual size of 0 or above 64 TiB, an L1 table too small for
//!    the virtual size or above 32 MiB, a refcount table above 8 MiB (QEMU's own limit), and tables
//!    that are not cluster-aligned or that overlap the header cluster. These bounds are what let
//!    callers allocate the L1 table and one L2 table at a time without trusting the file.
//! 2. [`Header::check_tables_within`] checks that the L1 table and the refcount table lie wholly
//!    inside the file. Both start at or after the end of the first cluster, which holds the whole
//!    header, so this also proves the header is complete.
//! 3. [`Header::l2_tables`] reads the L1 table and checks that every L2 table it points to lies
//!    wholly inside the file.
//! 4. [`Header::check_l2_table`] checks, for each L2 table, that every allocated data cluster
//!    (standard or compressed) *starts* inside the file.
//!
//! Entries with reserved bits set or with misaligned offsets are refused as
//! [`Qcow2Error::Unsupported`] (the image is corrupt); offsets past the end of the file are
//! [`Qcow2Error::Truncated`].
//!
//! What the checks do **not** catch:
//! - a cut inside the data cluster with the highest offset (when it is the last thing in the file):
//!   a standard cluster only has to start before the end of the file, because QEMU reads the part
//!   of a file past its end as zeros and other tools may legitimately write a short last cluster;
//!   likewise only the first byte of a compressed cluster is checked (its stored length is an
//!   upper bound, not an exact size). Any cut that removes the start of a later cluster is caught;
//! - refcount blocks, snapshot tables and snapshot L1/L2 tables, and header extensions are not read:
//!   a cut that only removes such metadata, and refcount inconsistencies (leaks, wrong counts,
//!   overlapping metadata), are left to `qemu-img check`;
//! - the dirty bit (lazy refcounts) is accepted: QEMU repairs the refcounts when it opens the image.
//!
//! [`sparse_image`] builds a complete, valid, empty qcow2 version 3 image in memory, laid out the
//! way `qemu-img create` lays it out, so that made-up images cost kilobytes.

use std::ops::Range;

/// Leading bytes of a file that `Header::parse` needs (read at least this many, or the whole file if shorter).
pub const HEADER_PROBE_BYTES: usize = 512;

const MAGIC: [u8; 4] = *b"QFI\xfb";
const V2_HEADER_LEN: usize = 72;
const V3_HEADER_MIN_LEN: usize = 104;
/// Offset of the one-byte compression type field of version 3 headers longer than 104 bytes.
const COMPRESSION_TYPE_AT: usize = 104;
const COMPRESSION_ZLIB: u8 = 0;
const COMPRESSION_ZSTD: u8 = 1;

const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
const MAX_VIRTUAL_SIZE: u64 = 64 << 40;
const MAX_L1_TABLE_BYTES: u64 = 32 << 20;
const MAX_REFCOUNT_TABLE_BYTES: u64 = 8 << 20;
const MAX_REFCOUNT_ORDER: u32 = 6;
const MAX_SNAPSHOTS: u32 = 65536;
const ENTRY_BYTES: u64 = 8;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;
const INCOMPAT_KNOWN: u64 =
    INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION_TYPE | INCOMPAT_EXTENDED_L2;

/// Bits 9..=55 of L1 and standard L2 entries: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Host offsets are below 2^56 (the highest offset an L1 or L2 entry can hold).
const MAX_HOST_OFFSET: u64 = 1 << 56;
const L1_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
const L2_STANDARD_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
const L2_ZERO_FLAG: u64 = 1;
const L2_COMPRESSED_FLAG: u64 = 1 << 62;
const COPIED_FLAG: u64 = 1 << 63;

/// The cluster layout of the images made by [`sparse_image`] (64 KiB clusters, as `qemu-img create`).
const SPARSE_CLUSTER_BITS: u32 = 16;
const SPARSE_REFCOUNT_ORDER: u32 = 4;
const SPARSE_HEADER_LENGTH: u32 = 104;

/// The fixed header fields of a qcow2 image that the import checks and the API need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version: 2 or 3.
    pub version: u32,
    /// log2 of the cluster size: 9..=21.
    pub cluster_bits: u32,
    /// Size of the virtual disk in bytes.
    pub virtual_size: u64,
    /// Number of entries of the active L1 table.
    pub l1_size: u32,
    /// File offset of the active L1 table.
    pub l1_table_offset: u64,
    /// File offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Length of the refcount table in clusters.
    pub refcount_table_clusters: u32,
}

/// Why an image file was refused; the messages are shown to image owners.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Qcow2Error {
    /// The magic is not `QFI\xfb` (messages are shown to image owners: make them clear, lower-case start, no trailing period).
    #[error("the file is not a qcow2 image")]
    NotQcow2,
    /// A qcow2 this service cannot keep: version other than 2/3, backing file, encryption, external data file,
    /// extended L2 entries, unknown incompatible feature bits, corrupt bit, absurd cluster bits or sizes.
    #[error("unsupported qcow2 image: {0}")]
    Unsupported(String),
    /// The file ends before data its header or tables point to (or before the header ends).
    #[error("the qcow2 image is truncated: {0}")]
    Truncated(String),
}

fn unsupported(message: impl Into<String>) -> Qcow2Error {
    Qcow2Error::Unsupported(message.into())
}

fn truncated(message: impl Into<String>) -> Qcow2Error {
    Qcow2Error::Truncated(message.into())
}

/// Reads `N` bytes at `at`, or reports the header as cut short.
fn header_bytes<const N: usize>(leading: &[u8], at: usize) -> Result<[u8; N], Qcow2Error> {
    at.checked_add(N)
        .and_then(|end| leading.get(at..end))
        .and_then(|bytes| <[u8; N]>::try_from(bytes).ok())
        .ok_or_else(|| {
            truncated(format!(
                "the file ends at byte {} inside the header",
                leading.len()
            ))
        })
}

fn header_u32(leading: &[u8], at: usize) -> Result<u32, Qcow2Error> {
    header_bytes::<4>(leading, at).map(u32::from_be_bytes)
}

fn header_u64(leading: &[u8], at: usize) -> Result<u64, Qcow2Error> {
    header_bytes::<8>(leading, at).map(u64::from_be_bytes)
}

/// The big-endian 8-byte entries of a table, at most `count` of them.
fn entries(table: &[u8], count: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
    table
        .chunks_exact(8)
        .filter_map(|chunk| <[u8; 8]>::try_from(chunk).ok())
        .map(u64::from_be_bytes)
        .zip(0..count)
        .map(|(entry, index)| (index, entry))
}

/// A human-readable byte count for messages (exact below 1 KiB, otherwise in the largest whole unit).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes % unit == 0)
        .map_or_else(
            || format!("{bytes} bytes"),
            |(unit, name)| format!("{} {name}", bytes / unit),
        )
}

impl Header {
    /// Parses and checks the fixed header fields.
    pub fn parse(leading: &[u8]) -> Result<Self, Qcow2Error> {
        let magic_len = leading.len().min(MAGIC.len());
        if leading.is_empty() || leading.get(..magic_len) != MAGIC.get(..magic_len) {
            return Err(Qcow2Error::NotQcow2);
        }
        let version = header_u32(leading, 4)?;
        let fixed_len = match version {
            2 => V2_HEADER_LEN,
            3 => V3_HEADER_MIN_LEN,
            other => {
                return Err(unsupported(format!(
                    "qcow2 version {other} (only versions 2 and 3 are supported)"
                )))
            }
        };
        if leading.len() < fixed_len {
            return Err(truncated(format!(
                "the file ends at byte {} inside the {fixed_len}-byte header",
                leading.len()
            )));
        }

        let backing_file_offset = header_u64(leading, 8)?;
        let cluster_bits = header_u32(leading, 20)?;
        let virtual_size = header_u64(leading, 24)?;
        let crypt_method = header_u32(leading, 32)?;
        let l1_size = header_u32(leading, 36)?;
        let l1_table_offset = header_u64(leading, 40)?;
        let refcount_table_offset = header_u64(leading, 48)?;
        let refcount_table_clusters = header_u32(leading, 56)?;
        let nb_snapshots = header_u32(leading, 60)?;
        let snapshots_offset = header_u64(leading, 64)?;

        if backing_file_offset != 0 {
            return Err(unsupported(
                "the image has a backing file; convert it to a standalone image first (qemu-img convert)",
            ));
        }
        if crypt_method != 0 {
            return Err(unsupported("the image is encrypted"));
        }
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(unsupported(format!(
                "cluster_bits {cluster_bits} is outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS} \
                 (cluster sizes from 512 bytes to 2 MiB)"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;
        if version == 3 {
            Self::check_v3_fields(leading, cluster_size)?;
        }

        if virtual_size == 0 {
            return Err(unsupported("the virtual size is 0"));
        }
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(unsupported(format!(
                "the virtual size of {} exceeds the limit of {}",
                human_bytes(virtual_size),
                human_bytes(MAX_VIRTUAL_SIZE)
            )));
        }

        let l1_bytes = u64::from(l1_size) * ENTRY_BYTES;
        if l1_bytes > MAX_L1_TABLE_BYTES {
            return Err(unsupported(format!(
                "the L1 table of {l1_size} entries exceeds the limit of {}",
                human_bytes(MAX_L1_TABLE_BYTES)
            )));
        }
        // One L2 table maps cluster_size / 8 clusters; 2 * cluster_bits - 3 <= 39.
        let l2_coverage = 1u64 << (2 * cluster_bits - 3);
        let l1_needed = virtual_size.div_ceil(l2_coverage);
        if u64::from(l1_size) < l1_needed {
            return Err(unsupported(format!(
                "the L1 table has {l1_size} entries but the virtual size needs {l1_needed} (the image is corrupt)"
            )));
        }
        Self::check_table_offset("L1 table", l1_table_offset, l1_bytes, cluster_size)?;

        if refcount_table_clusters == 0 {
            return Err(unsupported(
                "the image has no refcount table (the image is corrupt)",
            ));
        }
        let refcount_table_bytes = u64::from(refcount_table_clusters) * cluster_size;
        if refcount_table_bytes > MAX_REFCOUNT_TABLE_BYTES {
            return Err(unsupported(format!(
                "the refcount table of {} exceeds the limit of {}",
                human_bytes(refcount_table_bytes),
                human_bytes(MAX_REFCOUNT_TABLE_BYTES)
            )));
        }
        Self::check_table_offset(
            "refcount table",
            refcount_table_offset,
            refcount_table_bytes,
            cluster_size,
        )?;

        if nb_snapshots > MAX_SNAPSHOTS {
            return Err(unsupported(format!(
                "the image has {nb_snapshots} snapshots, more than {MAX_SNAPSHOTS}"
            )));
        }
        if nb_snapshots > 0 && (snapshots_offset == 0 || snapshots_offset % cluster_size != 0) {
            return Err(unsupported(format!(
                "the snapshot table offset {snapshots_offset} is not a valid cluster offset (the image is corrupt)"
            )));
        }

        Ok(Self {
            version,
            cluster_bits,
            virtual_size,
            l1_size,
            l1_table_offset,
            refcount_table_offset,
            refcount_table_clusters,
        })
    }

    /// The version 3 fields: feature bits, refcount width, header length and compression type.
    fn check_v3_fields(leading: &[u8], cluster_size: u64) -> Result<(), Qcow2Error> {
        let incompatible = header_u64(leading, 72)?;
        let refcount_order = header_u32(leading, 96)?;
        let header_length = header_u32(leading, 100)?;

        if incompatible & INCOMPAT_CORRUPT != 0 {
            return Err(unsupported(
                "the image is marked corrupt (repair it with qemu-img check -r all)",
            ));
        }
        if incompatible & INCOMPAT_DATA_FILE != 0 {
            return Err(unsupported("the image keeps its data in an external data file"));
        }
        if incompatible & INCOMPAT_EXTENDED_L2 != 0 {
            return Err(unsupported("the image uses extended L2 entries (subclusters)"));
        }
        let unknown = incompatible & !INCOMPAT_KNOWN;
        if unknown != 0 {
            return Err(unsupported(format!(
                "unknown incompatible feature bits {unknown:#x}"
            )));
        }
        if refcount_order > MAX_REFCOUNT_ORDER {
            return Err(unsupported(format!(
                "refcount_order {refcount_order} is above {MAX_REFCOUNT_ORDER}"
            )));
        }
        let header_length_usize = usize::try_from(header_length).unwrap_or(usize::MAX);
        if header_length_usize < V3_HEADER_MIN_LEN {
            return Err(unsupported(format!(
                "the header length {header_length} is below {V3_HEADER_MIN_LEN} bytes"
            )));
        }
        if u64::from(header_length) > cluster_size {
            return Err(unsupported(format!(
                "the header length {header_length} exceeds the cluster size {cluster_size}"
            )));
        }

        let compression_type = if header_length_usize > COMPRESSION_TYPE_AT {
            header_bytes::<1>(leading, COMPRESSION_TYPE_AT).map(|[byte]| byte)?
        } else {
            COMPRESSION_ZLIB
        };
        let flagged = incompatible & INCOMPAT_COMPRESSION_TYPE != 0;
        match (compression_type, flagged) {
            (COMPRESSION_ZLIB, false) | (COMPRESSION_ZSTD, true) => Ok(()),
            (COMPRESSION_ZLIB, true) | (COMPRESSION_ZSTD, false) => Err(unsupported(
                "the compression type and its incompatible feature bit disagree (the image is corrupt)",
            )),
            (other, _) => Err(unsupported(format!("unknown compression type {other}"))),
        }
    }

    /// A table must be cluster-aligned, after the header cluster, and end below the highest host offset.
    fn check_table_offset(name: &str, offset: u64, len: u64, cluster_size: u64) -> Result<(), Qcow2Error> {
        if offset % cluster_size != 0 {
            return Err(unsupported(format!(
                "the {name} offset {offset} is not aligned to a cluster (the image is corrupt)"
            )));
        }
        if offset == 0 {
            return Err(unsupported(format!(
                "the {name} overlaps the header (the image is corrupt)"
            )));
        }
        if offset.checked_add(len).is_none_or(|end| end > MAX_HOST_OFFSET) {
            return Err(unsupported(format!("the {name} offset {offset} is out of range")));
        }
        Ok(())
    }

    /// The cluster size in bytes, the unit of every allocation in the file.
    pub fn cluster_size(&self) -> u64 {
        // Only a hand-built header can have cluster_bits >= 64; give 0 rather than panicking.
        1u64.checked_shl(self.cluster_bits).unwrap_or(0)
    }

    /// The cluster size, refusing hand-built headers whose cluster_bits `parse` would refuse.
    fn checked_cluster_size(&self) -> Result<u64, Qcow2Error> {
        if (MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&self.cluster_bits) {
            Ok(self.cluster_size())
        } else {
            Err(unsupported(format!(
                "cluster_bits {} is out of range",
                self.cluster_bits
            )))
        }
    }

    /// Virtual size in GiB rounded up, at least 1 (what the API reports as ImageSize).
    pub fn size_gib(&self) -> u64 {
        self.virtual_size.div_ceil(1 << 30).max(1)
    }

    /// The byte range of the L1 table in the file.
    pub fn l1_table_range(&self) -> Range<u64> {
        let len = u64::from(self.l1_size) * ENTRY_BYTES;
        self.l1_table_offset..self.l1_table_offset.saturating_add(len)
    }

    /// Checks that the L1 table and the refcount table lie wholly inside a file of `file_len` bytes.
    ///
    /// Both tables start at or after the end of the header cluster, so this also proves that the
    /// whole header (with its extensions) is in the file.
    pub fn check_tables_within(&self, file_len: u64) -> Result<(), Qcow2Error> {
        let l1_end = self.l1_table_range().end;
        if l1_end > file_len {
            return Err(truncated(format!(
                "the file is {file_len} bytes long but its L1 table ends at byte {l1_end}"
            )));
        }
        let refcount_end = self
            .refcount_table_offset
            .saturating_add(u64::from(self.refcount_table_clusters).saturating_mul(self.cluster_size()));
        if refcount_end > file_len {
            return Err(truncated(format!(
                "the file is {file_len} bytes long but its refcount table ends at byte {refcount_end}"
            )));
        }
        Ok(())
    }

    /// Reads the L1 table bytes (exactly `l1_table_range()` long) and returns the offsets of the allocated
    /// L2 tables, each checked to lie wholly inside the file.
    ///
    /// A shorter `l1_table` is reported as truncated; bytes beyond the table are ignored.
    pub fn l2_tables(&self, l1_table: &[u8], file_len: u64) -> Result<Vec<u64>, Qcow2Error> {
        let cluster_size = self.checked_cluster_size()?;
        let count = u64::from(self.l1_size);
        let expected = count * ENTRY_BYTES;
        let available = u64::try_from(l1_table.len()).unwrap_or(u64::MAX);
        if available < expected {
            return Err(truncated(format!(
                "only {available} of the {expected} bytes of the L1 table could be read"
            )));
        }
        let mut tables = Vec::new();
        for (index, entry) in entries(l1_table, count) {
            if entry & L1_RESERVED_MASK != 0 {
                return Err(unsupported(format!(
                    "L1 entry {index} has reserved bits set (the image is corrupt)"
                )));
            }
            let offset = entry & OFFSET_MASK;
            if offset == 0 {
                continue;
            }
            if offset % cluster_size != 0 {
                return Err(unsupported(format!(
                    "L1 entry {index} points to an L2 table at byte {offset}, which is not aligned to a \
                     cluster (the image is corrupt)"
                )));
            }
            // offset < 2^56 and cluster_size <= 2^21: no overflow.
            let end = offset + cluster_size;
            if end > file_len {
                return Err(truncated(format!(
                    "the file is {file_len} bytes long but the L2 table at byte {offset} ends at byte {end}"
                )));
            }
            tables.push(offset);
        }
        Ok(tables)
    }

    /// The byte length of one L2 table (one cluster).
    pub fn l2_table_len(&self) -> u64 {
        self.cluster_size()
    }

    /// Checks one L2 table's entries: every allocated cluster (standard or compressed) starts inside the file.
    ///
    /// A standard data cluster passes when its (cluster-aligned) offset is below `file_len`, that is
    /// when `offset + cluster_size <= file_len` rounded up to a whole cluster: the end of the last
    /// cluster of a file may be missing, since QEMU reads it as zeros. A compressed cluster passes
    /// when its first byte is in the file. A shorter `l2_table` is reported as truncated; bytes
    /// beyond one cluster are ignored.
    pub fn check_l2_table(&self, l2_table: &[u8], file_len: u64) -> Result<(), Qcow2Error> {
        let cluster_size = self.checked_cluster_size()?;
        let available = u64::try_from(l2_table.len()).unwrap_or(u64::MAX);
        if available < cluster_size {
            return Err(truncated(format!(
                "only {available} of the {cluster_size} bytes of an L2 table could be read"
            )));
        }
        // Compressed entries: the host offset takes the low 62 - (cluster_bits - 8) bits (41..=53).
        let compressed_offset_bits = 62 - (self.cluster_bits - 8);
        let compressed_offset_mask = (1u64 << compressed_offset_bits) - 1;
        for (index, entry) in entries(l2_table, cluster_size / ENTRY_BYTES) {
            if entry & L2_COMPRESSED_FLAG != 0 {
                if entry & COPIED_FLAG != 0 {
                    return Err(unsupported(format!(
                        "compressed L2 entry {index} has the copied flag set (the image is corrupt)"
                    )));
                }
                let offset = entry & compressed_offset_mask;
                if offset >= file_len {
                    return Err(truncated(format!(
                        "the file is {file_len} bytes long but a compressed cluster starts at byte {offset}"
                    )));
                }
                continue;
            }
            if entry & L2_STANDARD_RESERVED_MASK != 0 || (self.version < 3 && entry & L2_ZERO_FLAG != 0) {
                return Err(unsupported(format!(
                    "L2 entry {index} has reserved bits set (the image is corrupt)"
                )));
            }
            let offset = entry & OFFSET_MASK;
            if offset == 0 {
                continue;
            }
            if offset % cluster_size != 0 {
                return Err(unsupported(format!(
                    "L2 entry {index} points to a data cluster at byte {offset}, which is not aligned to \
                     a cluster (the image is corrupt)"
                )));
            }
            if offset >= file_len {
                return Err(truncated(format!(
                    "the file is {file_len} bytes long but a data cluster starts at byte {offset}"
                )));
            }
        }
        Ok(())
    }
}

/// A complete, valid qcow2 (version 3, 64 KiB clusters) of `virtual_size` bytes with no data cluster
/// allocated: header, refcount table, one refcount block, L1 table — the file ends right after the L1
/// table (as `qemu-img create` does), so it is a few hundred KiB at most for disks up to 2 TiB.
///
/// `virtual_size` must be a multiple of 512 bytes (QEMU rounds other sizes down), above 0 and at
/// most 64 TiB; otherwise the result is [`Qcow2Error::Unsupported`].
pub fn sparse_image(virtual_size: u64) -> Result<Vec<u8>, Qcow2Error> {
    if virtual_size == 0 {
        return Err(unsupported("the virtual size is 0"));
    }
    if virtual_size > MAX_VIRTUAL_SIZE {
        return Err(unsupported(format!(
            "the virtual size of {} exceeds the limit of {}",
            human_bytes(virtual_size),
            human_bytes(MAX_VIRTUAL_SIZE)
        )));
    }
    if virtual_size % 512 != 0 {
        return Err(unsupported(format!(
            "the virtual size of {virtual_size} bytes is not a multiple of 512 bytes"
        )));
    }

    let cluster_size = 1u64 << SPARSE_CLUSTER_BITS;
    let l2_coverage = 1u64 << (2 * SPARSE_CLUSTER_BITS - 3);
    let l1_size = virtual_size.div_ceil(l2_coverage);
    let l1_bytes = l1_size * ENTRY_BYTES;
    let l1_clusters = l1_bytes.div_ceil(cluster_size);
    // Clusters: 0 header, 1 refcount table, 2 refcount block, 3.. L1 table.
    let refcount_table_offset = cluster_size;
    let refcount_block_offset = 2 * cluster_size;
    let l1_table_offset = 3 * cluster_size;
    let used_clusters = 3 + l1_clusters;
    // One refcount block of 16-bit refcounts covers cluster_size / 2 clusters (2 GiB of file);
    // 64 TiB needs 3 + 16 clusters, so this holds for every size accepted above.
    let refcounts_per_block = (cluster_size * 8) >> SPARSE_REFCOUNT_ORDER;
    if used_clusters > refcounts_per_block {
        return Err(unsupported("the L1 table does not fit in one refcount block"));
    }
    let l1_size = u32::try_from(l1_size)
        .map_err(|_| unsupported(format!("the L1 table of {l1_size} entries is too large")))?;
    let to_usize = |n: u64| usize::try_from(n).map_err(|_| unsupported("the image does not fit in memory"));

    let mut image = Vec::with_capacity(to_usize(l1_table_offset + l1_bytes)?);
    // Header (104 bytes), then the end of the (empty) list of header extensions: 8 zero bytes.
    image.extend_from_slice(&MAGIC);
    image.extend_from_slice(&3u32.to_be_bytes()); // version
    image.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
    image.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
    image.extend_from_slice(&SPARSE_CLUSTER_BITS.to_be_bytes());
    image.extend_from_slice(&virtual_size.to_be_bytes());
    image.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
    image.extend_from_slice(&l1_size.to_be_bytes());
    image.extend_from_slice(&l1_table_offset.to_be_bytes());
    image.extend_from_slice(&refcount_table_offset.to_be_bytes());
    image.extend_from_slice(&1u32.to_be_bytes()); // refcount_table_clusters
    image.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
    image.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
    image.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
    image.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
    image.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
    image.extend_from_slice(&SPARSE_REFCOUNT_ORDER.to_be_bytes());
    image.extend_from_slice(&SPARSE_HEADER_LENGTH.to_be_bytes());
    image.extend_from_slice(&[0; 8]); // header extension type 0 (end), length 0
    image.resize(to_usize(refcount_table_offset)?, 0);

    // Refcount table: one entry, pointing at the refcount block.
    image.extend_from_slice(&refcount_block_offset.to_be_bytes());
    image.resize(to_usize(refcount_block_offset)?, 0);

    // Refcount block: every used cluster is referenced once.
    for _ in 0..used_clusters {
        image.extend_from_slice(&1u16.to_be_bytes());
    }
    image.resize(to_usize(l1_table_offset)?, 0);

    // L1 table: no L2 table allocated.
    image.resize(to_usize(l1_table_offset + l1_bytes)?, 0);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Output};

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    const TIB: u64 = 1 << 40;

    /// The check step that refused a file.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Step {
        Parse,
        Tables,
        L1,
        L2,
    }

    /// Runs every check on a whole file the way an import does, reporting the step that refused it.
    fn check_all(file: &[u8]) -> Result<Header, (Step, Qcow2Error)> {
        let file_len = file.len() as u64;
        let leading = &file[..file.len().min(HEADER_PROBE_BYTES)];
        let header = Header::parse(leading).map_err(|e| (Step::Parse, e))?;
        header
            .check_tables_within(file_len)
            .map_err(|e| (Step::Tables, e))?;
        let l1 = slice(file, header.l1_table_range());
        let l2_tables = header.l2_tables(l1, file_len).map_err(|e| (Step::L1, e))?;
        for offset in l2_tables {
            let l2 = slice(file, offset..offset.saturating_add(header.l2_table_len()));
            header.check_l2_table(l2, file_len).map_err(|e| (Step::L2, e))?;
        }
        Ok(header)
    }

    /// The part of `range` that is inside `file` (empty when it starts past the end).
    fn slice(file: &[u8], range: Range<u64>) -> &[u8] {
        let len = file.len() as u64;
        let start = range.start.min(len) as usize;
        let end = range.end.min(len).max(range.start.min(len)) as usize;
        &file[start..end]
    }

    fn qemu_img(args: &[&str]) -> Output {
        let output = Command::new("/usr/bin/qemu-img")
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("qemu-img is required by these tests and could not be run: {e}"));
        assert!(
            output.status.success(),
            "qemu-img {args:?} failed ({}): {} {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn path_str(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    /// `qemu-img create -f qcow2` with extra arguments, returning the file bytes.
    fn qemu_create(dir: &Path, name: &str, extra: &[&str], size: &str) -> Vec<u8> {
        let path = dir.join(name);
        let mut args = vec!["create", "-q", "-f", "qcow2"];
        args.extend_from_slice(extra);
        args.push(path_str(&path));
        args.push(size);
        qemu_img(&args);
        std::fs::read(&path).unwrap()
    }

    /// Deterministic non-zero pseudo-random bytes (xorshift), so that the tests need no RNG crate.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8 | 1
            })
            .collect()
    }

    /// A raw disk of 5 MiB + 512 bytes with data in its first 3 000 000 bytes and its last 4 KiB,
    /// converted to qcow2 by qemu-img with `extra` options.
    fn qemu_convert(dir: &Path, name: &str, extra: &[&str]) -> Vec<u8> {
        let raw_path = dir.join(format!("{name}.raw"));
        // Incompressible bytes, then compressible non-zero bytes, then zeros.
        let mut raw = noise(1_500_000, 7);
        raw.extend(b"ens-images ".iter().cycle().take(1_500_000));
        raw.resize((5 * MIB + 512) as usize, 0);
        let tail = raw.len() - 4096;
        raw[tail..].copy_from_slice(&noise(4096, 11));
        std::fs::write(&raw_path, &raw).unwrap();
        let path = dir.join(name);
        let mut args = vec!["convert", "-q", "-f", "raw", "-O", "qcow2"];
        args.extend_from_slice(extra);
        args.push(path_str(&raw_path));
        args.push(path_str(&path));
        qemu_img(&args);
        std::fs::read(&path).unwrap()
    }

    /// Standard and compressed host offsets of the allocated data clusters of a (valid) image.
    fn data_clusters(file: &[u8]) -> (Vec<u64>, Vec<u64>) {
        let header = check_all(file).unwrap();
        let l1 = slice(file, header.l1_table_range());
        let mut standard = Vec::new();
        let mut compressed = Vec::new();
        let bits = 62 - (header.cluster_bits - 8);
        for offset in header.l2_tables(l1, file.len() as u64).unwrap() {
            let l2 = slice(file, offset..offset + header.l2_table_len());
            for chunk in l2.chunks_exact(8) {
                let entry = u64::from_be_bytes(chunk.try_into().unwrap());
                if entry & L2_COMPRESSED_FLAG != 0 {
                    compressed.push(entry & ((1 << bits) - 1));
                } else if entry & OFFSET_MASK != 0 {
                    standard.push(entry & OFFSET_MASK);
                }
            }
        }
        (standard, compressed)
    }

    fn set_u32(file: &mut [u8], at: usize, value: u32) {
        file[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }

    fn set_u64(file: &mut [u8], at: usize, value: u64) {
        file[at..at + 8].copy_from_slice(&value.to_be_bytes());
    }

    fn assert_unsupported(result: Result<Header, (Step, Qcow2Error)>, step: Step, needle: &str) {
        match result {
            Err((s, Qcow2Error::Unsupported(message))) => {
                assert_eq!(s, step, "{message}");
                assert!(
                    message.contains(needle),
                    "{message:?} does not mention {needle:?}"
                );
            }
            other => panic!("expected Unsupported({needle:?}) at {step:?}, got {other:?}"),
        }
    }

    fn assert_truncated(file: &[u8], cut: usize, step: Step) {
        match check_all(&file[..cut]) {
            Err((s, Qcow2Error::Truncated(message))) => {
                assert_eq!(s, step, "cut at {cut}: {message}");
                assert!(!message.ends_with('.'));
            }
            other => panic!("cut at {cut}: expected Truncated at {step:?}, got {other:?}"),
        }
    }

    #[test]
    fn qemu_created_images_pass_every_check() {
        let dir = tempfile::tempdir().unwrap();
        // File name, extra qemu-img options, size argument, then the expected version, virtual size
        // and size in GiB.
        type Case<'a> = (&'a str, &'a [&'a str], &'a str, u32, u64, u64);
        let cases: [Case; 7] = [
            ("1m.qcow2", &[], "1M", 3, MIB, 1),
            ("1g.qcow2", &[], "1G", 3, GIB, 1),
            ("1.5g.qcow2", &[], "1536M", 3, 3 * GIB / 2, 2),
            ("40g.qcow2", &[], "40G", 3, 40 * GIB, 40),
            ("v2-1m.qcow2", &["-o", "compat=0.10"], "1M", 2, MIB, 1),
            ("v2-40g.qcow2", &["-o", "compat=0.10"], "40G", 2, 40 * GIB, 40),
            (
                "zstd.qcow2",
                &["-o", "compression_type=zstd"],
                "3G",
                3,
                3 * GIB,
                3,
            ),
        ];
        for (name, extra, size, version, virtual_size, gib) in cases {
            let file = qemu_create(dir.path(), name, extra, size);
            let header = check_all(&file).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(header.version, version, "{name}");
            assert_eq!(header.cluster_bits, 16, "{name}");
            assert_eq!(header.cluster_size(), 64 * KIB, "{name}");
            assert_eq!(header.l2_table_len(), 64 * KIB, "{name}");
            assert_eq!(header.virtual_size, virtual_size, "{name}");
            assert_eq!(header.size_gib(), gib, "{name}");
            assert_eq!(header.l1_size as u64, virtual_size.div_ceil(512 * MIB), "{name}");
            assert_eq!(
                header.l1_table_range().end,
                file.len() as u64,
                "{name}: file ends after L1"
            );
            let l1 = slice(&file, header.l1_table_range());
            assert_eq!(
                header.l2_tables(l1, file.len() as u64).unwrap(),
                Vec::<u64>::new(),
                "{name}"
            );
        }
    }

    #[test]
    fn qemu_created_image_with_other_cluster_sizes_passes() {
        let dir = tempfile::tempdir().unwrap();
        for (cluster_size, bits) in [("512", 9), ("2M", 21)] {
            let option = format!("cluster_size={cluster_size}");
            let file = qemu_create(dir.path(), &format!("{bits}.qcow2"), &["-o", &option], "1G");
            let header = check_all(&file).unwrap();
            assert_eq!(header.cluster_bits, bits);
        }
    }

    #[test]
    fn qemu_converted_images_with_data_pass_every_check() {
        let dir = tempfile::tempdir().unwrap();
        for (name, extra) in [
            ("v3.qcow2", &[][..]),
            ("v2.qcow2", &["-o", "compat=0.10"][..]),
            ("small-clusters.qcow2", &["-o", "cluster_size=4096"][..]),
        ] {
            let file = qemu_convert(dir.path(), name, extra);
            let header = check_all(&file).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(header.virtual_size, 5 * MIB + 512, "{name}");
            assert_eq!(header.size_gib(), 1);
            let (standard, compressed) = data_clusters(&file);
            let expected = 3_000_000u64.div_ceil(header.cluster_size()) + 1;
            assert!(
                standard.len() as u64 >= expected,
                "{name}: {} data clusters",
                standard.len()
            );
            assert!(compressed.is_empty());
        }
        let file = qemu_convert(dir.path(), "compressed.qcow2", &["-c"]);
        check_all(&file).unwrap();
        let (_, compressed) = data_clusters(&file);
        assert!(compressed.len() >= 2, "{} compressed clusters", compressed.len());
    }

    #[test]
    fn truncated_headers_and_tables_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v3 = qemu_create(dir.path(), "v3.qcow2", &[], "40G");
        let v2 = qemu_create(dir.path(), "v2.qcow2", &["-o", "compat=0.10"], "40G");
        assert_eq!(
            check_all(&v3[..0]).unwrap_err(),
            (Step::Parse, Qcow2Error::NotQcow2)
        );
        // qemu-img writes a 112-byte version 3 header: byte 104 (the compression type) is read too.
        for cut in [1, 3, 4, 7, 50, 71, 103, 104] {
            assert_truncated(&v3, cut, Step::Parse);
        }
        for cut in [3, 50, 71] {
            assert_truncated(&v2, cut, Step::Parse);
        }
        let c = 64 * KIB as usize;
        // After the fixed header; inside the header extensions; inside the refcount table;
        // inside the refcount block; inside the L1 table; one byte short.
        for cut in [105, 112, 300, c + 8, 2 * c + 100, 3 * c + 320, v3.len() - 1] {
            assert_truncated(&v3, cut, Step::Tables);
        }
        for cut in [72, c + 8, 3 * c + 320, v2.len() - 1] {
            assert_truncated(&v2, cut, Step::Tables);
        }
    }

    #[test]
    fn truncated_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = qemu_convert(dir.path(), "data.qcow2", &[]);
        let header = check_all(&file).unwrap();
        let cluster = header.cluster_size() as usize;
        let l1 = slice(&file, header.l1_table_range());
        let l2_tables = header.l2_tables(l1, file.len() as u64).unwrap();
        assert_eq!(l2_tables.len(), 1);
        let l2 = l2_tables[0] as usize;
        let (data, _) = data_clusters(&file);
        let first = *data.iter().min().unwrap() as usize;
        let last = *data.iter().max().unwrap() as usize;
        assert!(
            last + cluster <= file.len(),
            "qemu-img writes whole data clusters"
        );

        // Cutting the L2 table is caught when reading L1.
        for cut in [l2 + 1, l2 + cluster - 1] {
            assert_truncated(&file, cut, Step::L1);
        }
        // Cutting off whole data clusters, or cutting into one when more follow, is caught.
        for cut in [first, first + 2 * cluster + 7, last - 1, last] {
            assert_truncated(&file, cut, Step::L2);
        }
        // Documented limit: a cut inside the last data cluster is not detected.
        check_all(&file[..last + 1]).unwrap();
        check_all(&file[..file.len() - 1]).unwrap();
    }

    #[test]
    fn truncated_compressed_data_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = qemu_convert(dir.path(), "compressed.qcow2", &["-c"]);
        let (_, compressed) = data_clusters(&file);
        let last = *compressed.iter().max().unwrap() as usize;
        assert_truncated(&file, last, Step::L2);
    }

    #[test]
    fn files_that_are_not_qcow2_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, noise(2 * MIB as usize, 3)).unwrap();
        let raw_bytes = std::fs::read(&raw).unwrap();
        let vmdk = dir.path().join("disk.vmdk");
        qemu_img(&[
            "convert",
            "-q",
            "-f",
            "raw",
            "-O",
            "vmdk",
            path_str(&raw),
            path_str(&vmdk),
        ]);
        let zeros = dir.path().join("zeros.raw");
        qemu_img(&["create", "-q", "-f", "raw", path_str(&zeros), "1M"]);
        let mut near_magic = sparse_image(GIB).unwrap();
        near_magic[3] = 0xfa;
        for file in [
            raw_bytes,
            std::fs::read(&vmdk).unwrap(),
            std::fs::read(&zeros).unwrap(),
            near_magic,
            b"QFX".to_vec(),
            b"hello, world".to_vec(),
        ] {
            assert_eq!(check_all(&file).unwrap_err(), (Step::Parse, Qcow2Error::NotQcow2));
        }
        assert_eq!(Qcow2Error::NotQcow2.to_string(), "the file is not a qcow2 image");
    }

    #[test]
    fn images_this_service_cannot_keep_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        qemu_img(&["create", "-q", "-f", "qcow2", path_str(&base), "1G"]);
        let top = qemu_create(
            dir.path(),
            "top.qcow2",
            &["-b", path_str(&base), "-F", "qcow2"],
            "1G",
        );
        assert_unsupported(check_all(&top), Step::Parse, "backing file");

        let secret = ["--object", "secret,id=sec0,data=123456"];
        let luks = [
            secret[0],
            secret[1],
            "-o",
            "encrypt.format=luks,encrypt.key-secret=sec0",
        ];
        assert_unsupported(
            check_all(&qemu_create(dir.path(), "luks.qcow2", &luks, "1G")),
            Step::Parse,
            "encrypted",
        );

        let data_file = format!("data_file={}", path_str(&dir.path().join("data.raw")));
        let external = qemu_create(dir.path(), "external.qcow2", &["-o", &data_file], "1G");
        assert_unsupported(check_all(&external), Step::Parse, "external data file");

        let extended = qemu_create(dir.path(), "extl2.qcow2", &["-o", "extended_l2=on"], "1G");
        assert_unsupported(check_all(&extended), Step::Parse, "extended L2");

        let qcow1 = dir.path().join("v1.qcow");
        qemu_img(&["create", "-q", "-f", "qcow", path_str(&qcow1), "1G"]);
        assert_unsupported(
            check_all(&std::fs::read(&qcow1).unwrap()),
            Step::Parse,
            "version 1",
        );
    }

    #[test]
    fn feature_bits() {
        let dir = tempfile::tempdir().unwrap();
        let file = qemu_create(dir.path(), "f.qcow2", &[], "1G");
        let with_bits = |bits: u64| {
            let mut file = file.clone();
            set_u64(&mut file, 72, bits);
            check_all(&file)
        };
        assert_unsupported(
            with_bits(1 << 5),
            Step::Parse,
            "unknown incompatible feature bits 0x20",
        );
        assert_unsupported(with_bits(1 << 63), Step::Parse, "unknown incompatible");
        assert_unsupported(with_bits(INCOMPAT_CORRUPT), Step::Parse, "corrupt");
        assert_unsupported(with_bits(INCOMPAT_DATA_FILE), Step::Parse, "external data file");
        assert_unsupported(with_bits(INCOMPAT_EXTENDED_L2), Step::Parse, "extended L2");
        // qemu-img writes header_length 112 with a zlib (0) compression type byte.
        assert_unsupported(
            with_bits(INCOMPAT_COMPRESSION_TYPE),
            Step::Parse,
            "compression type",
        );
        with_bits(INCOMPAT_DIRTY).unwrap();

        let mut zstd_without_bit = file.clone();
        zstd_without_bit[COMPRESSION_TYPE_AT] = COMPRESSION_ZSTD;
        assert_unsupported(check_all(&zstd_without_bit), Step::Parse, "compression type");
        let mut unknown_type = file.clone();
        set_u64(&mut unknown_type, 72, INCOMPAT_COMPRESSION_TYPE);
        unknown_type[COMPRESSION_TYPE_AT] = 2;
        assert_unsupported(
            check_all(&unknown_type),
            Step::Parse,
            "unknown compression type 2",
        );
    }

    #[test]
    fn absurd_header_fields_are_refused() {
        let file = sparse_image(40 * GIB).unwrap();
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut file = file.clone();
            edit(&mut file);
            check_all(&file)
        };
        assert_unsupported(with(&|f| set_u32(f, 4, 4)), Step::Parse, "version 4");
        assert_unsupported(with(&|f| set_u32(f, 4, 1)), Step::Parse, "version 1");
        assert_unsupported(with(&|f| set_u32(f, 20, 8)), Step::Parse, "cluster_bits 8");
        assert_unsupported(with(&|f| set_u32(f, 20, 22)), Step::Parse, "cluster_bits 22");
        assert_unsupported(with(&|f| set_u32(f, 20, 64)), Step::Parse, "cluster_bits 64");
        assert_unsupported(with(&|f| set_u64(f, 24, 0)), Step::Parse, "virtual size is 0");
        assert_unsupported(with(&|f| set_u64(f, 24, 64 * TIB + 512)), Step::Parse, "64 TiB");
        assert_unsupported(with(&|f| set_u64(f, 24, u64::MAX)), Step::Parse, "64 TiB");
        assert_unsupported(with(&|f| set_u32(f, 32, 1)), Step::Parse, "encrypted");
        assert_unsupported(with(&|f| set_u64(f, 8, 512)), Step::Parse, "backing file");
        assert_unsupported(with(&|f| set_u32(f, 36, 79)), Step::Parse, "needs 80");
        assert_unsupported(with(&|f| set_u32(f, 36, (4 << 20) + 1)), Step::Parse, "32 MiB");
        assert_unsupported(with(&|f| set_u32(f, 36, u32::MAX)), Step::Parse, "32 MiB");
        assert_unsupported(
            with(&|f| set_u64(f, 40, 3 * 65536 + 512)),
            Step::Parse,
            "not aligned",
        );
        assert_unsupported(with(&|f| set_u64(f, 40, 0)), Step::Parse, "overlaps the header");
        assert_unsupported(with(&|f| set_u64(f, 40, 1 << 56)), Step::Parse, "out of range");
        assert_unsupported(
            with(&|f| set_u64(f, 40, u64::MAX << 16)),
            Step::Parse,
            "out of range",
        );
        assert_unsupported(with(&|f| set_u64(f, 48, 100)), Step::Parse, "not aligned");
        assert_unsupported(with(&|f| set_u32(f, 56, 0)), Step::Parse, "no refcount table");
        assert_unsupported(with(&|f| set_u32(f, 56, 129)), Step::Parse, "8 MiB");
        assert_unsupported(with(&|f| set_u32(f, 96, 7)), Step::Parse, "refcount_order 7");
        assert_unsupported(with(&|f| set_u32(f, 100, 96)), Step::Parse, "header length 96");
        assert_unsupported(
            with(&|f| set_u32(f, 100, 65544)),
            Step::Parse,
            "exceeds the cluster size",
        );
        assert_unsupported(with(&|f| set_u32(f, 60, 1)), Step::Parse, "snapshot table offset");
        // A larger-than-needed L1 table that still ends inside the file is fine; past it, truncated.
        with(&|f| {
            set_u32(f, 36, 81);
            f.extend_from_slice(&[0; 8]);
        })
        .unwrap();
        assert_eq!(with(&|f| set_u32(f, 36, 4 << 20)).unwrap_err().0, Step::Tables);
        with(&|f| set_u32(f, 56, 2)).unwrap();
        assert_eq!(with(&|f| set_u32(f, 56, 3)).unwrap_err().0, Step::Tables);
    }

    #[test]
    fn corrupt_table_entries_are_refused() {
        let file = sparse_image(GIB).unwrap();
        let header = check_all(&file).unwrap();
        let len = file.len() as u64;
        let entry = |value: u64| {
            let mut table = vec![0; 16];
            table[8..].copy_from_slice(&value.to_be_bytes());
            table
        };
        let l1 = |value: u64| header.l2_tables(&entry(value), len);
        assert_eq!(l1(0), Ok(vec![]));
        assert_eq!(l1(COPIED_FLAG | 65536), Ok(vec![65536]));
        assert!(matches!(l1(65536 + 512), Err(Qcow2Error::Unsupported(m)) if m.contains("L1 entry 1")));
        assert!(matches!(l1(65536 | 1), Err(Qcow2Error::Unsupported(m)) if m.contains("reserved")));
        assert!(matches!(l1(65536 | 1 << 56), Err(Qcow2Error::Unsupported(m)) if m.contains("reserved")));
        assert!(matches!(
            l1(len.next_multiple_of(65536)),
            Err(Qcow2Error::Truncated(_))
        ));
        assert!(
            matches!(l1(3 * 65536), Err(Qcow2Error::Truncated(_))),
            "an L2 table must be whole"
        );
        assert!(matches!(
            header.l2_tables(&[0; 8], len),
            Err(Qcow2Error::Truncated(_))
        ));

        let l2 = |value: u64| {
            let mut table = vec![0; 65536];
            table[65528..].copy_from_slice(&value.to_be_bytes());
            header.check_l2_table(&table, len)
        };
        assert_eq!(l2(0), Ok(()));
        assert_eq!(l2(L2_ZERO_FLAG), Ok(()));
        assert_eq!(l2(COPIED_FLAG | 65536), Ok(()));
        assert_eq!(l2(COPIED_FLAG | L2_ZERO_FLAG | 65536), Ok(()));
        assert!(matches!(l2(65536 + 512), Err(Qcow2Error::Unsupported(m)) if m.contains("L2 entry 8191")));
        assert!(matches!(l2(65536 | 2), Err(Qcow2Error::Unsupported(m)) if m.contains("reserved")));
        assert!(matches!(
            l2(len.next_multiple_of(65536)),
            Err(Qcow2Error::Truncated(_))
        ));
        assert_eq!(l2(L2_COMPRESSED_FLAG | (len - 1)), Ok(()));
        // The sector count bits above the offset do not count as offset bits.
        assert_eq!(l2(L2_COMPRESSED_FLAG | (1 << 54) | 100), Ok(()));
        assert!(matches!(
            l2(L2_COMPRESSED_FLAG | len),
            Err(Qcow2Error::Truncated(_))
        ));
        assert!(matches!(
            l2(L2_COMPRESSED_FLAG | COPIED_FLAG | 100),
            Err(Qcow2Error::Unsupported(_))
        ));
        assert!(matches!(
            header.check_l2_table(&[0; 65535], len),
            Err(Qcow2Error::Truncated(_))
        ));

        let v2 = Header {
            version: 2,
            ..header.clone()
        };
        let mut table = vec![0; 65536];
        table[7] = 1;
        assert!(matches!(
            v2.check_l2_table(&table, len),
            Err(Qcow2Error::Unsupported(_))
        ));
    }

    #[test]
    fn size_gib_rounds_up() {
        let header = Header::parse(&sparse_image(GIB).unwrap()).unwrap();
        for (virtual_size, gib) in [
            (1, 1),
            (MIB, 1),
            (GIB, 1),
            (GIB + 1, 2),
            (40 * GIB, 40),
            (2 * TIB, 2048),
        ] {
            assert_eq!(
                Header {
                    virtual_size,
                    ..header.clone()
                }
                .size_gib(),
                gib
            );
        }
    }

    fn qemu_accepts(path: &Path, virtual_size: u64) {
        let info = qemu_img(&["info", "--output=json", "-f", "qcow2", path_str(path)]);
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["format"], "qcow2", "{info}");
        assert_eq!(info["virtual-size"], virtual_size, "{info}");
        assert_eq!(info["format-specific"]["data"]["corrupt"], false, "{info}");
        // Exits with 2 on corruption and 3 on leaks.
        let check = qemu_img(&["check", "-f", "qcow2", path_str(path)]);
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(stdout.contains("No errors were found on the image."), "{stdout}");
        assert!(!stdout.contains("leak"), "{stdout}");
    }

    #[test]
    fn sparse_images_are_valid_for_qemu() {
        let dir = tempfile::tempdir().unwrap();
        for (virtual_size, expected_len) in [
            (MIB, 3 * 65536 + 8),
            (GIB, 3 * 65536 + 16),
            (3 * GIB / 2, 3 * 65536 + 24),
            (40 * GIB, 197_248),
            (2 * TIB, 229_376),
            (64 * TIB, 3 * 65536 + MIB),
        ] {
            let image = sparse_image(virtual_size).unwrap();
            assert_eq!(image.len() as u64, expected_len, "{virtual_size}");
            if virtual_size <= 2 * TIB {
                assert!(
                    image.len() < 512 * KIB as usize,
                    "{virtual_size}: {} bytes",
                    image.len()
                );
            }
            let header = check_all(&image).unwrap();
            assert_eq!(header.virtual_size, virtual_size);
            assert_eq!(header.version, 3);
            assert_eq!(header.size_gib(), virtual_size.div_ceil(GIB));

            let path: PathBuf = dir.path().join(format!("{virtual_size}.qcow2"));
            std::fs::write(&path, &image).unwrap();
            qemu_accepts(&path, virtual_size);

            // Same size and layout as qemu-img create's own file.
            let reference = qemu_create(dir.path(), "reference.qcow2", &[], &virtual_size.to_string());
            assert_eq!(reference.len(), image.len(), "{virtual_size}");
            qemu_img(&[
                "compare",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                path_str(&path),
                path_str(&dir.path().join("reference.qcow2")),
            ]);
        }
    }

    #[test]
    fn sparse_image_refuses_bad_sizes() {
        for size in [0, 64 * TIB + 512, u64::MAX, 1000, GIB + 1] {
            assert!(
                matches!(sparse_image(size), Err(Qcow2Error::Unsupported(_))),
                "{size}"
            );
        }
        assert!(sparse_image(512).is_ok());
    }

    #[test]
    fn error_messages_read_well() {
        let errors = [
            Header::parse(b"QFI\xfb\0\0\0\x09").unwrap_err(),
            Header::parse(b"QFI\xfb\0\0\0").unwrap_err(),
            sparse_image(0).unwrap_err(),
            sparse_image(100 * TIB).unwrap_err(),
        ];
        for error in errors {
            let message = error.to_string();
            assert!(message.starts_with(|c: char| c.is_ascii_lowercase()), "{message}");
            assert!(!message.ends_with('.'), "{message}");
        }
        assert_eq!(
            sparse_image(100 * TIB).unwrap_err().to_string(),
            "unsupported qcow2 image: the virtual size of 100 TiB exceeds the limit of 64 TiB"
        );
    }

    fn exercise(file: &[u8]) {
        let _ = check_all(file);
        if let Ok(header) = Header::parse(&file[..file.len().min(HEADER_PROBE_BYTES)]) {
            for file_len in [0, 1, file.len() as u64, u64::MAX] {
                let _ = header.check_tables_within(file_len);
                let _ = header.l2_tables(file, file_len);
                let _ = header.check_l2_table(file, file_len);
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            exercise(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            exercise(&with_magic);
        }

        #[test]
        fn mutated_valid_images_never_panic(
            edits in proptest::collection::vec((0usize..200_000, any::<u8>()), 1..16),
            header_edits in proptest::collection::vec((0usize..128, any::<u8>()), 0..8),
            cut in 0usize..300_000,
        ) {
            let mut image = sparse_image(40 * GIB).unwrap();
            let len = image.len();
            for (at, value) in edits.into_iter().chain(header_edits) {
                image[at % len] = value;
            }
            exercise(&image);
            exercise(&image[..cut.min(len)]);
        }

        #[test]
        fn arbitrary_l2_entries_never_panic(
            cluster_bits in 9u32..=21,
            version in 2u32..=3,
            entries in proptest::collection::vec(any::<u64>(), 0..64),
            file_len in any::<u64>(),
        ) {
            let header = Header {
                version,
                cluster_bits,
                virtual_size: GIB,
                l1_size: entries.len() as u32,
                l1_table_offset: 65536,
                refcount_table_offset: 131072,
                refcount_table_clusters: 1,
            };
            let mut table: Vec<u8> = entries.iter().flat_map(|e| e.to_be_bytes()).collect();
            let _ = header.l2_tables(&table, file_len);
            table.resize(header.l2_table_len() as usize, 0xff);
            let _ = header.check_l2_table(&table, file_len);
        }

        #[test]
        fn hand_built_headers_never_panic(
            version in any::<u32>(),
            cluster_bits in any::<u32>(),
            virtual_size in any::<u64>(),
            l1_size in any::<u32>(),
            l1_table_offset in any::<u64>(),
            refcount_table_offset in any::<u64>(),
            refcount_table_clusters in any::<u32>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            file_len in any::<u64>(),
        ) {
            let header = Header {
                version, cluster_bits, virtual_size, l1_size, l1_table_offset,
                refcount_table_offset, refcount_table_clusters,
            };
            let _ = (header.cluster_size(), header.size_gib(), header.l1_table_range(), header.l2_table_len());
            let _ = header.check_tables_within(file_len);
            let _ = header.l2_tables(&bytes, file_len);
            let _ = header.check_l2_table(&bytes, file_len);
        }
    }
}
