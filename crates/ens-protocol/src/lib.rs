//! The ENS RPC wire protocol, shared by the server and by clients.
//!
//! This crate turns raw request parts into decoded parameters, computes and verifies the two
//! signature versions the official SDKs use (V1 HMAC-SHA1 and V3 ACS3-HMAC-SHA256/SM3), names
//! every wire error once, and renders responses as JSON or XML. It performs no I/O and reads
//! no clock: callers pass `now` in. It must not depend on HTTP servers or storage.

pub mod action;
pub mod encoding;
pub mod error;
pub mod ops;
pub mod render;
pub mod request;
pub mod secret;
pub mod sign;

pub use action::Action;
pub use error::{ApiError, ErrorCode};
pub use render::{Body, Format, Value};
pub use request::{borrowed_headers, parse_call, Call, Credentials, Header, ParseFailure, RawRequest};
pub use secret::AccessKeySecret;
