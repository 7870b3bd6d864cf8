//! Percent-encoding and form decoding for the RPC wire.
//!
//! Signatures are computed over *decoded* parameters re-encoded with one strict RFC 3986 encoder,
//! so the spelling a client used on the wire (`+` or `%20` for a space) never changes a signature.

use thiserror::Error;

const UPPER_HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Why a query or form body could not be decoded; the server answers with a 400.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// A `%` not followed by two hex digits: guessing its meaning could let two wires sign alike.
    #[error("invalid percent-encoding: '%' must be followed by two hex digits")]
    InvalidPercentEncoding,
    /// Parameters are text; bytes that are not UTF-8 cannot be re-encoded for signing.
    #[error("decoded parameter is not valid UTF-8")]
    InvalidUtf8,
}

/// RFC 3986 percent-encoding of UTF-8 bytes: A-Z a-z 0-9 - _ . ~ kept, every other byte -> %XX
/// upper-case hex. This is `pe()` of both signature versions, so it must never vary.
pub fn percent_encode(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    encode_into(&mut out, input, false);
    out
}

/// Form-decodes `a=b&c=d` (application/x-www-form-urlencoded and URL query): split on '&', skip
/// empty segments, split each on the first '=', a pair without '=' is (key, ""), '+' -> space, then
/// %XX percent-decoding; the decoded bytes must be UTF-8. Keeps order and duplicates (the caller
/// decides what duplicates mean).
pub fn form_decode(input: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
    input
        .split(|&byte| byte == b'&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let mut parts = segment.splitn(2, |&byte| byte == b'=');
            let key = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default();
            Ok((decode_component(key)?, decode_component(value)?))
        })
        .collect()
}

/// Encodes pairs the way the Tea SDK puts a query/form on the wire (space as '+', otherwise like
/// percent_encode), joined with '&' in the given order. Used by clients and tests to build requests.
pub fn form_encode(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (index, (key, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        encode_into(&mut out, key, true);
        out.push('=');
        encode_into(&mut out, value, true);
    }
    out
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

fn encode_into(out: &mut String, input: &str, space_as_plus: bool) {
    for &byte in input.as_bytes() {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else if space_as_plus && byte == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(char::from(UPPER_HEX[usize::from(byte >> 4)]));
            out.push(char::from(UPPER_HEX[usize::from(byte & 0x0F)]));
        }
    }
}

fn decode_component(raw: &[u8]) -> Result<String, DecodeError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.iter().copied();
    while let Some(byte) = rest.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = rest.next().and_then(hex_value);
                let low = rest.next().and_then(hex_value);
                match (high, low) {
                    (Some(high), Some(low)) => bytes.push(high << 4 | low),
                    _ => return Err(DecodeError::InvalidPercentEncoding),
                }
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn unreserved_characters_pass_through_and_everything_else_is_upper_hex() {
        assert_eq!(percent_encode("AZaz09-_.~"), "AZaz09-_.~");
        assert_eq!(percent_encode(" */+=&%:"), "%20%2A%2F%2B%3D%26%25%3A");
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode(""), "");
    }

    #[test]
    fn form_encoding_writes_space_as_plus_and_joins_pairs_in_order() {
        let wire = form_encode(&pairs(&[("b", "x y"), ("a", "+*~"), ("", "")]));
        assert_eq!(wire, "b=x+y&a=%2B%2A~&=");
    }

    #[test]
    fn form_decoding_handles_plus_percent_missing_equals_and_empty_segments() {
        let decoded = form_decode(b"&a=x+y%2B&&flag&empty=&k=v=w&").unwrap();
        assert_eq!(
            decoded,
            pairs(&[("a", "x y+"), ("flag", ""), ("empty", ""), ("k", "v=w")])
        );
    }

    #[test]
    fn form_decoding_keeps_duplicates_in_wire_order() {
        let decoded = form_decode(b"a=2&b=1&a=1").unwrap();
        assert_eq!(decoded, pairs(&[("a", "2"), ("b", "1"), ("a", "1")]));
    }

    #[test]
    fn form_decoding_accepts_lower_case_hex_digits() {
        assert_eq!(form_decode(b"k=%e4%b8%ad%2f").unwrap(), pairs(&[("k", "中/")]));
    }

    #[test]
    fn truncated_or_non_hex_escapes_are_rejected() {
        for bad in [&b"k=%"[..], b"k=%4", b"k=%G1", b"k=%4G", b"%zz=v"] {
            assert_eq!(
                form_decode(bad),
                Err(DecodeError::InvalidPercentEncoding),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_rejected_whether_escaped_or_raw() {
        assert_eq!(form_decode(b"k=%FF"), Err(DecodeError::InvalidUtf8));
        assert_eq!(form_decode(b"k=\xC3"), Err(DecodeError::InvalidUtf8));
        assert_eq!(form_decode(b"%E4%B8=v"), Err(DecodeError::InvalidUtf8));
    }

    proptest! {
        #[test]
        fn percent_encoded_text_is_only_unreserved_or_escapes_and_decodes_back(input in any::<String>()) {
            let encoded = percent_encode(&input);
            let mut bytes = encoded.bytes();
            while let Some(byte) = bytes.next() {
                if byte == b'%' {
                    let high = bytes.next();
                    let low = bytes.next();
                    prop_assert!(high.is_some_and(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
                    prop_assert!(low.is_some_and(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
                } else {
                    prop_assert!(is_unreserved(byte), "unexpected byte {byte:#x} in {encoded}");
                }
            }
            prop_assert_eq!(decode_component(encoded.as_bytes()), Ok(input));
        }

        #[test]
        fn form_decoding_inverts_form_encoding_for_any_unicode_pairs(
            list in proptest::collection::vec((any::<String>(), any::<String>()), 0..8)
        ) {
            prop_assert_eq!(form_decode(form_encode(&list).as_bytes()), Ok(list));
        }

        #[test]
        fn form_decoding_never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = form_decode(&input);
        }
    }
}
