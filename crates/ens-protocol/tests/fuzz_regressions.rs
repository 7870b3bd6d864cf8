//! Problems the fuzz targets (fuzz/, scripts/fuzz.sh) found, kept as ordinary tests so that
//! `cargo test` guards them without the fuzzing toolchain.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use ens_protocol::request::{parse_call, V3_SINGLE_HEADERS};
use ens_protocol::sign::v3::{self, Algorithm};
use ens_protocol::{AccessKeySecret, ErrorCode, RawRequest};

fn secret() -> AccessKeySecret {
    AccessKeySecret::new("testsecret".to_owned())
}

fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A V3 request signed over `headers` (every one of them), with its `Authorization` added.
fn signed_v3(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut headers = owned(headers);
    let payload = v3::hash_hex(Algorithm::HmacSha256, b"");
    headers.push(("x-acs-content-sha256".to_owned(), payload.clone()));
    let mut names: Vec<String> = headers.iter().map(|(name, _)| name.clone()).collect();
    names.sort();
    names.dedup();
    let canonical_headers = v3::canonical_headers(&names, &headers).unwrap();
    let request = v3::canonical_request("POST", "/", "", &canonical_headers, &names, &payload);
    let string_to_sign = v3::string_to_sign(Algorithm::HmacSha256, &request);
    let signature = v3::sign(Algorithm::HmacSha256, &secret(), &string_to_sign);
    headers.push((
        "authorization".to_owned(),
        format!(
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders={},Signature={signature}",
            names.join(";")
        ),
    ));
    headers
}

fn parse(headers: &[(String, String)]) -> Result<ens_protocol::Call, ens_protocol::ParseFailure> {
    parse_call(&RawRequest {
        method: "POST",
        path: "/",
        query: "",
        headers: &ens_protocol::borrowed_headers(headers),
        body: b"",
    })
}

const SIGNED: [(&str, &str); 5] = [
    ("host", "127.0.0.1:8080"),
    ("x-acs-action", "DescribeImages"),
    ("x-acs-version", "2017-11-10"),
    ("x-acs-date", "2025-01-02T03:04:05Z"),
    ("x-acs-signature-nonce", "0001,5eed"),
];

#[test]
fn a_v3_request_with_a_comma_in_its_nonce_verifies() {
    let call = parse(&signed_v3(&SIGNED)).unwrap();
    assert_eq!(call.credentials.nonce, "0001,5eed");
    call.credentials.verify(&secret()).unwrap();
}

/// verify_v3: the signature covers a repeated header's values sorted and joined with ',', so
/// splitting `0001,5eed` into two headers (or reordering two) kept it valid while the server
/// took the first value as the nonce: a captured request could be replayed under a new nonce.
#[test]
fn a_v3_request_whose_nonce_header_is_split_in_two_is_refused() {
    let mut headers: Vec<(String, String)> = signed_v3(&SIGNED)
        .into_iter()
        .filter(|(name, _)| name != "x-acs-signature-nonce")
        .collect();
    headers.extend(owned(&[
        ("x-acs-signature-nonce", "0001"),
        ("x-acs-signature-nonce", "5eed"),
    ]));
    let failure = parse(&headers).unwrap_err();
    assert_eq!(failure.error.code, ErrorCode::IncompleteSignature);
    assert!(
        failure
            .error
            .message
            .contains("header x-acs-signature-nonce is given more than once"),
        "{}",
        failure.error.message
    );
}

#[test]
fn every_header_a_v3_call_reads_one_value_of_is_refused_when_repeated() {
    let headers = signed_v3(&SIGNED);
    for name in V3_SINGLE_HEADERS {
        let mut repeated = headers.clone();
        repeated.push((name.to_ascii_uppercase(), "x".to_owned()));
        repeated.push((name.to_owned(), "y".to_owned()));
        let failure = parse(&repeated).unwrap_err();
        assert_eq!(failure.error.code, ErrorCode::IncompleteSignature, "{name}");
    }
}
