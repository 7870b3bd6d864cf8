//! The official SDKs' captured requests (protocol spec vectors), replayed through the whole
//! request pipeline with the clock pinned to their timestamp.

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed setup step should fail the test loudly"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use ens_domain::{AccessKeyId, AccountId};
use ens_server::secrets::MasterKey;
use ens_server::{router, AppState, ServerConfig};
use ens_store::{AdminStore, Store};
use http_body_util::BodyExt;
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;
use tower::ServiceExt;

const SIGNED_AT: OffsetDateTime = datetime!(2025-01-02 03:04:05 UTC);

fn vectors() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../ens-protocol/tests/vectors");
    ["rpc_v1.json", "acs3.json"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(format!("{dir}/{file}")).unwrap();
            let document: Value = serde_json::from_str(&text).unwrap();
            document["vectors"].as_array().unwrap().clone()
        })
        .filter(|vector| vector.get("wire").is_some())
        .collect()
}

fn master_key() -> MasterKey {
    MasterKey::parse(&"42".repeat(32)).unwrap()
}

async fn state_at(now: OffsetDateTime) -> AppState {
    let store = Store::temporary().await.unwrap();
    store
        .create_account_with_key(
            &AccountId::parse("AccountId", "1000000000000001").unwrap(),
            &AccessKeyId::parse("testid").unwrap(),
            &master_key().seal("testsecret"),
            now,
        )
        .await
        .unwrap();
    let mut state = AppState::new(Arc::new(store), master_key(), ServerConfig::default());
    state.clock = Arc::new(move || now);
    state
}

/// Sends the captured request, optionally altered, and returns (status, error code).
async fn replay(state: &AppState, wire: &Value, path: &str, body: &str) -> (u16, String) {
    let mut request = Request::builder()
        .method(wire["method"].as_str().unwrap())
        .uri(path);
    for header in wire["headers"].as_array().unwrap() {
        let name = header[0].as_str().unwrap();
        if !name.eq_ignore_ascii_case("content-length") {
            request = request.header(name, header[1].as_str().unwrap());
        }
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    let code = match &json["Code"] {
        Value::String(code) => code.clone(),
        other => other.to_string(),
    };
    (status, code)
}

fn action_of(vector: &Value) -> String {
    let wire = &vector["wire"];
    let from_header = wire["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("x-acs-action"))
        .map(|h| h[1].as_str().unwrap().to_owned());
    from_header.unwrap()
}

const AUTH_FAILURES: [&str; 6] = [
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "InvalidTimeStamp.Expired",
    "InvalidTimeStamp.Format",
    "InvalidAccessKeyId.NotFound",
    "SignatureNonceUsed",
];

#[tokio::test]
async fn every_captured_sdk_request_passes_authentication() {
    for vector in vectors() {
        let name = vector["name"].as_str().unwrap();
        let wire = &vector["wire"];
        let state = state_at(SIGNED_AT).await;
        let (status, code) = replay(
            &state,
            wire,
            wire["path"].as_str().unwrap(),
            wire["body"].as_str().unwrap(),
        )
        .await;
        let expected = match (action_of(&vector).as_str(), name) {
            ("UpgradeAICInstanceImage" | "ReinitInstance", _) => "InvalidAction.NotFound",
            // Accepted and parsed; the captured mapping's buckets `b1` and `b2` are shorter than
            // the 3 characters a bucket name needs.
            ("ImportImage", _) => "InvalidParameter.DiskDeviceMapping",
            (_, name) if name.contains("_sts") => "InvalidSecurityToken.Malformed",
            // The SDK sent ImageName empty.
            ("CreateImage", _) | ("ModifyImageAttribute", "core_v1_empty_value") => "MissingParameter",
            // Signature, clock and nonce accepted; the name itself breaks the naming rules
            // (a space, a check mark, ...).
            ("DescribeImages" | "ModifyImageAttribute", _) => "InvalidParameter.ImageName",
            (action, _) => panic!("{name}: no expectation for {action}"),
        };
        assert_eq!(code, expected, "{name}: status {status}");
        assert!(!AUTH_FAILURES.contains(&code.as_str()), "{name}");
    }
}

fn describe_vectors() -> Vec<Value> {
    vectors()
        .into_iter()
        .filter(|v| action_of(v) == "DescribeImages")
        .collect()
}

#[tokio::test]
async fn a_replayed_request_is_refused_as_a_used_nonce() {
    for vector in describe_vectors() {
        let wire = &vector["wire"];
        let state = state_at(SIGNED_AT).await;
        let path = wire["path"].as_str().unwrap();
        let body = wire["body"].as_str().unwrap();
        let (_, first) = replay(&state, wire, path, body).await;
        assert_eq!(first, "InvalidParameter.ImageName");
        let (status, second) = replay(&state, wire, path, body).await;
        assert_eq!(
            (status, second.as_str()),
            (400, "SignatureNonceUsed"),
            "{}",
            vector["name"]
        );
    }
}

#[tokio::test]
async fn a_request_signed_sixteen_minutes_ago_has_expired() {
    for vector in describe_vectors() {
        let wire = &vector["wire"];
        let state = state_at(SIGNED_AT + time::Duration::minutes(16)).await;
        let (status, code) = replay(
            &state,
            wire,
            wire["path"].as_str().unwrap(),
            wire["body"].as_str().unwrap(),
        )
        .await;
        assert_eq!(
            (status, code.as_str()),
            (400, "InvalidTimeStamp.Expired"),
            "{}",
            vector["name"]
        );
        // Fourteen minutes is inside the window.
        let state = state_at(SIGNED_AT - time::Duration::minutes(14)).await;
        let (_, code) = replay(
            &state,
            wire,
            wire["path"].as_str().unwrap(),
            wire["body"].as_str().unwrap(),
        )
        .await;
        assert_eq!(code, "InvalidParameter.ImageName", "{}", vector["name"]);
    }
}

#[tokio::test]
async fn a_tampered_parameter_breaks_the_signature() {
    for vector in describe_vectors() {
        let wire = &vector["wire"];
        let state = state_at(SIGNED_AT).await;
        let path = wire["path"]
            .as_str()
            .unwrap()
            .replace("PageSize=50", "PageSize=49");
        assert_ne!(path, wire["path"].as_str().unwrap(), "{}", vector["name"]);
        let (status, code) = replay(&state, wire, &path, wire["body"].as_str().unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (400, "SignatureDoesNotMatch"),
            "{}",
            vector["name"]
        );
    }
}

#[tokio::test]
async fn an_unknown_key_is_not_found_before_any_signature_check() {
    let vector = describe_vectors().into_iter().next().unwrap();
    let wire = &vector["wire"];
    let state = state_at(SIGNED_AT).await;
    let path = wire["path"]
        .as_str()
        .unwrap()
        .replace("AccessKeyId=testid", "AccessKeyId=nobody");
    let (status, code) = replay(&state, wire, &path, "").await;
    assert_eq!((status, code.as_str()), (404, "InvalidAccessKeyId.NotFound"));
}
