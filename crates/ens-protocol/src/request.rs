//! From raw request parts to a parsed [`Call`]: parameters decoded and merged, the action,
//! version and format read, and the signature material prepared for verification.
//!
//! Everything here is cheap and needs no secret, so malformed requests are refused before
//! any key lookup. Verification itself ([`Credentials::verify`]) only needs the secret.

use std::borrow::Cow;
use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::action::Action;
use crate::encoding::form_decode;
use crate::error::{ApiError, ErrorCode};
use crate::render::Format;
use crate::secret::AccessKeySecret;
use crate::sign::{v1, v3};

/// The only API version this service speaks.
pub const API_VERSION: &str = "2017-11-10";

/// The largest clock difference accepted between a request and the server, in seconds.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;

/// Parameters that belong to the protocol, not to any operation; a [`Call`]'s `params` never
/// holds them.
pub const COMMON_PARAMETERS: [&str; 12] = [
    "Action",
    "Version",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "SignatureType",
    "Timestamp",
    "Format",
    "RegionId",
    "SecurityToken",
];

/// One header as the transport received it: its name and its value, borrowed from the
/// transport's own copy (a value that is not UTF-8 is read lossily, and only then copied).
pub type Header<'a> = (&'a str, Cow<'a, str>);

/// Headers held as owned pairs (a client's, a test's), borrowed as [`Header`]s.
#[must_use]
pub fn borrowed_headers(headers: &[(String, String)]) -> Vec<Header<'_>> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), Cow::Borrowed(value.as_str())))
        .collect()
}

/// An HTTP request as the transport received it.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The raw query string after `?` (empty when absent).
    pub query: &'a str,
    /// Every header as (name, value); names in any case.
    pub headers: &'a [Header<'a>],
    /// The raw body.
    pub body: &'a [u8],
}

impl RawRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_ref())
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .nth(1)
            .is_some()
    }
}

/// A request refused while parsing, with the format its error should be rendered in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    /// What is wrong.
    pub error: ApiError,
    /// The caller's `Format` if it could be read, else JSON.
    pub format: Format,
}

/// How the caller signed, with everything verification needs but the secret.
#[derive(Debug, Clone)]
pub enum SignatureCheck {
    /// RPC signature V1 (HMAC-SHA1).
    V1 {
        /// The string the caller should have signed.
        string_to_sign: String,
        /// The base64 signature sent.
        provided: String,
    },
    /// ACS3 (HMAC-SHA256 or SM3).
    V3 {
        /// The algorithm named in `Authorization`.
        algorithm: v3::Algorithm,
        /// The string the caller should have signed.
        string_to_sign: String,
        /// The hex signature sent.
        provided: String,
        /// Whether `x-acs-content-sha256` matched the body.
        payload_matches: bool,
    },
}

/// The authentication part of a call.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The AccessKey ID the caller claims.
    pub access_key_id: String,
    /// The nonce, unique per request within the replay window.
    pub nonce: String,
    /// When the caller says it signed.
    pub timestamp: OffsetDateTime,
    /// The signature and what it should cover.
    pub check: SignatureCheck,
    /// Whether an STS security token came with the call (refused: this service issues none).
    pub has_security_token: bool,
}

impl Credentials {
    /// Checks the signature with the key's secret (constant-time comparison).
    ///
    /// # Errors
    /// `SignatureDoesNotMatch`; for V1 the message carries the server's string-to-sign,
    /// which the core SDK reads.
    pub fn verify(&self, secret: &AccessKeySecret) -> Result<(), ApiError> {
        match &self.check {
            SignatureCheck::V1 {
                string_to_sign,
                provided,
            } => {
                if v1::verify(secret, string_to_sign, provided) {
                    Ok(())
                } else {
                    Err(ApiError::v1_signature_mismatch(string_to_sign))
                }
            }
            SignatureCheck::V3 {
                algorithm,
                string_to_sign,
                provided,
                payload_matches,
            } => {
                if !payload_matches {
                    return Err(ApiError::with_message(
                        ErrorCode::SignatureDoesNotMatch,
                        "Specified signature does not match our calculation: x-acs-content-sha256 \
                         is not the digest of the request body.",
                    ));
                }
                if v3::verify(*algorithm, secret, string_to_sign, provided) {
                    Ok(())
                } else {
                    Err(ApiError::with_message(
                        ErrorCode::SignatureDoesNotMatch,
                        format!(
                            "Specified signature does not match our calculation. server StringToSign is [{}]",
                            string_to_sign.replace('\n', "\\n")
                        ),
                    ))
                }
            }
        }
    }

