//! The client against a tiny in-test server that authenticates with the server-side parser:
//! proves the bytes hyper puts on the wire (not just the signer's output) verify, that error
//! envelopes come back as `ClientError::Api`, and that keep-alive connections are reused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration test: failing loudly is the point"
)]

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ens_client::{AccessKeySecret, Client, ClientError, SignatureVersion};
use ens_protocol::error::{ApiError, ErrorCode};
use ens_protocol::render::{render_error, Format};
use ens_protocol::request::{parse_call, RawRequest};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const KEY_ID: &str = "test-key";
const SECRET: &str = "test-secret";

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    nonces: Mutex<HashSet<String>>,
    /// Method, path and query of every request, in arrival order.
    targets: Mutex<Vec<(String, String, String)>>,
}

async fn answer(seen: Arc<Seen>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    seen.targets
        .lock()
        .unwrap()
        .push((method.clone(), path.clone(), query.clone()));
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
        .collect();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let raw = RawRequest {
        method: &method,
        path: &path,
        query: &query,
        headers: &ens_protocol::borrowed_headers(&headers),
        body: &body,
    };
    let outcome = parse_call(&raw)
        .map_err(|failure| failure.error)
        .and_then(|call| {
            if call.credentials.access_key_id != KEY_ID {
                return Err(ApiError::new(ErrorCode::InvalidAccessKeyIdNotFound));
            }
            call.credentials
                .verify(&AccessKeySecret::new(SECRET.to_owned()))?;
            if !seen.nonces.lock().unwrap().insert(call.credentials.nonce.clone()) {
                return Err(ApiError::new(ErrorCode::SignatureNonceUsed));
            }
            Ok(call)
        });
    let response = match outcome {
        Ok(call) => {
            let json = serde_json::json!({"RequestId": "R-ok", "Params": call.params});
            Response::builder()
                .status(200)
                .body(Full::new(Bytes::from(json.to_string())))
        }
        Err(error) => Response::builder()
            .status(error.code.http_status())
            .header("x-acs-request-id", "R-err")
            .body(Full::new(Bytes::from(render_error(
                &error,
                "R-err",
                "test",
                Format::Json,
            )))),
    };
    Ok(response.unwrap())
}

async fn start() -> (SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let state = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            state.connections.fetch_add(1, Ordering::SeqCst);
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| answer(Arc::clone(&state), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (address, seen)
}

fn client(address: SocketAddr, secret: &str, version: SignatureVersion) -> Client {
    Client::new(
        &format!("http://{address}"),
        KEY_ID,
        AccessKeySecret::new(secret.to_owned()),
        version,
    )
    .unwrap()
}

fn params() -> Vec<(String, String)> {
    [
        ("ImageName", "a b+c/d?e&f=g%h#i"),
        ("Description", "镜像 🚀 'quoted' \"double\""),
        ("Empty", ""),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

#[tokio::test]
async fn both_versions_verify_on_the_wire_and_reuse_one_connection() {
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let (address, seen) = start().await;
        let client = client(address, SECRET, version);
        for _ in 0..20 {
            let json = client.call("DescribeImages", &params()).await.unwrap();
            for (name, value) in params() {
                assert_eq!(json["Params"][&name], value, "{version:?} {name}");
            }
        }
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "{version:?}");
        assert_eq!(seen.nonces.lock().unwrap().len(), 20, "{version:?}");
    }
}

#[tokio::test]
async fn a_wrong_secret_comes_back_as_an_api_error_with_its_envelope() {
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let (address, _) = start().await;
        let error = client(address, "not-the-secret", version)
            .call("DescribeImages", &[])
            .await
            .unwrap_err();
        let ClientError::Api(failure) = error else {
            panic!("{version:?}: expected an API error, got {error:?}");
        };
        assert_eq!(failure.status, 400);
        assert_eq!(failure.code, "SignatureDoesNotMatch");
        assert_eq!(failure.request_id, "R-err");
        assert!(!failure.message.is_empty());
    }
}

#[tokio::test]
async fn replaying_a_signed_request_is_refused_by_nonce() {
    let (address, _) = start().await;
    let client = client(address, SECRET, SignatureVersion::V3);
    let signed = client
        .signer()
        .sign(
            "DescribeImages",
            &[],
            time::OffsetDateTime::now_utc(),
            "fixed-nonce",
        )
        .unwrap();
    assert!(client.send_signed(&signed).await.unwrap().is_success());
    let replay = client.send_signed(&signed).await.unwrap();
    assert_eq!(replay.status, 400);
    assert!(String::from_utf8_lossy(&replay.body).contains("SignatureNonceUsed"));
}

#[tokio::test]
async fn concurrent_calls_on_one_client_each_get_a_connection() {
    let (address, seen) = start().await;
    let client = client(address, SECRET, SignatureVersion::V3);
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call("DescribeImages", &[]).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    let connections = seen.connections.load(Ordering::SeqCst);
    assert!((1..=4).contains(&connections), "{connections}");
}

#[tokio::test]
async fn a_closed_port_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let error = client(address, SECRET, SignatureVersion::V3)
        .call("DescribeImages", &[])
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Transport(_)), "{error:?}");
    assert_eq!(error.status(), None);
}

#[tokio::test]
async fn send_to_and_get_reach_other_paths_on_the_same_connection() {
    for version in [SignatureVersion::V3, SignatureVersion::V1] {
        let (address, seen) = start().await;
        let client = client(address, SECRET, version);
        client
            .send_to("/bench/ceiling?Bytes=10", "DescribeImages", &params())
            .await
            .unwrap();
        client.send_to("/other", "DescribeImages", &[]).await.unwrap();
        client.get("/readyz").await.unwrap();
        let targets = seen.targets.lock().unwrap().clone();
        let [(method, path, query), (_, other_path, other_query), (get, probe, probe_query)] =
            targets.as_slice()
        else {
            panic!("{version:?}: expected three requests, got {targets:?}");
        };
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/bench/ceiling"));
        assert!(query.starts_with("Bytes=10&"), "{version:?}: {query}");
        assert!(query.contains("ImageName="), "{version:?}: {query}");
        assert_eq!(other_path, "/other");
        match version {
            SignatureVersion::V3 => assert_eq!(other_query, ""),
            SignatureVersion::V1 => assert!(other_query.starts_with("AccessKeyId="), "{other_query}"),
        }
        assert_eq!(
            (get.as_str(), probe.as_str(), probe_query.as_str()),
            ("GET", "/readyz", "")
        );
        assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "{version:?}");
    }
}

#[tokio::test]
async fn a_relative_path_is_refused_before_sending() {
    let (address, seen) = start().await;
    let client = client(address, SECRET, SignatureVersion::V3);
    let error = client.send_to("bench", "DescribeImages", &[]).await.unwrap_err();
    assert!(matches!(error, ClientError::InvalidPath(_)), "{error:?}");
    assert!(matches!(
        client.get("//elsewhere/").await.unwrap_err(),
        ClientError::InvalidPath(_)
    ));
    assert!(seen.targets.lock().unwrap().is_empty());
}
