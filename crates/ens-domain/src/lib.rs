//! The ENS image domain: who owns what, who may see it, and what a query asks for.
//!
//! Everything here is plain data plus the rules that keep it valid (image names, page
//! bounds, identifiers). Parameters are validated once, at the edge, into these types, so
//! code that holds a `PageSize` cannot hold an invalid one. This crate must not depend on
//! HTTP, SQL or the wire format: the protocol and storage crates depend on it, never the
//! other way round.

pub mod account;
pub mod image;
pub mod page;
pub mod rules;
pub mod source;
pub mod transfer;
pub mod validation;

pub use account::{AccessKeyId, AccessKeyStatus, AccountId, Principal, RamUserName, MAX_ACCESS_KEY_ID_CHARS};
pub use image::{
    BuildFailure, DiskDeviceMapping, Image, ImageId, ImageOwnerAlias, ImageQuery, ImageStatus, ImageView,
    NodeId,
};
pub use page::{Page, PageNumber, PageRequest, PageSize};
pub use rules::ImageError;
pub use source::{CustomImagePlan, CustomImageSource, Instance, NewCustomImage, Snapshot};
pub use transfer::{ExportStatus, ImageExportInfo, ObjectName};
pub use validation::InvalidField;
