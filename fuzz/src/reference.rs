//! A second, deliberately naive transcription of the signature rules of `shared/spec/protocol.md`
//! (§3 form decoding, §4 V1, §5 V3), sharing no code with `ens-protocol`.
//!
//! The fuzz targets sign requests with it and compare its verdicts with the server's: when both
//! sides were written from the spec independently, a disagreement is a bug in one of them, which
//! a round trip through one shared implementation could never show.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sm3::Sm3;

use crate::transport::Delivered;

/// The secret every seed is signed with (the spec's test vectors use it too).
pub const SECRET: &str = "testsecret";

/// The two ACS3 algorithms, by the name that opens the `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `ACS3-HMAC-SHA256`.
    Sha256,
    /// `ACS3-HMAC-SM3`.
    Sm3,
}

impl Algorithm {
    /// The wire name, also the first line of the V3 string to sign.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "ACS3-HMAC-SHA256",
            Self::Sm3 => "ACS3-HMAC-SM3",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Sha256, Self::Sm3]
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
    }

    /// Lower-case hex digest, as `x-acs-content-sha256` carries it whatever the algorithm.
    #[must_use]
    pub fn hash_hex(self, bytes: &[u8]) -> String {
        match self {
            Self::Sha256 => hex::encode(Sha256::digest(bytes)),
            Self::Sm3 => hex::encode(Sm3::digest(bytes)),
        }
    }

    fn hmac_hex(self, key: &[u8], message: &[u8]) -> String {
        match self {
            Self::Sha256 => hex::encode(tag::<Hmac<Sha256>>(key, message)),
            Self::Sm3 => hex::encode(tag::<Hmac<Sm3>>(key, message)),
        }
    }
}

fn tag<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; an empty tag could never match a real signature anyway.
    <M as hmac::digest::KeyInit>::new_from_slice(key)
        .map(|mac| mac.chain_update(message).finalize().into_bytes().to_vec())
        .unwrap_or_default()
}

/// `pe()`: every byte outside `A-Z a-z 0-9 - _ . ~` as `%XX`, upper-case hex.
#[must_use]
pub fn pe(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                char::from(byte).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// §3 form decoding: `&`-separated, empty segments skipped, first `=` splits, `+` is a space,
/// `%XX` a byte, and the result must be UTF-8; `None` when it is not decodable.
#[must_use]
pub fn form_decode(wire: &[u8]) -> Option<Vec<(String, String)>> {
    fn component(raw: &[u8]) -> Option<String> {
        let mut bytes = Vec::new();
        let mut index = 0;
        while let Some(&byte) = raw.get(index) {
            index += 1;
            match byte {
                b'+' => bytes.push(b' '),
                b'%' => {
                    let digits = std::str::from_utf8(raw.get(index..index + 2)?).ok()?;
                    if !digits.bytes().all(|digit| digit.is_ascii_hexdigit()) {
                        return None;
                    }
                    bytes.push(u8::from_str_radix(digits, 16).ok()?);
                    index += 2;
                }
                other => bytes.push(other),
            }
        }
        String::from_utf8(bytes).ok()
    }
    wire.split(|&byte| byte == b'&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| match segment.iter().position(|&byte| byte == b'=') {
            Some(at) => Some((component(&segment[..at])?, component(&segment[at + 1..])?)),
            None => Some((component(segment)?, String::new())),
        })
        .collect()
}

/// The first value of a header, names compared without regard to case.
#[must_use]
pub fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Whether the body is a form whose parameters join the query's (the first `content-type` rules).
#[must_use]
pub fn is_form(headers: &[(String, String)]) -> bool {
    first_header(headers, "content-type").is_some_and(|value| {
        value
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    })
}

/// The parameters of a call: query, then the form body over it (the body wins a name both carry).
#[must_use]
pub fn merged_params(query: &[(String, String)], body: &[(String, String)]) -> BTreeMap<String, String> {
    query.iter().chain(body).cloned().collect()
}

