//! Alibaba Cloud RAM access policies, as the cloud documents them, for authorizing ENS image calls.
//!
//! The crate's job: accept a policy document only if it follows the RAM grammar and uses nothing
//! this service cannot enforce ([`PolicyDocument::parse`]), then decide a request against a caller's
//! policies ([`evaluate`]): an explicit `Deny` wins, then an `Allow`, else refusal by default.
//! Supported conditions are `acs:SourceIp` (`IpAddress`, `NotIpAddress`), `acs:CurrentTime`
//! (`DateGreaterThan[Equals]`, `DateLessThan[Equals]`) and `acs:SecureTransport` (`Bool`).
//!
//! It is pure: no I/O and no clock (the caller passes the current time in [`RequestContext`]).
//! It must not depend on HTTP, SQL or storage; the server and the store depend on it, never the
//! other way round.

mod condition;
mod document;
mod error;
mod eval;
mod json;
mod wildcard;

pub use condition::{Condition, ConditionKey, Operator};
pub use document::{ActionScope, Effect, PolicyDocument, Statement, MAX_DOCUMENT_CHARS};
pub use error::PolicyError;
pub use eval::{evaluate, AccessRequest, Decision, RequestContext};

/// The resource of calls that address no single image, such as listing: only a statement whose
/// `Resource` pattern matches the literal `*` (in practice, `"*"` itself) covers them, so a grant
/// limited to some images never grants a listing of all.
pub const ALL_RESOURCES: &str = "*";

/// The ARN policies use to name one image: `acs:ens:<node>:<account>:image/<id>`.
///
/// Images that belong to no node leave the region part empty, as the cloud does, so write `*` there
/// in policies that should match them.
#[must_use]
pub fn image_arn(node: Option<&str>, account: &str, image_id: &str) -> String {
    format!("acs:ens:{}:{account}:image/{image_id}", node.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_arns() {
        assert_eq!(
            image_arn(Some("cn-beijing-telecom"), "1234567890123456", "m-5ehpc0ec4z3dz7"),
            "acs:ens:cn-beijing-telecom:1234567890123456:image/m-5ehpc0ec4z3dz7"
        );
        assert_eq!(image_arn(None, "42", "m-1"), "acs:ens::42:image/m-1");
    }
}
