//! Signature V3 (ACS3-HMAC-SHA256 and ACS3-HMAC-SM3), protocol.md §5. The default of the Tea SDK.

use hmac::Hmac;
use sha2::{Digest, Sha256};
use sm3::Sm3;
use thiserror::Error;

use super::{mac_tag, signatures_match};
use crate::encoding::percent_encode;
use crate::secret::AccessKeySecret;

/// The ACS3 algorithms an AccessKey can sign with; RSA needs a key pair and is not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `ACS3-HMAC-SHA256`, the SDK default.
    HmacSha256,
    /// `ACS3-HMAC-SM3`, the Chinese national-standard hash, chosen by the SDK option.
    HmacSm3,
}

impl Algorithm {
    /// Exact, case-sensitive match on the name the SDKs send.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "ACS3-HMAC-SHA256" => Some(Self::HmacSha256),
            "ACS3-HMAC-SM3" => Some(Self::HmacSm3),
            _ => None,
        }
    }

    /// The wire name; it is also the first line of the string to sign.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "ACS3-HMAC-SHA256",
            Self::HmacSm3 => "ACS3-HMAC-SM3",
        }
    }
}

/// The parsed `Authorization` header: what the request claims, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Picks both the hash and the HMAC.
    pub algorithm: Algorithm,
    /// Selects the secret to verify with.
    pub access_key_id: String,
    /// Lower-case header names in the listed order, which is the canonical-request order.
    pub signed_headers: Vec<String>,
    /// Hex as sent (either case); `verify` normalises it.
    pub signature: String,
}

/// Why an `Authorization` header is unusable; both map to 400 errors on the wire.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthorizationError {
    /// A well-formed ACS3 header naming an algorithm this server does not verify (e.g. ACS3-RSA-SHA256).
    #[error("unsupported signature algorithm {0}")]
    UnsupportedAlgorithm(String),
    /// The header is not an ACS3 authorization the server can read; the text says what is wrong.
    #[error("malformed Authorization header: {0}")]
    Malformed(&'static str),
}