    /// Checks that the request time is within the accepted skew of `now`.
    ///
    /// # Errors
    /// `InvalidTimeStamp.Expired` outside the window.
    pub fn check_clock(&self, now: OffsetDateTime) -> Result<(), ApiError> {
        if (now - self.timestamp).whole_seconds().abs() > MAX_CLOCK_SKEW_SECONDS {
            Err(ApiError::new(ErrorCode::InvalidTimeStampExpired))
        } else {
            Ok(())
        }
    }
}

/// A parsed, not yet authenticated, API call.
#[derive(Debug, Clone)]
pub struct Call {
    /// The operation.
    pub action: Action,
    /// The body format for the answer.
    pub format: Format,
    /// Business parameters (query and form body merged, body winning; common ones removed).
    pub params: BTreeMap<String, String>,
    /// Who signed and how.
    pub credentials: Credentials,
}

fn fail(error: ApiError, format: Format) -> ParseFailure {
    ParseFailure { error, format }
}

/// Most encoded bytes one parameter location (query string or form body) may carry. Real
/// calls carry a few hundred; the bound is checked before anything is decoded, so a larger
/// location costs no more than reading it, and the work after it (sorting, signing, the
/// string-to-sign a V1 mismatch echoes) stays small whatever is sent.
pub const MAX_PARAMETER_BYTES: usize = 64 * 1024;
/// Most parameters one location may carry (no call takes more than a few dozen), checked
/// before any is decoded.
pub const MAX_PARAMETERS: usize = 128;

/// Decodes one parameter location, refusing a name that appears twice in it, and refusing
/// it whole, before decoding, when it is over [`MAX_PARAMETER_BYTES`] or [`MAX_PARAMETERS`].
fn decode_location(bytes: &[u8], location: &str) -> Result<Vec<(String, String)>, ApiError> {
    let too_large = |what: String| {
        ApiError::with_message(
            ErrorCode::InvalidParameter,
            format!("The {location} carries {what}."),
        )
    };
    if bytes.len() > MAX_PARAMETER_BYTES {
        return Err(too_large(format!("more than {MAX_PARAMETER_BYTES} bytes")));
    }
    let count = bytes
        .split(|&byte| byte == b'&')
        .filter(|segment| !segment.is_empty())
        .count();
    if count > MAX_PARAMETERS {
        return Err(too_large(format!("more than {MAX_PARAMETERS} parameters")));
    }
    let pairs = form_decode(bytes).map_err(|error| {
        ApiError::with_message(
            ErrorCode::InvalidParameter,
            format!("The {location} is not valid form encoding: {error}."),
        )
    })?;
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    for (name, _) in &pairs {
        if !seen.insert(name.as_str()) {
            return Err(ApiError::with_message(
                ErrorCode::InvalidParameter,
                format!("The parameter {name} is given more than once in the {location}."),
            ));
        }
    }
    Ok(pairs)
}

/// Parses `YYYY-MM-DDThh:mm:ssZ` (and, harmlessly, any RFC 3339 time).
fn parse_timestamp(value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| ApiError::new(ErrorCode::InvalidTimeStampFormat))
}

fn required<'a>(params: &'a BTreeMap<String, String>, name: &'static str) -> Result<&'a str, ApiError> {
    match params.get(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(ApiError::missing_common(name)),
    }
}

