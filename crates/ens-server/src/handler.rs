//! The one HTTP handler: every path and method goes through the same pipeline, so even a
//! wrong path or method gets a well-formed cloud error.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use ens_domain::AccessKeyId;
use ens_policy::ALL_RESOURCES;
use ens_protocol::render::render_error;
use ens_protocol::{parse_call, Action, ApiError, ErrorCode, Format, Header, RawRequest};
use ens_store::AuditEntry;
use http_body_util::BodyExt;
use time::OffsetDateTime;
use tracing::Instrument;

use crate::auth::{claim_nonce, verify, Caller};
use crate::authz::{authorize, Context};
use crate::error::ServerError;
use crate::operation::Operation;
use crate::ops::dispatch;
use crate::AppState;

/// The service's router: the API on `/` (and, for well-formed errors, on every other path),
/// plus the probes load balancers read, and the metrics Prometheus reads unless they have a
/// listener of their own.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if !state.metrics_apart {
        router = router.route("/metrics", get(metrics));
    }
    if state.config.bench_ceiling {
        router = router.route("/bench/ceiling", any(ceiling));
    }
    router.fallback(handle).with_state(state)
}

/// Largest body `/bench/ceiling` sends.
const CEILING_MAX_BYTES: usize = 1024 * 1024;

/// The benchmark ceiling: what this server's HTTP stack costs with no parsing, signature,
/// store or rendering, answering a fixed body of `Bytes` bytes (the size of the API answer
/// being compared). The body is built once and shared, so the route allocates nothing.
async fn ceiling(request: Request) -> Response {
    static FILLER: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let filler = FILLER.get_or_init(|| bytes::Bytes::from(vec![b' '; CEILING_MAX_BYTES]));
    let wanted = request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("Bytes="))
        .map_or(Some(4096), |text| text.parse::<usize>().ok());
    match wanted {
        Some(length) if (1..=CEILING_MAX_BYTES).contains(&length) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            filler.slice(..length),
        )
            .into_response(),
        _ => (
            StatusCode::BAD_REQUEST,
            format!("Bytes must be from 1 to {CEILING_MAX_BYTES}"),
        )
            .into_response(),
    }
}

/// The process is alive and serving.
async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// The store answers (which also means its migrations ran).
async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.has_catalog().await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ready"}"#,
        )
            .into_response(),
        Err(error) => {
            tracing::warn!(%error, "not ready: store unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"store unavailable"}"#,
            )
                .into_response()
        }
    }
}

/// Prometheus text exposition.
/// The metrics listener's router: `/metrics` and the probes, nothing of the API.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.metrics.render(state.store.pool_stats());
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A request ID in the cloud's shape, an upper-case UUID, written on the stack: a request
/// costs no allocation for it, and no system call (the bytes come from the thread's
/// generator, which the system reseeds only now and then).
struct RequestId([u8; uuid::fmt::Hyphenated::LENGTH]);

