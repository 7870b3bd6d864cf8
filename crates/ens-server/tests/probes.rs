//! Health, readiness and metrics endpoints, through the real router.

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed setup step should fail the test loudly"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use ens_server::secrets::MasterKey;
use ens_server::{router, AppState, ServerConfig};
use ens_store::Store;
use http_body_util::BodyExt;
use tower::ServiceExt;

async fn get(state: &AppState, path: &str) -> (u16, String) {
    let response = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn state() -> AppState {
    let store = Store::temporary().await.unwrap();
    AppState::new(
        Arc::new(store),
        MasterKey::parse(&"11".repeat(32)).unwrap(),
        ServerConfig::default(),
    )
}

#[tokio::test]
async fn health_and_readiness_answer_when_the_store_does() {
    let state = state().await;
    assert_eq!(
        get(&state, "/healthz").await,
        (200, r#"{"status":"ok"}"#.to_owned())
    );
    assert_eq!(
        get(&state, "/readyz").await,
        (200, r#"{"status":"ready"}"#.to_owned())
    );
}

#[tokio::test]
async fn answered_requests_show_up_in_metrics() {
    let state = state().await;
    let (status, _) = get(&state, "/?Action=DescribeImages").await;
    assert_eq!(status, 400);
    let (status, text) = get(&state, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        text.contains(r#"ens_images_requests_total{action="-",code="MissingSignature"} 1"#),
        "{text}"
    );
    let open: u32 = text
        .lines()
        .find_map(|line| line.strip_prefix("ens_images_store_pool_connections "))
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    assert!((1..=8).contains(&open), "{text}");
    // Another path still gets a cloud error, not a router 404 page.
    let (status, body) = get(&state, "/nothing-here").await;
    assert_eq!(status, 404);
    assert!(body.contains("InvalidApi.NotFound"));
}

#[tokio::test]
async fn the_benchmark_ceiling_answers_only_when_enabled() {
    let state = state().await;
    let (status, body) = get(&state, "/bench/ceiling?Bytes=100").await;
    assert_eq!(status, 404);
    assert!(body.contains("InvalidApi.NotFound"), "{body}");

    let store = Store::temporary().await.unwrap();
    let config = ServerConfig {
        bench_ceiling: true,
        ..ServerConfig::default()
    };
    let enabled = AppState::new(
        Arc::new(store),
        MasterKey::parse(&"11".repeat(32)).unwrap(),
        config,
    );
    let (status, body) = get(&enabled, "/bench/ceiling?Bytes=100").await;
    assert_eq!((status, body.len()), (200, 100));
    let (status, body) = get(&enabled, "/bench/ceiling").await;
    assert_eq!((status, body.len()), (200, 4096));
    for bad in ["0", "1048577", "x"] {
        let (status, _) = get(&enabled, &format!("/bench/ceiling?Bytes={bad}")).await;
        assert_eq!(status, 400, "Bytes={bad}");
    }
}
