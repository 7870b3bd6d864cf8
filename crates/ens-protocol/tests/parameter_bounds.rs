//! Parameter locations are bounded before they are decoded: a query string or form body over
//! the byte or count bound is refused whole, whatever its shape.

use ens_protocol::request::{MAX_PARAMETERS, MAX_PARAMETER_BYTES};
use ens_protocol::{parse_call, RawRequest};

fn form_post(body: &[u8]) -> Result<ens_protocol::Call, ens_protocol::ParseFailure> {
    let headers = vec![(
        "Content-Type".to_owned(),
        "application/x-www-form-urlencoded".to_owned(),
    )];
    parse_call(&RawRequest {
        method: "POST",
        path: "/",
        query: "Action=DescribeImages&Version=2017-11-10",
        headers: &ens_protocol::borrowed_headers(&headers),
        body,
    })
}

/// The code and message a body is refused with (empty when it is accepted).
fn refusal(body: &[u8]) -> String {
    let (code, message) = form_post(body)
        .err()
        .map(|failure| (failure.error.code.wire_code().into_owned(), failure.error.message))
        .unwrap_or_default();
    assert_eq!(code, "InvalidParameter", "{message}");
    message
}

#[test]
fn a_location_over_the_byte_bound_is_refused_before_decoding() {
    // Invalid percent-encoding at the end: had it been decoded, the error would say so.
    let mut body = format!("ImageName={}", "a".repeat(MAX_PARAMETER_BYTES)).into_bytes();
    body.extend_from_slice(b"%");
    assert!(refusal(&body).contains(&format!("more than {MAX_PARAMETER_BYTES} bytes")));
}

#[test]
fn a_location_over_the_count_bound_is_refused_before_decoding() {
    let body: Vec<u8> = (0..=MAX_PARAMETERS)
        .map(|index| format!("a{index}=1"))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes();
    assert!(refusal(&body).contains(&format!("more than {MAX_PARAMETERS} parameters")));
    // Duplicates count too (they would be refused anyway, but only after decoding).
    assert!(refusal("a=1&".repeat(MAX_PARAMETERS + 1).as_bytes()).contains("parameters"));
}

#[test]
fn empty_segments_do_not_count_and_a_location_at_the_bounds_is_decoded() {
    let body: Vec<u8> = (0..MAX_PARAMETERS)
        .map(|index| format!("a{index}=1&&"))
        .collect::<String>()
        .into_bytes();
    // Parsed past the bounds: refused only for the missing signature.
    let failure = form_post(&body)
        .err()
        .map(|failure| failure.error.code.wire_code().into_owned());
    assert_eq!(failure.as_deref(), Some("MissingSignature"));
}