/// Parses `ACS3-HMAC-SHA256 Credential=id,SignedHeaders=a;b,Signature=hex`: leniently (optional
/// spaces after commas, any field order); all three fields required and non-empty; SignedHeaders
/// lower-cased. ACS3-RSA-SHA256 or any other ALG -> UnsupportedAlgorithm. Anything not starting
/// with "ACS3-" is Malformed. Unknown or repeated fields are Malformed too: the header is not
/// signed, so anything ambiguous in it is refused rather than guessed.
pub fn parse_authorization(value: &str) -> Result<Authorization, AuthorizationError> {
    use AuthorizationError::{Malformed, UnsupportedAlgorithm};

    let value = value.trim();
    if !value.starts_with("ACS3-") {
        return Err(Malformed("does not start with ACS3-"));
    }
    let (name, fields) = value
        .split_once(|c: char| c.is_ascii_whitespace())
        .unwrap_or((value, ""));
    let algorithm = Algorithm::parse(name).ok_or_else(|| UnsupportedAlgorithm(name.to_owned()))?;

    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for field in fields.split(',').map(str::trim).filter(|field| !field.is_empty()) {
        let (key, field_value) = field.split_once('=').ok_or(Malformed("field without '='"))?;
        let slot = match key.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(Malformed("unknown field")),
        };
        if slot.replace(field_value.trim()).is_some() {
            return Err(Malformed("repeated field"));
        }
    }

    let credential = required(credential, Malformed("missing or empty Credential"))?;
    let signed_headers = required(signed_headers, Malformed("missing or empty SignedHeaders"))?;
    let signature = required(signature, Malformed("missing or empty Signature"))?;
    let signed_headers = signed_headers
        .split(';')
        .map(|header| match header.trim() {
            "" => Err(Malformed("empty name in SignedHeaders")),
            header => Ok(header.to_ascii_lowercase()),
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Authorization {
        algorithm,
        access_key_id: credential.to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

fn required(field: Option<&str>, error: AuthorizationError) -> Result<&str, AuthorizationError> {
    field.filter(|value| !value.is_empty()).ok_or(error)
}

/// Lower hex SHA-256 / SM3: the payload hash (`x-acs-content-sha256`, whatever the algorithm)
/// and the canonical-request hash.
pub fn hash_hex(algorithm: Algorithm, bytes: &[u8]) -> String {
    match algorithm {
        Algorithm::HmacSha256 => hex::encode(Sha256::digest(bytes)),
        Algorithm::HmacSm3 => hex::encode(Sm3::digest(bytes)),
    }
}

/// Decoded query pairs -> canonical query string (sorted by key bytes, ties by value;
/// pe(k)=pe(v); empty v -> "k="). Takes decoded pairs because Tea writes '+' on the wire but
/// signs %20.
pub fn canonical_query(query: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = query.iter().collect();
    sorted.sort_unstable();
    sorted
        .into_iter()
        .map(|(key, value)| format!("{}={}", percent_encode(key), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// For each signed name (already lower-case, in the given order): "name:" + values + "\n", where
/// values are all header values whose lower-cased name matches, each trimmed of ASCII whitespace,
/// sorted, joined with ",". `headers` is every request header as (name, value) in any case.
/// A signed header that is absent -> Err(name), so the caller can name it in the error.
pub fn canonical_headers<N: AsRef<str>, V: AsRef<str>>(
    signed_headers: &[String],
    headers: &[(N, V)],
) -> Result<String, String> {
    let mut out = String::new();
    for signed in signed_headers {
        let mut values: Vec<&str> = headers
            .iter()
            .filter(|(name, _)| name.as_ref().eq_ignore_ascii_case(signed))
            .map(|(_, value)| value.as_ref().trim_matches(|c: char| c.is_ascii_whitespace()))
            .collect();
        if values.is_empty() {
            return Err(signed.clone());
        }
        values.sort_unstable();
        out.push_str(signed);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Joins the parts with '\n'. An empty `canonical_uri` means "/" (§5.2). `canonical_headers`
/// already ends in '\n', hence the blank line before the signed-header list.
pub fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &[String],
    hashed_payload: &str,
) -> String {
    let uri = if canonical_uri.is_empty() {
        "/"
    } else {
        canonical_uri
    };
    format!(
        "{method}\n{uri}\n{canonical_query}\n{canonical_headers}\n{}\n{hashed_payload}",
        signed_headers.join(";")
    )
}

/// `ALG + "\n" + hex(H(cr))`: naming the algorithm inside the signed text stops a signature
/// made with one algorithm from being replayed under the other.
pub fn string_to_sign(algorithm: Algorithm, canonical_request: &str) -> String {
    format!(
        "{}\n{}",
        algorithm.as_str(),
        hash_hex(algorithm, canonical_request.as_bytes())
    )
}

/// Lower hex HMAC keyed with the bare secret (unlike V1, no '&' suffix).
pub fn sign(algorithm: Algorithm, secret: &AccessKeySecret, string_to_sign: &str) -> String {
    let key = secret.expose().as_bytes();
    let message = string_to_sign.as_bytes();
    let tag = match algorithm {
        Algorithm::HmacSha256 => mac_tag::<Hmac<Sha256>>(key, message),
        Algorithm::HmacSm3 => mac_tag::<Hmac<Sm3>>(key, message),
    };
    hex::encode(tag)
}

/// Constant-time comparison; accepts the provided hex in either case.
pub fn verify(algorithm: Algorithm, secret: &AccessKeySecret, string_to_sign: &str, provided: &str) -> bool {
    signatures_match(
        &sign(algorithm, secret, string_to_sign),
        &provided.to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SDK_HEADER: &str =
        "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;x-acs-date,Signature=ab12";

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    fn secret() -> AccessKeySecret {
        AccessKeySecret::new("testsecret".to_owned())
    }

    #[test]
    fn algorithm_names_round_trip_and_are_case_sensitive() {
        for algorithm in [Algorithm::HmacSha256, Algorithm::HmacSm3] {
            assert_eq!(Algorithm::parse(algorithm.as_str()), Some(algorithm));
        }
        assert_eq!(Algorithm::parse("acs3-hmac-sha256"), None);
        assert_eq!(Algorithm::parse("ACS3-RSA-SHA256"), None);
    }

    #[test]
    fn the_sdk_authorization_header_parses_into_its_three_fields() {
        assert_eq!(
            parse_authorization(SDK_HEADER),
            Ok(Authorization {
                algorithm: Algorithm::HmacSha256,
                access_key_id: "testid".to_owned(),
                signed_headers: names(&["host", "x-acs-date"]),
                signature: "ab12".to_owned(),
            })
        );
    }

    #[test]
    fn spaces_after_commas_any_field_order_and_upper_case_header_names_are_accepted() {
        let lenient = "ACS3-HMAC-SM3  Signature=AB12, SignedHeaders=Host;X-Acs-Date , Credential=testid";
        let parsed = parse_authorization(lenient).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::HmacSm3);
        assert_eq!(parsed.access_key_id, "testid");
        assert_eq!(parsed.signed_headers, names(&["host", "x-acs-date"]));
        assert_eq!(parsed.signature, "AB12");
    }

    #[test]
    fn other_acs3_algorithms_are_unsupported_rather_than_malformed() {
        let rsa = SDK_HEADER.replace("ACS3-HMAC-SHA256", "ACS3-RSA-SHA256");
        assert_eq!(
            parse_authorization(&rsa),
            Err(AuthorizationError::UnsupportedAlgorithm(
                "ACS3-RSA-SHA256".to_owned()
            ))
        );
        assert_eq!(
            parse_authorization("ACS3-"),
            Err(AuthorizationError::UnsupportedAlgorithm("ACS3-".to_owned()))
        );
    }

    #[test]
    fn headers_that_are_not_complete_acs3_authorizations_are_malformed() {
        let cases = [
            "",
            "Bearer token",
            "acs testid:signature",
            "ACS3-HMAC-SHA256",
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host",
            "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host;;date,Signature=ab",
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host,Signature=ab,Signature=cd",
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host,Signature=ab,Region=x",
            "ACS3-HMAC-SHA256 Credential=testid,SignedHeaders=host,Signature",
        ];
        for case in cases {
            assert!(
                matches!(parse_authorization(case), Err(AuthorizationError::Malformed(_))),
                "{case:?} -> {:?}",
                parse_authorization(case)
            );
        }
    }

    #[test]
    fn empty_payload_hashes_match_the_documented_constants() {
        assert_eq!(
            hash_hex(Algorithm::HmacSha256, b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hash_hex(Algorithm::HmacSm3, b""),
            "1ab21d8355cfa17f8e61194831e81a8f22bec8c728fefb747ed035eb5082aa2b"
        );
    }

    #[test]
    fn the_canonical_query_sorts_by_key_then_value_and_keeps_empty_values() {
        let query = owned(&[("b", "2"), ("a", "z"), ("a", "a b"), ("E", "")]);
        assert_eq!(canonical_query(&query), "E=&a=a%20b&a=z&b=2");
        assert_eq!(canonical_query(&[]), "");
    }

    #[test]
    fn repeated_headers_are_trimmed_sorted_and_joined_with_commas() {
        let headers = owned(&[("X-Multi", " b "), ("host", "h:1"), ("x-multi", "\ta")]);
        let canonical = canonical_headers(&names(&["host", "x-multi"]), &headers);
        assert_eq!(canonical, Ok("host:h:1\nx-multi:a,b\n".to_owned()));
    }

    #[test]
    fn a_signed_header_that_is_absent_is_reported_by_name() {
        let headers = owned(&[("host", "h")]);
        let canonical = canonical_headers(&names(&["host", "x-acs-date"]), &headers);
        assert_eq!(canonical, Err("x-acs-date".to_owned()));
    }

    #[test]
    fn the_canonical_request_has_a_blank_line_before_the_signed_header_list() {
        let request = canonical_request("GET", "", "a=1", "host:h\n", &names(&["host"]), "00");
        assert_eq!(request, "GET\n/\na=1\nhost:h\n\nhost\n00");
    }

    #[test]
    fn verification_accepts_either_hex_case_and_rejects_other_secrets_and_algorithms() {
        let sts = string_to_sign(Algorithm::HmacSha256, "request");
        let good = sign(Algorithm::HmacSha256, &secret(), &sts);
        assert_eq!(good, good.to_ascii_lowercase());
        assert!(verify(Algorithm::HmacSha256, &secret(), &sts, &good));
        assert!(verify(
            Algorithm::HmacSha256,
            &secret(),
            &sts,
            &good.to_ascii_uppercase()
        ));
        assert!(!verify(
            Algorithm::HmacSha256,
            &AccessKeySecret::new("x".to_owned()),
            &sts,
            &good
        ));
        assert!(!verify(Algorithm::HmacSm3, &secret(), &sts, &good));
        assert!(!verify(Algorithm::HmacSha256, &secret(), &sts, ""));
        assert!(!verify(Algorithm::HmacSha256, &secret(), &sts, &good[1..]));
    }

    /// Written independently of `canonical_query`: byte-wise comparison and per-byte escaping.
    fn naive_canonical_query(query: &[(String, String)]) -> String {
        fn escape(text: &str) -> String {
            let mut out = String::new();
            for byte in text.bytes() {
                let keep = byte.is_ascii_uppercase()
                    || byte.is_ascii_lowercase()
                    || byte.is_ascii_digit()
                    || b"-_.~".contains(&byte);
                if keep {
                    out.push(byte as char);
                } else {
                    out += &format!("%{byte:02X}");
                }
            }
            out
        }
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = query
            .iter()
            .map(|(k, v)| (k.clone().into_bytes(), v.clone().into_bytes()))
            .collect();
        pairs.sort();
        let mut parts = Vec::new();
        for (key, value) in pairs {
            let key = String::from_utf8(key).unwrap();
            let value = String::from_utf8(value).unwrap();
            parts.push(escape(&key) + "=" + &escape(&value));
        }
        parts.join("&")
    }

    fn signature_over(query: &[(String, String)], headers: &[(String, String)]) -> String {
        let signed: Vec<String> = headers.iter().map(|(name, _)| name.clone()).collect();
        let canonical = canonical_headers(&signed, headers).unwrap();
        let payload = hash_hex(Algorithm::HmacSha256, b"");
        let request = canonical_request(
            "POST",
            "/",
            &canonical_query(query),
            &canonical,
            &signed,
            &payload,
        );
        sign(
            Algorithm::HmacSha256,
            &secret(),
            &string_to_sign(Algorithm::HmacSha256, &request),
        )
    }

    proptest! {
        #[test]
        fn the_canonical_query_equals_a_naive_reference(
            query in proptest::collection::vec(("[a-c%+ ]{0,3}|\\PC{0,4}", "[a-c%+ ]{0,3}|\\PC{0,4}"), 0..8)
        ) {
            prop_assert_eq!(canonical_query(&query), naive_canonical_query(&query));
        }

        #[test]
        fn parsing_never_panics_on_arbitrary_text(value in any::<String>()) {
            let _ = parse_authorization(&value);
        }

        #[test]
        fn parsing_never_panics_on_near_miss_acs3_headers(
            value in "ACS3-(HMAC-SHA256|HMAC-SM3|RSA-SHA256|)[ \t]{0,2}([A-Za-z]{0,14}=?[a-z;, =]{0,8},? ?){0,4}"
        ) {
            let _ = parse_authorization(&value);
        }

        #[test]
        fn changing_any_one_query_or_header_value_changes_the_signature(
            query in proptest::collection::vec(("[A-Za-z]{1,8}", any::<String>()), 1..6),
            headers in proptest::collection::btree_map("x-acs-[a-z]{1,8}", "[!-~]{0,12}", 1..6),
            pick in any::<proptest::sample::Index>(),
            replacement in "[!-~]{0,12}",
            in_header in any::<bool>(),
        ) {
            let headers: Vec<(String, String)> = headers.into_iter().collect();
            let original = signature_over(&query, &headers);
            let (mut query, mut headers) = (query, headers);
            let value = if in_header {
                &mut pick.get_mut(&mut headers).1
            } else {
                &mut pick.get_mut(&mut query).1
            };
            prop_assume!(*value != replacement);
            *value = replacement;
            prop_assert_ne!(original, signature_over(&query, &headers));
        }
    }
}
