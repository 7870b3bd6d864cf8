//! Building signed requests, without I/O or a clock of its own.
//!
//! Everything wire-related comes from `ens-protocol` (the encoder, both signature versions, the
//! API version), so a request built here is signed exactly as the server verifies it. Keeping
//! this pure (time and nonce passed in) lets tests feed the result straight into the server's
//! parser.

use std::collections::{BTreeMap, HashSet};

use ens_protocol::encoding::form_encode;
use ens_protocol::request::API_VERSION;
use ens_protocol::sign::{v1, v3};
use ens_protocol::AccessKeySecret;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

use crate::ClientError;

/// `YYYY-MM-DDThh:mm:ssZ`, the only timestamp spelling both signature versions document.
const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

/// The V3 algorithm this client signs with (the SDK default).
const V3_ALGORITHM: v3::Algorithm = v3::Algorithm::HmacSha256;

/// Common parameters the client fills in itself; letting callers set them would produce a
/// request whose signature covers something other than what the caller meant.
const RESERVED: [&str; 9] = [
    "Action",
    "Version",
    "Format",
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureVersion",
    "SignatureNonce",
    "Timestamp",
];

/// Which of the two signature schemes the official SDKs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignatureVersion {
    /// ACS3-HMAC-SHA256 in the `Authorization` header: the Tea SDK default.
    #[default]
    V3,
    /// Classic RPC HMAC-SHA1 in the query: the core SDK and Tea's `signature_algorithm='v2'`.
    V1,
}

/// A request ready for the wire: always `POST /` with an empty body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The query string, without `?` (business parameters for V3; everything for V1).
    pub query: String,
    /// Every header the request must carry, `host` included, names in lower case.
    pub headers: Vec<(String, String)>,
}

impl SignedRequest {
    /// The HTTP method; RPC calls are POSTed like the SDKs do.
    pub const METHOD: &'static str = "POST";
}

/// Signs requests for one AccessKey towards one host.
#[derive(Debug, Clone)]
pub struct Signer {
    access_key_id: String,
    secret: AccessKeySecret,
    version: SignatureVersion,
    host: String,
}

impl Signer {
    /// `host` is the `Host` header value (`host:port`), which V3 signs.
    #[must_use]
    pub fn new(
        host: impl Into<String>,
        access_key_id: impl Into<String>,
        secret: AccessKeySecret,
        version: SignatureVersion,
    ) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret,
            version,
            host: host.into(),
        }
    }

    /// The scheme this signer uses.
    #[must_use]
    pub fn version(&self) -> SignatureVersion {
        self.version
    }

    /// Builds and signs one call made at `now` with `nonce`, which must be unique per request
    /// (the server refuses a nonce it saw in the last 30 minutes).
    ///
    /// # Errors
    /// [`ClientError::ReservedParameter`] / [`ClientError::DuplicateParameter`] for parameters
    /// the wire cannot carry as given; [`ClientError::Timestamp`] if `now` cannot be written.
    pub fn sign(
        &self,
        action: &str,
        params: &[(String, String)],
        now: OffsetDateTime,
        nonce: &str,
    ) -> Result<SignedRequest, ClientError> {
        check_params(params)?;
        let timestamp = now
            .to_offset(UtcOffset::UTC)
            .format(TIMESTAMP)
            .map_err(ClientError::Timestamp)?;
        match self.version {
            SignatureVersion::V3 => self.sign_v3(action, params, &timestamp, nonce),
            SignatureVersion::V1 => Ok(self.sign_v1(action, params, &timestamp, nonce)),
        }
    }

    fn sign_v3(
        &self,
        action: &str,
        params: &[(String, String)],
        timestamp: &str,
        nonce: &str,
    ) -> Result<SignedRequest, ClientError> {
        let payload_hash = v3::hash_hex(V3_ALGORITHM, b"");
        // Sorted by name: the order the SDK lists them in SignedHeaders.
        let headers: Vec<(String, String)> = [
            ("host", self.host.as_str()),
            ("x-acs-action", action),
            ("x-acs-content-sha256", payload_hash.as_str()),
            ("x-acs-date", timestamp),
            ("x-acs-signature-nonce", nonce),
            ("x-acs-version", API_VERSION),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let signed_names: Vec<String> = headers.iter().map(|(name, _)| name.clone()).collect();
        let canonical_headers =
            v3::canonical_headers(&signed_names, &headers).map_err(ClientError::UnsignableHeader)?;
        let canonical_request = v3::canonical_request(
            SignedRequest::METHOD,
            "/",
            &v3::canonical_query(params),
            &canonical_headers,
            &signed_names,
            &payload_hash,
        );
        let string_to_sign = v3::string_to_sign(V3_ALGORITHM, &canonical_request);
        let signature = v3::sign(V3_ALGORITHM, &self.secret, &string_to_sign);
        let authorization = format!(
            "{} Credential={},SignedHeaders={},Signature={signature}",
            V3_ALGORITHM.as_str(),
            self.access_key_id,
            signed_names.join(";"),
        );
        let mut headers = headers;
        headers.push(("authorization".to_owned(), authorization));
        Ok(SignedRequest {
            query: form_encode(params),
            headers,
        })
    }

    fn sign_v1(
        &self,
        action: &str,
        params: &[(String, String)],
        timestamp: &str,
        nonce: &str,
    ) -> SignedRequest {
        let mut signed: BTreeMap<String, String> = params.iter().cloned().collect();
        for (name, value) in [
            ("Action", action),
            ("Version", API_VERSION),
            ("Format", "JSON"),
            ("AccessKeyId", self.access_key_id.as_str()),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", timestamp),
        ] {
            signed.insert(name.to_owned(), value.to_owned());
        }
        let signature = v1::sign(&self.secret, &v1::string_to_sign(SignedRequest::METHOD, &signed));
        let mut pairs: Vec<(String, String)> = signed.into_iter().collect();
        pairs.push(("Signature".to_owned(), signature));
        SignedRequest {
            query: form_encode(&pairs),
            headers: vec![("host".to_owned(), self.host.clone())],
        }
    }
}

