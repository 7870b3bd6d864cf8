//! The order of the pipeline's checks, through the real router: a call's parameters are read
//! right after the protocol parse, but a parameter error is answered only after
//! authentication and authorization, and authorization judges an invalid call by the image
//! it names, as sent.

#![allow(
    clippy::unwrap_used,
    reason = "test fixtures: a failed setup step should fail the test loudly"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use ens_domain::{AccessKeyId, AccountId, Principal, RamUserName};
use ens_protocol::encoding::form_encode;
use ens_protocol::sign::v1;
use ens_protocol::AccessKeySecret;
use ens_server::secrets::MasterKey;
use ens_server::{router, AppState, ServerConfig};
use ens_store::{AdminStore, AuditFilter, Store};
use http_body_util::BodyExt;
use serde_json::Value;
use time::macros::datetime;
use time::OffsetDateTime;
use tower::ServiceExt;

const NOW: OffsetDateTime = datetime!(2026-01-02 03:04:05 UTC);
const ACCOUNT: &str = "1000000000000001";
const ALLOWED_IMAGE: &str = "m-allowed0000000000000000001";

fn master_key() -> MasterKey {
    MasterKey::parse(&"42".repeat(32)).unwrap()
}

/// An account whose owner signs with `owner`/`owner-secret`, and a RAM user `dev` signing
/// with `dev`/`dev-secret`, allowed only `ModifyImageSharePermission` on [`ALLOWED_IMAGE`].
async fn state() -> (AppState, Store) {
    let store = Store::temporary().await.unwrap();
    let account = AccountId::parse("AccountId", ACCOUNT).unwrap();
    let key = master_key();
    store
        .create_account_with_key(
            &account,
            &AccessKeyId::parse("owner").unwrap(),
            &key.seal("owner-secret"),
            NOW,
        )
        .await
        .unwrap();
    let dev = RamUserName::parse("UserName", "dev").unwrap();
    store.create_ram_user(&account, &dev, NOW).await.unwrap();
    store
        .create_access_key(
            &Principal {
                account: account.clone(),
                user: Some(dev.clone()),
            },
            &AccessKeyId::parse("dev").unwrap(),
            &key.seal("dev-secret"),
            NOW,
        )
        .await
        .unwrap();
    let policy = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"ens:ModifyImageSharePermission","Resource":"acs:ens:*:{ACCOUNT}:image/{ALLOWED_IMAGE}"}}]}}"#
    );
    store
        .create_policy(&account, "share-one", &policy, NOW)
        .await
        .unwrap();
    store.attach_policy(&account, &dev, "share-one").await.unwrap();
    let mut state = AppState::new(Arc::new(store.clone()), key, ServerConfig::default());
    state.clock = Arc::new(|| NOW);
    (state, store)
}

/// Sends a V1-signed GET of `action` with `params`, signed by `key` with `secret`; returns
/// the error code (or `Success`).
async fn call(state: &AppState, key: &str, secret: &str, action: &str, params: &[(&str, &str)]) -> String {
    static NONCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nonce = NONCE
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string();
    let mut signed: BTreeMap<String, String> = [
        ("Action", action),
        ("Version", "2017-11-10"),
        ("AccessKeyId", key),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce.as_str()),
        ("Timestamp", "2026-01-02T03:04:05Z"),
        ("Format", "JSON"),
    ]
    .into_iter()
    .chain(params.iter().copied())
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let signature = v1::sign(
        &AccessKeySecret::new(secret.to_owned()),
        &v1::string_to_sign("GET", &signed),
    );
    signed.insert("Signature".into(), signature);
    let query = form_encode(&signed.into_iter().collect::<Vec<_>>());
    let response = router(state.clone())
        .oneshot(Request::get(format!("/?{query}")).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&bytes).unwrap();
    json["Code"]
        .as_str()
        .map_or_else(|| "Success".to_owned(), str::to_owned)
}

#[tokio::test]
async fn a_bad_signature_is_answered_before_a_bad_parameter() {
    let (state, _) = state().await;
    let bad = [("PageSize", "51")];
    assert_eq!(
        call(&state, "owner", "wrong-secret", "DescribeImages", &bad).await,
        "SignatureDoesNotMatch"
    );
    assert_eq!(
        call(&state, "owner", "owner-secret", "DescribeImages", &bad).await,
        "InvalidParameter.PageSize"
    );
}

#[tokio::test]
async fn a_denied_call_is_answered_before_its_bad_parameter() {
    let (state, _) = state().await;
    assert_eq!(
        call(
            &state,
            "dev",
            "dev-secret",
            "DescribeImages",
            &[("PageSize", "51")]
        )
        .await,
        "NoPermission"
    );
    // Another image than the one allowed: denied, whatever is wrong with the accounts.
    assert_eq!(
        call(
            &state,
            "dev",
            "dev-secret",
            "ModifyImageSharePermission",
            &[
                ("ImageId", "m-other000000000000000000001"),
                ("AddAccounts", "12,x")
            ],
        )
        .await,
        "NoPermission"
    );
}

#[tokio::test]
async fn an_invalid_call_is_authorized_and_audited_by_the_image_it_names() {
    let (state, store) = state().await;
    assert_eq!(
        call(
            &state,
            "dev",
            "dev-secret",
            "ModifyImageSharePermission",
            &[("ImageId", ALLOWED_IMAGE), ("AddAccounts", "12,x")],
        )
        .await,
        "InvalidParameter.AddAccounts"
    );
    let entries = store
        .audit_entries(&AuditFilter {
            account: None,
            action: Some("ModifyImageSharePermission".into()),
            outcome: None,
            since: None,
            limit: 10,
        })
        .await
        .unwrap();
    let outcomes: Vec<(&str, &str)> = entries
        .iter()
        .map(|entry| (entry.outcome.as_str(), entry.resource.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [(
            "InvalidParameter.AddAccounts",
            format!("acs:ens::{ACCOUNT}:image/{ALLOWED_IMAGE}").as_str()
        )]
    );
}
