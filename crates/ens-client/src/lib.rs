//! An async client for the ENS RPC API (2017-11-10), for benchmarks, tools and tests.
//!
//! It reuses `ens-protocol` for everything on the wire — encoding, V1/V3 signing, the API
//! version — so it cannot drift from what the server verifies. Requests go over HTTP/1.1 with
//! a pooled keep-alive connection per concurrent caller (hyper-util's legacy client).

mod sign;

use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use time::OffsetDateTime;

pub use ens_protocol::AccessKeySecret;
pub use sign::{SignatureVersion, SignedRequest, Signer};

/// Longest slice of a non-JSON error body kept in [`ApiFailure::message`].
const MAX_RAW_MESSAGE: usize = 512;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The endpoint is not an `http://host[:port]` URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The caller set a common parameter the client writes itself (e.g. `Timestamp`).
    #[error("parameter {0} is set by the client and cannot be passed")]
    ReservedParameter(String),
    /// The same parameter name was given twice; the server would refuse the request.
    #[error("parameter {0} is given more than once")]
    DuplicateParameter(String),
    /// A path for [`Client::send_to`] or [`Client::get`] that is not an absolute path.
    #[error("invalid path {0:?}: expected /path[?query]")]
    InvalidPath(String),
    /// The clock value could not be written as a timestamp (a year beyond 9999).
    #[error("cannot format the request timestamp: {0}")]
    Timestamp(#[source] time::error::Format),
    /// A header to sign was absent; a bug in the client, reported rather than panicking.
    #[error("signed header {0} is absent from the request")]
    UnsignableHeader(String),
    /// A header value (e.g. an AccessKey ID with control characters) cannot go on the wire.
    #[error("cannot build the HTTP request: {0}")]
    Request(#[from] http::Error),
    /// Connecting, sending or receiving the response head failed.
    #[error("transport error: {0}")]
    Transport(#[from] hyper_util::client::legacy::Error),
    /// The connection failed while the response body was being read.
    #[error("error reading the response body: {0}")]
    Body(#[from] hyper::Error),
    /// The service answered with an error (any non-2xx status).
    #[error("{0}")]
    Api(ApiFailure),
    /// A 2xx answer whose body is not JSON.
    #[error("HTTP {status}: the response body is not JSON: {source}")]
    Decode {
        /// The HTTP status.
        status: u16,
        /// The parse failure.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status when the service answered, so callers can tell 4xx from 5xx.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(failure) => Some(failure.status),
            Self::Decode { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The cloud error `Code` (e.g. `InvalidParameter.PageSize`) when the service sent one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api(failure) if !failure.code.is_empty() => Some(&failure.code),
            _ => None,
        }
    }
}

/// An error answer of the service, as its envelope describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// The HTTP status.
    pub status: u16,
    /// The `Code` field; empty when the body was not an error envelope.
    pub code: String,
    /// The `Message` field, or the start of the raw body when it was not JSON.
    pub message: String,
    /// The `RequestId` field (or `x-acs-request-id` header); empty when neither was sent.
    pub request_id: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} {}: {} (RequestId {})",
            self.status, self.code, self.message, self.request_id
        )
    }
}

impl ApiFailure {
    /// Reads the cloud's error envelope; a body that is not one still yields a usable error.
    #[must_use]
    pub fn from_response(status: u16, request_id_header: Option<&str>, body: &[u8]) -> Self {
        let field = |json: &serde_json::Value, name: &str| {
            json.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let (code, message, request_id) = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => (
                field(&json, "Code"),
                field(&json, "Message"),
                field(&json, "RequestId"),
            ),
            Err(_) => (None, None, None),
        };
        let message = message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            text.chars().take(MAX_RAW_MESSAGE).collect()
        });
        Self {
            status,
            code: code.unwrap_or_default(),
            message,
            request_id: request_id
                .or_else(|| request_id_header.map(str::to_owned))
                .unwrap_or_default(),
        }
    }
}

/// A response as received, before any interpretation of the body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The `x-acs-request-id` header, when present.
    pub request_id: Option<String>,
    /// The whole body.
    pub body: Bytes,
}

