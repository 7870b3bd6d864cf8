//! The body of the two signature targets: sign, check the success path, edit, check the verdict.

use ens_protocol::request::SignatureCheck;
use ens_protocol::{AccessKeySecret, Call};

use crate::reference::{self, SECRET};
use crate::script::{self, Model};
use crate::transport::{self, Delivered};

/// Which signature a target signs its template with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// RPC V1, HMAC-SHA1 in the `Signature` parameter.
    V1,
    /// ACS3 in the `Authorization` header.
    V3,
}

fn is_version(check: &SignatureCheck, version: Version) -> bool {
    matches!(
        (check, version),
        (SignatureCheck::V1 { .. }, Version::V1) | (SignatureCheck::V3 { .. }, Version::V3)
    )
}

fn spec_accepts(call: &Call, request: &Delivered, secret: &str) -> bool {
    match call.credentials.check {
        SignatureCheck::V1 { .. } => reference::v1_accepts(request, secret),
        SignatureCheck::V3 { .. } => reference::v3_accepts(request, secret),
    }
}

fn verifies(call: &Call, secret: &str) -> bool {
    call.credentials
        .verify(&AccessKeySecret::new(secret.to_owned()))
        .is_ok()
}

/// What the server acts on, which a request that still verifies after an edit must keep.
///
/// V3 leaves out the AccessKey ID (its `Credential` is not signed: it only picks the secret, and
/// here every key has the same one); V1 leaves out whether a security token came, since an
/// unsigned `x-acs-security-token` header can only make the server refuse the call.
fn meaning(call: &Call) -> String {
    let credentials = &call.credentials;
    let who = match credentials.check {
        SignatureCheck::V1 { .. } => format!("key {}", credentials.access_key_id),
        SignatureCheck::V3 { .. } => format!("token {}", credentials.has_security_token),
    };
    format!(
        "{:?} {:?} {:?} nonce {:?} at {} {who}",
        call.action, call.format, call.params, credentials.nonce, credentials.timestamp
    )
}

/// Runs one input (see [`script`]): signs the template with [`SECRET`], asserts the server
/// accepts it when it parses, applies the edits, and asserts that whatever the server still
/// accepts is accepted by the spec too, under the signing secret only, and means what was signed.
///
/// # Panics
/// On any of those violations: that is the finding.
pub fn run(data: &[u8], version: Version) {
    let (edits, template) = script::split(data);
    let Some(mut model) = transport::deliver(template).as_ref().and_then(Model::of) else {
        return;
    };
    let signs_itself = match version {
        Version::V1 => {
            model.sign_v1(SECRET);
            false
        }
        Version::V3 => model
            .sign_v3(SECRET)
            .signed_headers
            .iter()
            .any(|name| name == "authorization"),
    };
    let Some(signed) = model.deliver() else {
        return;
    };
    let original = signed.parse().ok();
    if let Some(call) = original
        .as_ref()
        .filter(|call| is_version(&call.credentials.check, version))
    {
        // A signature that covers the Authorization header it travels in cannot be made.
        if !signs_itself {
            assert!(
                spec_accepts(call, &signed, SECRET),
                "the spec refuses its own signature"
            );
            let verdict = call.credentials.verify(&AccessKeySecret::new(SECRET.to_owned()));
            assert!(
                verdict.is_ok(),
                "a correctly signed request is refused: {verdict:?}"
            );
        }
    }
    let mut secret = SECRET.to_owned();
    for edit in &edits {
        if let Some(other) = model.apply(edit) {
            secret = other;
        }
    }
    let Some(edited) = model.deliver() else {
        return;
    };
    let Ok(call) = edited.parse() else {
        return;
    };
    if !verifies(&call, &secret) {
        return;
    }
    assert_eq!(secret, SECRET, "accepted under a secret it was not signed with");
    assert!(
        spec_accepts(&call, &edited, SECRET),
        "accepted although the spec refuses it"
    );
    if let Some(original) = &original {
        assert_eq!(
            meaning(&call),
            meaning(original),
            "an edited request verifies but means something else"
        );
    }
}
