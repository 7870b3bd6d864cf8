//! Image files in and out of object storage: what `ImportImage` reads, what `ExportImage`
//! writes, and the names that reach a bucket.
//!
//! Bucket names, object keys and export prefixes come from callers and end up as paths in
//! a local folder or keys in an S3 bucket, so their rules here are also what keeps every
//! transfer inside the operator's storage: no `..` or `.` segment, no absolute path, no
//! backslash, no control character, whatever the engine behind the bucket.

use time::OffsetDateTime;

use crate::image::{ImageId, ImageOwnerAlias};
use crate::validation::InvalidField;

/// One object in the operator's object storage, as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName {
    /// `OSSRegion` / `OSSRegionId`: with the bucket, selects a configured store.
    pub region: String,
    /// `OSSBucket`.
    pub bucket: String,
    /// `OSSObject`, or for an export `<OSSPrefix><ImageId>.qcow2`.
    pub key: String,
}

/// Longest object key, as in OSS and S3.
pub const MAX_OBJECT_KEY_BYTES: usize = 1023;

/// Longest `OSSPrefix` the API accepts.
pub const MAX_EXPORT_PREFIX_CHARS: usize = 30;

/// Most disks one `ImportImage` may name: a system disk and up to 16 data disks.
pub const MAX_IMPORT_DISKS: usize = 17;

/// Checks an `OSSBucket`: 3 to 63 lower-case letters, digits and `-`, starting and ending
/// with a letter or digit (the OSS and S3 rule), so a bucket name is never a path.
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_bucket_name(field: &'static str, value: &str) -> Result<(), InvalidField> {
    let edges_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid = (3..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && edges_ok(value.as_bytes().first())
        && edges_ok(value.as_bytes().last());
    if valid {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            "a bucket name is 3 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit",
        ))
    }
}

/// Checks an `OSSObject`: 1 to 1023 bytes of `/`-separated segments, none empty, `.` or
/// `..`, no backslash and no control character.
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_object_key(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() || value.len() > MAX_OBJECT_KEY_BYTES {
        return Err(InvalidField::new(field, "an object key is 1 to 1023 bytes"));
    }
    if value.chars().any(|c| c.is_control() || c == '\\') {
        return Err(InvalidField::new(
            field,
            "an object key must not contain a backslash or a control character",
        ));
    }
    if value
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(InvalidField::new(
            field,
            "an object key must not start or end with '/', nor hold an empty, '.' or '..' segment",
        ));
    }
    Ok(())
}

/// Checks an `OSSPrefix`: 1 to 30 letters, digits, `-`, `_` or `/`, not starting with `/`
/// and without `//` (the export's key is the prefix followed by `<ImageId>.qcow2`).
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_export_prefix(field: &'static str, value: &str) -> Result<(), InvalidField> {
    let valid = !value.is_empty()
        && value.chars().count() <= MAX_EXPORT_PREFIX_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/'))
        && !value.starts_with('/')
        && !value.contains("//");
    if valid {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            "a prefix is 1 to 30 letters, digits, '-', '_' or '/', not starting with '/' and without '//'",
        ))
    }
}

/// The key an export of `image` under `prefix` writes: `<OSSPrefix><ImageId>.qcow2`.
#[must_use]
pub fn export_key(prefix: Option<&str>, image: &ImageId) -> String {
    format!("{}{}.qcow2", prefix.unwrap_or(""), image.as_str())
}

/// Where an image's export stands (`ImageExportStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportStatus {
    /// Never exported.
    Unexported,
    /// A copy to the bucket is under way.
    Exporting,
    /// The last export completed; the object is in the bucket.
    Exported,
    /// The last export failed.
    ExportError,
}

impl ExportStatus {
    /// Every status, for parsing and tests.
    pub const ALL: [Self; 4] = [
        Self::Unexported,
        Self::Exporting,
        Self::Exported,
        Self::ExportError,
    ];

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unexported => "Unexported",
            Self::Exporting => "Exporting",
            Self::Exported => "Exported",
            Self::ExportError => "ExportError",
        }
    }

    /// Reads a wire name.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == value)
    }
}

/// One custom image as `DescribeExportImageInfo` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageExportInfo {
    /// The image.
    pub image_id: ImageId,
    /// Its name.
    pub image_name: String,
    /// `self` for the caller's own images (the only ones that can be exported).
    pub alias: ImageOwnerAlias,
    /// E.g. `x86_64`.
    pub architecture: String,
    /// E.g. `centos`.
    pub platform: String,
    /// When the image was made.
    pub creation_time: OffsetDateTime,
    /// Its export's state.
    pub status: ExportStatus,
    /// Where the last export was written; empty when never exported.
    pub url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_never_paths() {
        for good in ["abc", "images-in", "b1-2-3", &"a".repeat(63)] {
            assert!(validate_bucket_name("OSSBucket", good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "..",
            "a..",
            "-abc",
            "abc-",
            "ABC",
            "a/b",
            "a_b",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(validate_bucket_name("OSSBucket", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_keys_cannot_leave_their_bucket() {
        for good in ["disk.qcow2", "dir/sub/disk.qcow2", "a..b", ".hidden", "x y"] {
            assert!(validate_object_key("OSSObject", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\u{0}b",
            ".",
            "..",
        ] {
            assert!(validate_object_key("OSSObject", bad).is_err(), "{bad:?}");
        }
        assert!(validate_object_key("OSSObject", &"k".repeat(1024)).is_err());
    }

    #[test]
    fn prefixes_hold_no_dots_and_no_leading_slash() {
        for good in ["exports/", "a", "team-1/day_2/"] {
            assert!(validate_export_prefix("OSSPrefix", good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "../", "a/../", "a//b", "a.b", &"p".repeat(31)] {
            assert!(validate_export_prefix("OSSPrefix", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn export_key_is_prefix_then_image() {
        let image = ImageId::parse("m-5t4xwkfkbs0uxv0kymdb6uip7").unwrap();
        assert_eq!(
            export_key(Some("out/"), &image),
            "out/m-5t4xwkfkbs0uxv0kymdb6uip7.qcow2"
        );
        assert_eq!(export_key(None, &image), "m-5t4xwkfkbs0uxv0kymdb6uip7.qcow2");
    }

    #[test]
    fn export_statuses_round_trip() {
        for status in ExportStatus::ALL {
            assert_eq!(ExportStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ExportStatus::parse("exported"), None);
    }
}