impl RequestId {
    fn new() -> Self {
        let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
        uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .hyphenated()
            .encode_upper(&mut text);
        Self(text)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// How one request ended, for the response and the log.
struct Outcome {
    format: Format,
    result: Result<String, ApiError>,
    action: Option<Action>,
    retry_after: Option<Duration>,
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = RequestId::new();
    let request_id = request_id.as_str();
    let (parts, body) = request.into_parts();
    // Every log line written while answering carries the RequestId.
    let span = tracing::info_span!("request", request_id = %request_id);
    let outcome = ens_store::as_one_request(run(&state, &parts, body, request_id))
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    let (status, text, code) = match outcome.result {
        Ok(text) => (StatusCode::OK, text, None),
        Err(error) => {
            let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let text = render_error(&error, request_id, &state.config.host_id, outcome.format);
            (status, text, Some(error.code.wire_code()))
        }
    };
    let action = outcome.action.map_or("-", Action::as_str);
    state
        .metrics
        .observe(action, code.as_deref().unwrap_or("Success"), started.elapsed());
    tracing::info!(
        action,
        status = status.as_u16(),
        code = code.as_deref().unwrap_or("-"),
        elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(outcome.format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-acs-request-id", value);
    }
    if let Some(wait) = outcome.retry_after {
        // Tea raises its ThrottlingException when this header carries a positive number of ms.
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        headers.insert("x-acs-retry-after", HeaderValue::from(millis));
    }
    response
}

async fn run(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: HttpBody,
    request_id: &str,
) -> Outcome {
    let started = Instant::now();
    let headers: Vec<Header<'_>> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let mut raw = RawRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body: &[],
    };
    let body = match http_body_util::Limited::new(body, state.config.body_limit)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let error = ApiError::with_message(
                ErrorCode::InvalidParameter,
                format!(
                    "The request body is unreadable or larger than {} bytes.",
                    state.config.body_limit
                ),
            );
            return refused(state, &raw, error, Format::Json, request_id, started);
        }
    };
    raw.body = &body[..];
    let call = match parse_call(&raw) {
        Ok(call) => call,
        Err(failure) => return refused(state, &raw, failure.error, failure.format, request_id, started),
    };
    // Read once, here; an invalid one is answered in dispatch, after authentication and
    // authorization, which the cloud checks first.
    let operation = Operation::parse(&call);
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let now = (state.clock)();
    let mut caller: Option<Caller> = None;
    let mut resource = ALL_RESOURCES.to_owned();
    let mut retry_after = None;
    let mut fault_id = None;
    let result: Result<_, ServerError> = async {
        // A source whose refused requests used up its allowance gets nothing more looked up.
        if let Some(ip) = source_ip {
            if let Err(wait) = state.refusals.peek(&ip.to_string(), Instant::now()) {
                retry_after = Some(wait.0);
                return Err(ApiError::new(ErrorCode::ThrottlingUser).into());
            }
        }
        let verified = verify(state, &call.credentials, now).await?;
        // Throttled before its nonce is claimed: a throttled call costs no record write,
        // and the caller is accountable for it as for any refusal after authentication.
        if let Some(throttle) = &state.throttle {
            if let Err(wait) = throttle.take(verified.caller.access_key_id.as_str(), Instant::now()) {
                caller = Some(verified.caller);
                retry_after = Some(wait.0);
                return Err(ApiError::new(ErrorCode::ThrottlingUser).into());
            }
        }
        let authenticated = claim_nonce(state, verified, &call.credentials, now).await?;
        caller = Some(authenticated.clone());
        // Faults set through the control API hit signed calls only, as the cloud's own do.
        let facts = crate::faults::CallFacts::of(&call, operation.action(), &authenticated);
        if let Some(fired) = state.faults.inject(&facts).await {
            fault_id = Some(fired.fault_id);
            if let Some((error, wait)) = fired.refusal {
                retry_after = wait;
                return Err(error.into());
            }
        }
        resource = operation.resource(&authenticated.principal.account);
        let context = Context {
            source_ip,
            secure_transport: state.secure_transport,
        };
        authorize(state, &authenticated, &operation, &resource, context, now).await?;
        dispatch(state, &authenticated, &operation, request_id, call.format, now).await
    }
    .await;
    if matches!(&result, Err(ServerError::Store(error)) if !matches!(error, ens_store::StoreError::Image(_)))
    {
        state.metrics.store_error();
    }
    let result = result.map_err(|error| error.into_api_error(operation.action(), request_id));
    if let (None, Some(ip), Err(error)) = (&caller, source_ip, &result) {
        if is_denial(&error.code) && retry_after.is_none() {
            // The token is only spent when refused; a throttled answer does not extend the wait.
            let _ = state.refusals.take(&ip.to_string(), Instant::now());
        }
    }
    if state.journal.is_enabled() {
        let caller = caller.as_ref().map(|c| &c.principal);
        let entry = crate::journal::entry(&call, caller, request_id, &result, started, fault_id);
        state.journal.record(entry);
    }
    audit(
        state,
        &operation,
        &call.credentials.access_key_id,
        caller.as_ref(),
        &resource,
        source_ip,
        request_id,
        now,
        &result,
    )
    .await;
    Outcome {
        format: call.format,
        result,
        action: Some(operation.action()),
        retry_after,
    }
}