/// §4: `base64(HMAC-SHA1(secret + "&", METHOD + "&%2F&" + pe(sorted pe(k)=pe(v) joined by &)))`;
/// `params` must not hold `Signature`.
#[must_use]
pub fn v1_sign(secret: &str, method: &str, params: &BTreeMap<String, String>) -> String {
    let canonical: Vec<String> = params
        .iter()
        .map(|(key, value)| format!("{}={}", pe(key), pe(value)))
        .collect();
    let string_to_sign = format!("{method}&{}&{}", pe("/"), pe(&canonical.join("&")));
    let key = format!("{secret}&");
    STANDARD.encode(tag::<Hmac<Sha1>>(key.as_bytes(), string_to_sign.as_bytes()))
}

/// Whether the spec accepts the V1 signature of a delivered request under `secret`.
#[must_use]
pub fn v1_accepts(request: &Delivered, secret: &str) -> bool {
    let Some(query) = form_decode(request.query.as_bytes()) else {
        return false;
    };
    let body = if is_form(&request.headers) {
        match form_decode(&request.body) {
            Some(pairs) => pairs,
            None => return false,
        }
    } else {
        Vec::new()
    };
    let mut params = merged_params(&query, &body);
    let Some(provided) = params.remove("Signature") else {
        return false;
    };
    v1_sign(secret, &request.method, &params) == provided
}

/// What the `Authorization` header of a V3 request claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Authorization {
    /// The algorithm named first.
    pub algorithm: Algorithm,
    /// `Credential`.
    pub credential: String,
    /// `SignedHeaders`, lower-cased, in the listed order.
    pub signed_headers: Vec<String>,
    /// `Signature`, as sent.
    pub signature: String,
}

impl V3Authorization {
    /// Reads `ALG Credential=..,SignedHeaders=a;b,Signature=..` (fields in any order).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (name, fields) = value
            .split_once(|c: char| c.is_ascii_whitespace())
            .unwrap_or((value, ""));
        let algorithm = Algorithm::from_name(name)?;
        let mut found: BTreeMap<&str, &str> = BTreeMap::new();
        for field in fields.split(',').map(str::trim).filter(|field| !field.is_empty()) {
            let (key, value) = field.split_once('=')?;
            if found.insert(key.trim(), value.trim()).is_some() {
                return None;
            }
        }
        Some(Self {
            algorithm,
            credential: (*found.get("Credential")?).to_owned(),
            signed_headers: found
                .get("SignedHeaders")?
                .split(';')
                .map(|name| name.trim().to_ascii_lowercase())
                .collect(),
            signature: (*found.get("Signature")?).to_owned(),
        })
    }

    /// The header value as the SDKs write it.
    #[must_use]
    pub fn render(&self) -> String {
        format!(
            "{} Credential={},SignedHeaders={},Signature={}",
            self.algorithm.name(),
            self.credential,
            self.signed_headers.join(";"),
            self.signature
        )
    }
}

/// §5.2: the lower-hex ACS3 signature of a request with these decoded query pairs, headers
/// (every one, any case) and body.
#[must_use]
pub fn v3_sign(
    secret: &str,
    authorization: &V3Authorization,
    method: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    body: &[u8],
) -> String {
    let mut sorted: Vec<&(String, String)> = query.iter().collect();
    sorted.sort();
    let canonical_query: Vec<String> = sorted
        .iter()
        .map(|(key, value)| format!("{}={}", pe(key), pe(value)))
        .collect();
    let mut canonical_headers = String::new();
    for name in &authorization.signed_headers {
        let mut values: Vec<&str> = headers
            .iter()
            .filter(|(key, _)| key.to_ascii_lowercase() == *name)
            .map(|(_, value)| value.trim_matches(|c: char| c.is_ascii_whitespace()))
            .collect();
        values.sort();
        canonical_headers += &format!("{name}:{}\n", values.join(","));
    }
    let algorithm = authorization.algorithm;
    let canonical_request = [
        method,
        "/",
        &canonical_query.join("&"),
        &canonical_headers,
        &authorization.signed_headers.join(";"),
        &algorithm.hash_hex(body),
    ]
    .join("\n");
    let string_to_sign = format!(
        "{}\n{}",
        algorithm.name(),
        algorithm.hash_hex(canonical_request.as_bytes())
    );
    algorithm.hmac_hex(secret.as_bytes(), string_to_sign.as_bytes())
}

