//! Request parsing: query string, form body and headers, from the bytes of an HTTP request.
//!
//! Input: one HTTP/1.1 request (head, blank line, body), delivered as the server's transport
//! delivers it. Beyond not panicking, `parse_call` must:
//! - decode the query and the form body exactly like the spec's form decoding (a naive
//!   transcription in `reference`), and give the same answer for any spelling of the same
//!   decoded parameters, and whatever the case of the header names;
//! - give an accepted call the spec's merge of query and form body, less the protocol's own
//!   parameters, as its business parameters;
//! - accept a signature made with the test secret exactly when the spec does;
//! - answer every refusal with a JSON or XML body the caller can parse back;
//! - read the `Authorization` header so that writing back what it read reads the same.
#![no_main]

use std::collections::BTreeMap;

use ens_images_fuzz::reference::{self, SECRET};
use ens_images_fuzz::transport::{self, Delivered};
use ens_images_fuzz::wellformed::assert_error_renders;
use ens_protocol::encoding::{form_decode, form_encode};
use ens_protocol::request::{SignatureCheck, COMMON_PARAMETERS};
use ens_protocol::sign::v3;
use ens_protocol::{AccessKeySecret, Action};
use libfuzzer_sys::fuzz_target;

/// Longest query or form body whose respelling must give the same call. The server bounds each
/// location by its size as sent, and another spelling of the same parameters can be up to three
/// times longer (a raw UTF-8 byte becomes `%XX`), so only locations well under the bound compare.
const RESPELL_LIMIT: usize = 16 * 1024;

/// The outcome, printed: `Call` has no `PartialEq` on purpose (it holds a signature).
fn outcome(request: &Delivered) -> String {
    format!("{:?}", request.parse())
}

fn check_decoding_and_respelling(request: &Delivered, expected: &str) {
    let query = form_decode(request.query.as_bytes());
    assert_eq!(
        query.as_ref().ok(),
        reference::form_decode(request.query.as_bytes()).as_ref(),
        "query decoding"
    );
    let body = form_decode(&request.body);
    assert_eq!(
        body.as_ref().ok(),
        reference::form_decode(&request.body).as_ref(),
        "body decoding"
    );
    if let Some(pairs) = query
        .as_ref()
        .ok()
        .filter(|_| request.query.len() <= RESPELL_LIMIT)
    {
        let respelled = Delivered {
            query: form_encode(pairs),
            ..request.clone()
        };
        assert_eq!(
            outcome(&respelled),
            expected,
            "same query, other spelling: {:?}",
            respelled.query
        );
    }
    let small_form = reference::is_form(&request.headers) && request.body.len() <= RESPELL_LIMIT;
    if let (Ok(pairs), true) = (&body, small_form) {
        let respelled = Delivered {
            body: form_encode(pairs).into_bytes(),
            ..request.clone()
        };
        assert_eq!(outcome(&respelled), expected, "same body, other spelling");
    }
    let shouting = Delivered {
        headers: request
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_uppercase(), value.clone()))
            .collect(),
        ..request.clone()
    };
    assert_eq!(outcome(&shouting), expected, "header names in upper case");
}

fn check_authorization_round_trip(request: &Delivered) {
    let Some(header) = reference::first_header(&request.headers, "authorization") else {
        return;
    };
    let Ok(parsed) = v3::parse_authorization(header) else {
        return;
    };
    let written = format!(
        "{} Credential={},SignedHeaders={},Signature={}",
        parsed.algorithm.as_str(),
        parsed.access_key_id,
        parsed.signed_headers.join(";"),
        parsed.signature
    );
    assert_eq!(
        v3::parse_authorization(&written).as_ref(),
        Ok(&parsed),
        "{written:?} read back differently"
    );
}

/// The business parameters are the spec's merge (query, then the form body over it) less the
/// protocol's own.
fn check_business_parameters(request: &Delivered, params: &BTreeMap<String, String>) {
    let query = reference::form_decode(request.query.as_bytes()).unwrap_or_default();
    let body = if reference::is_form(&request.headers) {
        reference::form_decode(&request.body).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut expected = reference::merged_params(&query, &body);
    expected.retain(|name, _| !COMMON_PARAMETERS.contains(&name.as_str()));
    assert_eq!(params, &expected, "business parameters");
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = transport::deliver(data) else {
        return;
    };
    let expected = outcome(&request);
    check_decoding_and_respelling(&request, &expected);
    check_authorization_round_trip(&request);
    let call = match request.parse() {
        Ok(call) => call,
        Err(failure) => return assert_error_renders(&failure.error, failure.format),
    };
    check_business_parameters(&request, &call.params);
    assert_eq!(Action::parse(call.action.as_str()), Some(call.action));
    assert!(!call.credentials.access_key_id.is_empty() && !call.credentials.nonce.is_empty());
    let verdict = call.credentials.verify(&AccessKeySecret::new(SECRET.to_owned()));
    let spec = match &call.credentials.check {
        SignatureCheck::V1 { .. } => reference::v1_accepts(&request, SECRET),
        SignatureCheck::V3 { .. } => reference::v3_accepts(&request, SECRET),
    };
    assert_eq!(
        verdict.is_ok(),
        spec,
        "server and spec disagree on the signature: {verdict:?}"
    );
    if let Err(error) = verdict {
        assert_error_renders(&error, call.format);
    }
    let _ = call.credentials.check_clock(time::OffsetDateTime::UNIX_EPOCH);
});
