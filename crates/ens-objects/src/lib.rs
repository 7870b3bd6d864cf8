//! Image bytes, kept apart from the catalog.
//!
//! The catalog (`ens-store`) says which images exist; this crate holds what they are made of:
//! - the service's own image files, one folder per image, on a local directory (the default,
//!   under the data directory) or an S3-compatible bucket shared by every replica;
//! - the operator's buckets that `ImportImage` reads from and `ExportImage` writes to, named on
//!   the wire by an OSS region and bucket and mapped by configuration to a local folder or an
//!   S3-compatible endpoint ([`BucketConfig`]);
//! - the qcow2 format checks ([`qcow2`]): what an import must be, and the sparse files that
//!   stand for images made by `CreateImage`.
//!
//! Everything streams: no transfer holds more than a few parts of a file in memory.

mod buckets;
mod local_copy;
pub mod qcow2;
mod transfer;

pub use buckets::{Bucket, BucketConfig, Buckets, ObjectError};
pub use transfer::{ImageFiles, ImportLimits, ImportedFile, TransferError};