/// Whether the spec accepts the V3 signature of a delivered request under `secret`: the
/// payload digest matches the body and the signature matches (hex in either case).
#[must_use]
pub fn v3_accepts(request: &Delivered, secret: &str) -> bool {
    let Some(authorization) =
        first_header(&request.headers, "authorization").and_then(V3Authorization::parse)
    else {
        return false;
    };
    let Some(query) = form_decode(request.query.as_bytes()) else {
        return false;
    };
    let payload = authorization.algorithm.hash_hex(&request.body);
    let payload_matches = first_header(&request.headers, "x-acs-content-sha256")
        .is_some_and(|claimed| claimed.trim().eq_ignore_ascii_case(&payload));
    payload_matches
        && v3_sign(
            secret,
            &authorization,
            &request.method,
            &query,
            &request.headers,
            &request.body,
        ) == authorization.signature.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The spec's signature vectors (a copy kept beside ens-protocol's tests).
    fn vectors(file: &str) -> Vec<serde_json::Value> {
        let path = format!(
            "{}/../crates/ens-protocol/tests/vectors/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).expect("vector file");
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("vector JSON");
        parsed["vectors"].as_array().expect("a vector list").clone()
    }

    fn text_pairs(object: &serde_json::Value) -> Vec<(String, String)> {
        let entries = object.as_object().expect("an object");
        entries
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("text").to_owned()))
            .collect()
    }

    #[test]
    fn every_v1_vector_signs_to_its_signature() {
        for vector in vectors("rpc_v1.json") {
            let inputs = &vector["inputs"];
            let params = merged_params(&text_pairs(&inputs["signed_params"]), &[]);
            let secret = inputs["access_key_secret"].as_str().expect("secret");
            let method = inputs["http_method"].as_str().expect("method");
            assert_eq!(
                v1_sign(secret, method, &params),
                vector["signature"],
                "{}",
                vector["name"]
            );
        }
    }

    #[test]
    fn every_v3_vector_signs_to_its_signature() {
        for vector in vectors("acs3.json") {
            let inputs = &vector["inputs"];
            let signed_headers: Vec<String> = inputs["signed_headers"]
                .as_array()
                .expect("names")
                .iter()
                .map(|name| name.as_str().expect("a name").to_owned())
                .collect();
            let authorization = V3Authorization {
                algorithm: Algorithm::from_name(inputs["algorithm"].as_str().expect("algorithm"))
                    .expect("known"),
                credential: String::new(),
                signed_headers,
                signature: String::new(),
            };
            let signature = v3_sign(
                inputs["access_key_secret"].as_str().expect("secret"),
                &authorization,
                inputs["http_method"].as_str().expect("method"),
                &text_pairs(&inputs["query_decoded"]),
                &text_pairs(&inputs["signed_header_values"]),
                inputs["body"].as_str().expect("body").as_bytes(),
            );
            assert_eq!(signature, vector["signature"], "{}", vector["name"]);
        }
    }

    #[test]
    fn form_decoding_follows_the_spec() {
        assert_eq!(
            form_decode(b"a=x+y%2B&&flag&k=v=w"),
            Some(pairs(&[("a", "x y+"), ("flag", ""), ("k", "v=w")]))
        );
        assert_eq!(form_decode(b"a=%4"), None);
        assert_eq!(form_decode(b"a=%FF"), None);
        assert_eq!(form_decode(b"a=%+1"), None);
    }

    #[test]
    fn authorization_headers_render_and_parse_back() {
        let value = "ACS3-HMAC-SM3 Credential=id,SignedHeaders=host;x-acs-date,Signature=AB";
        let parsed = V3Authorization::parse(value).expect("valid");
        assert_eq!(parsed.algorithm, Algorithm::Sm3);
        assert_eq!(parsed.render(), value);
    }
}
