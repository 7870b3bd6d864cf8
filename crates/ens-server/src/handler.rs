//! The one HTTP handler: every path and method goes through the same pipeline, so even a
//! wrong path or method gets a well-formed cloud error.

use std::time::Instant;

use axum::body::Body as HttpBody;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ens_protocol::render::{render_error, render_success};
use ens_protocol::{parse_call, ApiError, ErrorCode, Format, RawRequest};
use http_body_util::BodyExt;

use crate::auth::authenticate;
use crate::ops::dispatch;
use crate::AppState;

/// The service's router.
pub fn router(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// A fresh request ID in the cloud's shape: an upper-case UUID.
fn new_request_id() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string().to_ascii_uppercase()
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let (parts, body) = request.into_parts();
    let outcome = run(&state, &parts, body, &request_id).await;
    let (status, format, text, code, action) = match outcome {
        Ok((format, text, action)) => (StatusCode::OK, format, text, None, Some(action)),
        Err((error, format, action)) => {
            let status = StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            let text = render_error(&error, &request_id, &state.config.host_id, format);
            (status, format, text, Some(error.code.wire_code()), action)
        }
    };
    tracing::info!(
        request_id,
        action = action.unwrap_or("-"),
        status = status.as_u16(),
        code = code.as_deref().unwrap_or("-"),
        elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("x-acs-request-id", value);
    }
    response
}

type Outcome = Result<(Format, String, &'static str), (ApiError, Format, Option<&'static str>)>;

async fn run(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: HttpBody,
    request_id: &str,
) -> Outcome {
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
            return Err((error, Format::Json, None));
        }
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let raw = RawRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body: &body,
    };
    let call = parse_call(&raw).map_err(|failure| (failure.error, failure.format, None))?;
    let action = call.action.as_str();
    let now = (state.clock)();
    let result = async {
        let caller = authenticate(state, &call.credentials, now).await?;
        dispatch(state, &caller, &call, request_id, now).await
    }
    .await;
    match result {
        Ok(body) => Ok((call.format, render_success(&body, call.format), action)),
        Err(error) => Err((
            error.into_api_error(call.action, request_id),
            call.format,
            Some(action),
        )),
    }
}
