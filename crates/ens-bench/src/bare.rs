//! The baseline: a bare hyper HTTP/1.1 server answering every request with one canned
//! DescribeImages page. It does no parsing, signing, store access or logging, so it shows what
//! the machine, the client and HTTP alone cost.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::catalog;

/// A 10-item DescribeImages page shaped like the real one.
pub fn canned_page() -> Bytes {
    let items: Vec<_> = (0..10).map(catalog::describe_item).collect();
    let page = json!({
        "RequestId": "00000000-0000-4000-8000-000000000000",
        "Code": 0,
        "Images": {"Image": items},
        "PageNumber": 1,
        "PageSize": 10,
        "TotalCount": 1000,
    });
    Bytes::from(page.to_string())
}

/// Starts the server on 127.0.0.1:0 on its own runtime with `threads` workers, so it gets
/// its own OS threads like a separate server process would. It lives until the process ends.
pub fn start(threads: usize, body: Bytes) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind the bare server")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name("bare-server")
        .enable_all()
        .build()
        .context("cannot start the bare server's runtime")?;
    // The caller runs inside its own runtime, where `block_on` is forbidden: block on a thread
    // of our own.
    std::thread::Builder::new()
        .name("bare-server".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => accept_loop(listener, body).await,
                    Err(error) => eprintln!("ens-bench: the bare server cannot listen: {error}"),
                }
            });
        })
        .context("cannot start the bare server thread")?;
    Ok(address)
}

async fn accept_loop(listener: tokio::net::TcpListener, body: Bytes) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // No TCP_NODELAY: ens-images (plain `axum::serve`) does not set it either, so both
        // servers write with the same socket options.
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(request, body.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(_request: Request<Incoming>, body: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json;charset=utf-8"),
    );
    headers.insert(
        "x-acs-request-id",
        http::HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
    );
    Ok(response)
}