fn check_params(params: &[(String, String)]) -> Result<(), ClientError> {
    let mut seen = HashSet::with_capacity(params.len());
    for (name, _) in params {
        if RESERVED.contains(&name.as_str()) {
            return Err(ClientError::ReservedParameter(name.clone()));
        }
        if !seen.insert(name.as_str()) {
            return Err(ClientError::DuplicateParameter(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ens_protocol::request::{parse_call, RawRequest};
    use ens_protocol::Action;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 08:09:10 UTC);

    fn secret() -> AccessKeySecret {
        AccessKeySecret::new("s3cr3t/with+odd=chars&".to_owned())
    }

    fn signer(version: SignatureVersion) -> Signer {
        Signer::new("127.0.0.1:8080", "LTAI-test.key_1", secret(), version)
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Values that stress every encoding path: spaces, '+', reserved and unreserved
    /// punctuation, '%', multi-byte UTF-8, an empty value.
    fn tricky_params() -> Vec<(String, String)> {
        owned(&[
            ("ImageName", "a b+c*d~e_f.g-h"),
            ("EnsRegionId", "cn-dalian-unicom"),
            ("PageSize", "10"),
            ("Weird", "%20&=?/#;:,'\"!@$^()[]{}|\\<>`"),
            ("Unicode", "镜像 ünïcödé 🚀"),
            ("Empty", ""),
            ("Name With Space", "x"),
        ])
    }

    fn parse(request: &SignedRequest) -> ens_protocol::Call {
        let raw = RawRequest {
            method: SignedRequest::METHOD,
            path: "/",
            query: &request.query,
            headers: &ens_protocol::borrowed_headers(&request.headers),
            body: b"",
        };
        parse_call(&raw).unwrap()
    }

    fn assert_round_trip(version: SignatureVersion) {
        let params = tricky_params();
        let request = signer(version)
            .sign("DescribeImages", &params, NOW, "nonce-3f1c")
            .unwrap();
        let call = parse(&request);
        assert_eq!(call.action, Action::parse("DescribeImages").unwrap());
        let expected: BTreeMap<String, String> = params.into_iter().collect();
        assert_eq!(call.params, expected);
        assert_eq!(call.credentials.access_key_id, "LTAI-test.key_1");
        assert_eq!(call.credentials.nonce, "nonce-3f1c");
        assert_eq!(call.credentials.timestamp, NOW);
        call.credentials.verify(&secret()).unwrap();
        call.credentials.check_clock(NOW).unwrap();
        let wrong = AccessKeySecret::new("s3cr3t/with+odd=chars".to_owned());
        assert!(call.credentials.verify(&wrong).is_err());
    }

    #[test]
    fn v3_requests_verify_through_the_server_parser() {
        assert_round_trip(SignatureVersion::V3);
    }

    #[test]
    fn v1_requests_verify_through_the_server_parser() {
        assert_round_trip(SignatureVersion::V1);
    }

    #[test]
    fn a_request_without_business_parameters_verifies_in_both_versions() {
        for version in [SignatureVersion::V3, SignatureVersion::V1] {
            let request = signer(version).sign("DescribeImages", &[], NOW, "n").unwrap();
            let call = parse(&request);
            assert!(call.params.is_empty(), "{version:?}");
            call.credentials.verify(&secret()).unwrap();
        }
    }

    #[test]
    fn a_value_changed_on_the_wire_no_longer_verifies() {
        for version in [SignatureVersion::V3, SignatureVersion::V1] {
            let params = owned(&[("ImageName", "ubuntu_22")]);
            let mut request = signer(version).sign("DescribeImages", &params, NOW, "n").unwrap();
            request.query = request.query.replace("ubuntu_22", "ubuntu_24");
            let call = parse(&request);
            assert!(call.credentials.verify(&secret()).is_err(), "{version:?}");
        }
    }

    #[test]
    fn v3_signs_the_documented_headers_with_sha256() {
        let request = signer(SignatureVersion::V3)
            .sign("DescribeImages", &[], NOW, "n")
            .unwrap();
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .unwrap()
        };
        assert_eq!(header("host"), "127.0.0.1:8080");
        assert_eq!(header("x-acs-version"), "2017-11-10");
        assert_eq!(header("x-acs-date"), "2026-03-01T08:09:10Z");
        assert_eq!(
            header("x-acs-content-sha256"),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let authorization = header("authorization");
        assert!(authorization.starts_with(
            "ACS3-HMAC-SHA256 Credential=LTAI-test.key_1,SignedHeaders=host;x-acs-action;\
             x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature="
        ));
        assert!(request.query.is_empty());
    }

    #[test]
    fn v1_puts_the_common_parameters_in_the_query() {
        let request = signer(SignatureVersion::V1)
            .sign("DescribeImages", &owned(&[("PageSize", "5")]), NOW, "n")
            .unwrap();
        for part in [
            "Action=DescribeImages",
            "Version=2017-11-10",
            "Format=JSON",
            "SignatureMethod=HMAC-SHA1",
            "SignatureVersion=1.0",
            "Timestamp=2026-03-01T08%3A09%3A10Z",
            "PageSize=5",
            "Signature=",
        ] {
            assert!(
                request.query.contains(part),
                "{part} missing from {}",
                request.query
            );
        }
    }

    #[test]
    fn a_local_time_is_signed_as_utc() {
        let local = NOW.to_offset(UtcOffset::from_hms(8, 0, 0).unwrap());
        let request = signer(SignatureVersion::V3)
            .sign("DescribeImages", &[], local, "n")
            .unwrap();
        assert_eq!(parse(&request).credentials.timestamp, NOW);
    }

    #[test]
    fn reserved_and_repeated_parameters_are_refused() {
        let signer = signer(SignatureVersion::V1);
        let error = signer
            .sign("DescribeImages", &owned(&[("Timestamp", "x")]), NOW, "n")
            .unwrap_err();
        assert!(matches!(error, ClientError::ReservedParameter(name) if name == "Timestamp"));
        let error = signer
            .sign("DescribeImages", &owned(&[("A", "1"), ("A", "2")]), NOW, "n")
            .unwrap_err();
        assert!(matches!(error, ClientError::DuplicateParameter(name) if name == "A"));
    }
}