/// Answers a request refused before it parsed into a call (unreadable body, or what
/// [`parse_call`] refuses), the one place such refusals are journaled: they never reach
/// authentication, faults or the audit. `raw.body` is empty when the body was the problem.
fn refused(
    state: &AppState,
    raw: &RawRequest<'_>,
    error: ApiError,
    format: Format,
    request_id: &str,
    started: Instant,
) -> Outcome {
    if state.journal.is_enabled() {
        state
            .journal
            .record(crate::journal::refusal_entry(raw, &error, request_id, started));
    }
    Outcome {
        format,
        result: Err(error),
        action: None,
        retry_after: None,
    }
}

/// Whether an error refused the caller (as opposed to its input), and so is audited.
fn is_denial(code: &ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NoPermission
            | ErrorCode::SignatureDoesNotMatch
            | ErrorCode::InvalidAccessKeyIdNotFound
            | ErrorCode::InvalidAccessKeyIdInactive
            | ErrorCode::InvalidTimeStampExpired
            | ErrorCode::SignatureNonceUsed
            | ErrorCode::InvalidSecurityTokenMalformed
            | ErrorCode::ThrottlingUser
    )
}

/// The AccessKeyId as the audit keeps it: verbatim when it has the shape of a key, else only
/// its size, so that a refused request cannot make the audit store what it sent.
pub(crate) fn audited_key_id(access_key_id: &str) -> String {
    match AccessKeyId::parse(access_key_id) {
        Ok(key) => key.to_string(),
        Err(_) => format!("<malformed: {} bytes>", access_key_id.len()),
    }
}

/// Records every write and every refused call, by what `operation` asks (action, whether it
/// writes) and the `resource` it was authorized against (`*` when refused before that).
/// Refusals of unauthenticated callers are counted rather than recorded one by one (see
/// [`crate::audit`]).
/// `access_key_id` is the key the caller named, verified or not. A failure to record is
/// logged; the answer already reflects what happened.
#[allow(clippy::too_many_arguments)]
async fn audit(
    state: &AppState,
    operation: &Operation,
    access_key_id: &str,
    caller: Option<&Caller>,
    resource: &str,
    source_ip: Option<std::net::IpAddr>,
    request_id: &str,
    now: OffsetDateTime,
    result: &Result<String, ApiError>,
) {
    let outcome = match result {
        Ok(_) if operation.writes() => "Success".to_owned(),
        Err(error) if operation.writes() || is_denial(&error.code) => error.code.wire_code().into_owned(),
        _ => return,
    };
    let entry = AuditEntry {
        at: now,
        request_id: request_id.to_owned(),
        account: caller.map(|c| c.principal.account.clone()),
        user: caller.and_then(|c| c.principal.user.clone()),
        access_key_id: Some(audited_key_id(access_key_id)),
        action: operation.action().as_str().to_owned(),
        resource: resource.to_owned(),
        source_ip: source_ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
        outcome,
        repeats: 1,
    };
    let entry = if caller.is_none() {
        // Nobody is accountable for it: past the period's allowance, counted with its kind.
        match state.audit.admit_refusal(entry) {
            Some(entry) => entry,
            None => return,
        }
    } else {
        entry
    };
    if let Err(error) = state.audit.record(entry).await {
        tracing::error!(request_id, %error, "audit record lost");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_fresh_upper_case_version_4_uuids() {
        let (first, second) = (RequestId::new(), RequestId::new());
        for id in [first.as_str(), second.as_str()] {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(id, id.to_ascii_uppercase());
            assert_eq!(id.len(), 36);
        }
        assert_ne!(first.as_str(), second.as_str());
    }
}