fn required_header<'a>(raw: &'a RawRequest<'_>, name: &str) -> Result<&'a str, ApiError> {
    match raw.header(name) {
        Some(value) if !value.trim().is_empty() => Ok(value.trim()),
        _ => Err(ApiError::with_message(
            ErrorCode::IncompleteSignature,
            format!("The request signature does not conform to Aliyun standards: header {name} is required."),
        )),
    }
}

/// Parses a raw request into a call, refusing anything malformed before any key lookup.
///
/// # Errors
/// The wire error for the first problem found, with the format to render it in.
pub fn parse_call(raw: &RawRequest<'_>) -> Result<Call, ParseFailure> {
    let json = Format::Json;
    if raw.method != "GET" && raw.method != "POST" {
        return Err(fail(ApiError::new(ErrorCode::UnsupportedHttpMethod), json));
    }
    if raw.path != "/" && !raw.path.is_empty() {
        return Err(fail(ApiError::new(ErrorCode::InvalidApiNotFound), json));
    }
    let query = decode_location(raw.query.as_bytes(), "query string").map_err(|e| fail(e, json))?;
    let is_form = raw.header("content-type").is_some_and(|value| {
        value
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    let body = if is_form {
        decode_location(raw.body, "form body").map_err(|e| fail(e, json))?
    } else {
        Vec::new()
    };
    let mut params: BTreeMap<String, String> = query.iter().cloned().collect();
    params.extend(body);

    let format = match params.get("Format") {
        None => Format::Json,
        Some(value) => {
            Format::parse(value).ok_or_else(|| fail(ApiError::new(ErrorCode::InvalidFormat), json))?
        }
    };
    let fail_here = |error: ApiError| fail(error, format);

    let is_v3 = raw
        .header("authorization")
        .is_some_and(|value| value.trim_start().starts_with("ACS3-"));
    let (action_name, version) = if is_v3 {
        if let Some(name) = V3_SINGLE_HEADERS.into_iter().find(|name| raw.is_repeated(name)) {
            return Err(fail_here(incomplete(&format!(
                "header {name} is given more than once"
            ))));
        }
        (raw.header("x-acs-action"), raw.header("x-acs-version"))
    } else if params.contains_key("Signature") {
        (
            params.get("Action").map(String::as_str),
            params.get("Version").map(String::as_str),
        )
    } else {
        return Err(fail_here(ApiError::missing_common("Signature")));
    };
    let action_name = action_name
        .filter(|name| !name.is_empty())
        .ok_or_else(|| fail_here(ApiError::missing_common("Action")))?;
    let version = version
        .filter(|version| !version.is_empty())
        .ok_or_else(|| fail_here(ApiError::missing_common("Version")))?;
    if version != API_VERSION {
        return Err(fail_here(ApiError::new(ErrorCode::InvalidVersion)));
    }
    let action = Action::parse(action_name)
        .ok_or_else(|| fail_here(ApiError::new(ErrorCode::InvalidActionNotFound)))?;

    let mut credentials = if is_v3 {
        v3_credentials(raw, &query).map_err(fail_here)?
    } else {
        v1_credentials(raw, &params).map_err(fail_here)?
    };
    credentials.has_security_token =
        params.contains_key("SecurityToken") || raw.header("x-acs-security-token").is_some();
    for name in COMMON_PARAMETERS {
        params.remove(name);
    }
    Ok(Call {
        action,
        format,
        params,
        credentials,
    })
}

fn v1_credentials(raw: &RawRequest<'_>, params: &BTreeMap<String, String>) -> Result<Credentials, ApiError> {
    let provided = required(params, "Signature")?.to_owned();
    let access_key_id = required(params, "AccessKeyId")?.to_owned();
    if required(params, "SignatureMethod")? != "HMAC-SHA1" {
        return Err(ApiError::new(ErrorCode::InvalidSignatureMethod));
    }
    if required(params, "SignatureVersion")? != "1.0" {
        return Err(ApiError::new(ErrorCode::InvalidSignatureVersion));
    }
    let nonce = required(params, "SignatureNonce")?.to_owned();
    let timestamp = parse_timestamp(required(params, "Timestamp")?)?;
    let mut signed = params.clone();
    signed.remove("Signature");
    Ok(Credentials {
        access_key_id,
        nonce,
        timestamp,
        check: SignatureCheck::V1 {
            string_to_sign: v1::string_to_sign(raw.method, &signed),
            provided,
        },
        has_security_token: false,
    })
}

/// Headers that must be signed whenever a V3 request carries them.
const V3_ALWAYS_SIGNED: [&str; 6] = [
    "host",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
];

/// Headers a V3 call takes one value of, so a V3 request carrying one of them twice is refused.
/// The signature covers all the values of a repeated header, sorted, so it does not fix which
/// one comes first: with two nonces (or dates, or actions) an attacker could reorder a signed
/// request to make the server act on the other one.
pub const V3_SINGLE_HEADERS: [&str; 9] = [
    "authorization",
    "x-acs-action",
    "x-acs-version",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-content-sha256",
    "x-acs-accesskey-id",
    "x-acs-security-token",
    "content-type",
];

fn incomplete(detail: &str) -> ApiError {
    ApiError::with_message(
        ErrorCode::IncompleteSignature,
        format!("The request signature does not conform to Aliyun standards: {detail}."),
    )
}

fn v3_credentials(raw: &RawRequest<'_>, query: &[(String, String)]) -> Result<Credentials, ApiError> {
    let header = raw.header("authorization").unwrap_or_default();
    let authorization = v3::parse_authorization(header).map_err(|error| match error {
        v3::AuthorizationError::UnsupportedAlgorithm(name) if name != "ACS3-RSA-SHA256" => {
            ApiError::new(ErrorCode::InvalidSignatureMethod)
        }
        other => incomplete(&format!("malformed Authorization header ({other})")),
    })?;
    for name in V3_ALWAYS_SIGNED {
        if !authorization.signed_headers.iter().any(|signed| signed == name) {
            return Err(incomplete(&format!("header {name} must be signed")));
        }
    }
    for name in ["x-acs-security-token", "content-type"] {
        if raw.header(name).is_some() && !authorization.signed_headers.iter().any(|signed| signed == name) {
            return Err(incomplete(&format!("header {name} must be signed")));
        }
    }
    if let Some(claimed) = raw.header("x-acs-accesskey-id") {
        if claimed.trim() != authorization.access_key_id {
            return Err(incomplete(
                "x-acs-accesskey-id differs from the Authorization credential",
            ));
        }
    }
    let nonce = required_header(raw, "x-acs-signature-nonce")?.to_owned();
    let timestamp = parse_timestamp(required_header(raw, "x-acs-date")?)?;
    let content_hash = required_header(raw, "x-acs-content-sha256")?;
    let hashed_payload = v3::hash_hex(authorization.algorithm, raw.body);
    let canonical_headers = v3::canonical_headers(&authorization.signed_headers, raw.headers)
        .map_err(|name| incomplete(&format!("signed header {name} is absent")))?;
    let canonical_request = v3::canonical_request(
        raw.method,
        "/",
        &v3::canonical_query(query),
        &canonical_headers,
        &authorization.signed_headers,
        &hashed_payload,
    );
    Ok(Credentials {
        access_key_id: authorization.access_key_id.clone(),
        nonce,
        timestamp,
        check: SignatureCheck::V3 {
            algorithm: authorization.algorithm,
            string_to_sign: v3::string_to_sign(authorization.algorithm, &canonical_request),
            payload_matches: content_hash.eq_ignore_ascii_case(&hashed_payload),
            provided: authorization.signature,
        },
        has_security_token: false,
    })
}