impl RawResponse {
    /// Whether the status is 2xx.
    #[must_use]
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A client for one endpoint and one AccessKey. Cheap to clone (clones share the pool);
/// concurrent calls on one client open as many keep-alive connections as are in flight.
#[derive(Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    scheme: Scheme,
    authority: Authority,
    signer: Signer,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &format_args!("{}://{}", self.scheme, self.authority))
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `endpoint` is `http://host:port` (a trailing `/` is accepted). HTTPS is not supported.
    ///
    /// # Errors
    /// [`ClientError::InvalidEndpoint`] when the endpoint is not such a URL.
    pub fn new(
        endpoint: &str,
        access_key_id: impl Into<String>,
        secret: AccessKeySecret,
        version: SignatureVersion,
    ) -> Result<Self, ClientError> {
        let invalid = |reason| ClientError::InvalidEndpoint {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let uri: Uri = endpoint
            .parse()
            .map_err(|_| invalid("not a URL (expected http://host:port)"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| invalid("no scheme"))?;
        if scheme != Scheme::HTTP {
            return Err(invalid("only http:// is supported"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| invalid("no host"))?;
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err(invalid("the API lives at the root: give no path or query"));
        }
        let mut connector = HttpConnector::new();
        // Requests are small and latency-bound: do not let Nagle hold them back.
        connector.set_nodelay(true);
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .build(connector);
        let signer = Signer::new(authority.as_str(), access_key_id, secret, version);
        Ok(Self {
            http,
            scheme,
            authority,
            signer,
        })
    }

    /// The signer, for callers that need to build requests without sending them.
    #[must_use]
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Calls `action` and returns the JSON body of a successful answer.
    ///
    /// # Errors
    /// [`ClientError::Api`] for an error answer (status, Code, Message, RequestId), a
    /// transport error, or a request the client refuses to build.
    pub async fn call(
        &self,
        action: &str,
        params: &[(String, String)],
    ) -> Result<serde_json::Value, ClientError> {
        let response = self.send(action, params).await?;
        if !response.is_success() {
            return Err(ClientError::Api(ApiFailure::from_response(
                response.status,
                response.request_id.as_deref(),
                &response.body,
            )));
        }
        serde_json::from_slice(&response.body).map_err(|source| ClientError::Decode {
            status: response.status,
            source,
        })
    }

    /// Signs (fresh nonce, current time) and sends one call; any status is returned as is.
    /// Benchmarks use this to skip JSON decoding.
    ///
    /// # Errors
    /// A request the client refuses to build, or a transport error.
    pub async fn send(&self, action: &str, params: &[(String, String)]) -> Result<RawResponse, ClientError> {
        self.send_to("/", action, params).await
    }

    /// Like [`Client::send`], but to `path` (`/path[?query]`) instead of the API root; the
    /// signed parameters are appended to the path's own query. The signature still covers
    /// `/`, so only routes that ignore it accept such a request: the benchmark ceiling sends
    /// the very request the API gets to a route that skips all of the API's work.
    ///
    /// # Errors
    /// [`ClientError::InvalidPath`], a request the client refuses to build, or a transport
    /// error.
    pub async fn send_to(
        &self,
        path: &str,
        action: &str,
        params: &[(String, String)],
    ) -> Result<RawResponse, ClientError> {
        let nonce = uuid::Uuid::new_v4().to_string();
        let signed = self
            .signer
            .sign(action, params, OffsetDateTime::now_utc(), &nonce)?;
        self.send_signed_to(path, &signed).await
    }

    /// Sends an already signed request (e.g. to replay one on purpose).
    ///
    /// # Errors
    /// A header that cannot go on the wire, or a transport error.
    pub async fn send_signed(&self, signed: &SignedRequest) -> Result<RawResponse, ClientError> {
        self.send_signed_to("/", signed).await
    }

    /// Sends an already signed request to `path` (see [`Client::send_to`]).
    ///
    /// # Errors
    /// [`ClientError::InvalidPath`], a header that cannot go on the wire, or a transport
    /// error.
    pub async fn send_signed_to(
        &self,
        path: &str,
        signed: &SignedRequest,
    ) -> Result<RawResponse, ClientError> {
        check_path(path)?;
        let separator = if path.contains('?') { '&' } else { '?' };
        let uri = if signed.query.is_empty() {
            format!("{}://{}{path}", self.scheme, self.authority)
        } else {
            format!(
                "{}://{}{path}{separator}{}",
                self.scheme, self.authority, signed.query
            )
        };
        let mut builder = Request::builder().method(SignedRequest::METHOD).uri(uri);
        for (name, value) in &signed.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        self.execute(builder.body(Full::new(Bytes::new()))?).await
    }

    /// An unsigned `GET path`, for the service's probes (`/healthz`, `/readyz`) that tools
    /// poll to know when a server they started can take calls.
    ///
    /// # Errors
    /// [`ClientError::InvalidPath`] or a transport error.
    pub async fn get(&self, path: &str) -> Result<RawResponse, ClientError> {
        check_path(path)?;
        let request = Request::builder()
            .method("GET")
            .uri(format!("{}://{}{path}", self.scheme, self.authority))
            .header("host", self.authority.as_str())
            .body(Full::new(Bytes::new()))?;
        self.execute(request).await
    }

    async fn execute(&self, request: Request<Full<Bytes>>) -> Result<RawResponse, ClientError> {
        let response = self.http.request(request).await?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-acs-request-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        // Reading the body to its end is what hands the connection back to the pool.
        let body = response.into_body().collect().await?.to_bytes();
        Ok(RawResponse {
            status,
            request_id,
            body,
        })
    }
}

/// An absolute path with an optional query and nothing else (no fragment, no authority).
fn check_path(path: &str) -> Result<(), ClientError> {
    let valid = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('#')
        && path.parse::<http::uri::PathAndQuery>().is_ok();
    if valid {
        Ok(())
    } else {
        Err(ClientError::InvalidPath(path.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(endpoint: &str) -> Result<Client, ClientError> {
        Client::new(
            endpoint,
            "id",
            AccessKeySecret::new("secret".to_owned()),
            SignatureVersion::V3,
        )
    }

    #[test]
    fn endpoints_must_be_plain_http_urls_at_the_root() {
        for good in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://localhost",
        ] {
            assert!(client(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:8080",
            "https://127.0.0.1:8443",
            "http://127.0.0.1:8080/api",
            "http://127.0.0.1:8080/?a=b",
            "not a url",
            "",
        ] {
            assert!(
                matches!(client(bad), Err(ClientError::InvalidEndpoint { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_signer_signs_the_host_and_port_as_given() {
        let client = client("http://127.0.0.1:8080").unwrap();
        let signed = client
            .signer()
            .sign("DescribeImages", &[], OffsetDateTime::now_utc(), "n")
            .unwrap();
        assert!(signed
            .headers
            .contains(&("host".to_owned(), "127.0.0.1:8080".to_owned())));
    }

    #[test]
    fn only_absolute_paths_are_accepted() {
        for good in ["/", "/bench/ceiling", "/bench/ceiling?Bytes=10", "/readyz"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "bench", "//evil.example/x", "/a#b", "/a b", "http://x/"] {
            assert!(
                matches!(check_path(bad), Err(ClientError::InvalidPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn error_envelopes_are_read_into_their_fields() {
        let body = br#"{"RequestId":"R-1","HostId":"ens.aliyuncs.com","Code":"InvalidParameter.PageSize","Message":"bad size"}"#;
        let failure = ApiFailure::from_response(400, Some("R-header"), body);
        assert_eq!(
            failure,
            ApiFailure {
                status: 400,
                code: "InvalidParameter.PageSize".into(),
                message: "bad size".into(),
                request_id: "R-1".into(),
            }
        );
        let error = ClientError::Api(failure);
        assert_eq!(error.status(), Some(400));
        assert_eq!(error.code(), Some("InvalidParameter.PageSize"));
        assert!(error.to_string().contains("R-1"));
    }

    #[test]
    fn a_body_that_is_not_an_envelope_still_gives_status_text_and_header_request_id() {
        let failure = ApiFailure::from_response(502, Some("R-h"), b"<html>bad gateway</html>");
        assert_eq!(failure.status, 502);
        assert_eq!(failure.code, "");
        assert_eq!(failure.message, "<html>bad gateway</html>");
        assert_eq!(failure.request_id, "R-h");
        assert_eq!(ClientError::Api(failure).code(), None);
    }
}
