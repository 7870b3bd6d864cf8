//! From request bytes to the [`RawRequest`] the server hands to `parse_call`, the way the server
//! does it.
//!
//! The server receives requests through hyper, which parses the head with `httparse` and builds
//! `http` types; `ens-server`'s handler then reads every header value with
//! `String::from_utf8_lossy` and passes path, query, headers and body on. Fuzzing `parse_call`
//! with inputs no transport can deliver (a line feed inside a header value, say) would report
//! problems that cannot happen, so this module refuses whatever hyper refuses and converts the
//! rest exactly as the handler does.

use ens_protocol::{borrowed_headers, parse_call, Call, ParseFailure, RawRequest};

/// Most headers one request may carry here; hyper's own default is 100.
const MAX_HEADERS: usize = 100;

/// A request as the handler sees it, owning what [`RawRequest`] borrows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The method as hyper spells it (`GET`, `POST`, or any token).
    pub method: String,
    /// The path of the request target.
    pub path: String,
    /// The query after `?`, empty when absent.
    pub query: String,
    /// Every header in hyper's order (grouped by name), names lower-case, values lossy UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Delivered {
    /// What `parse_call` makes of the request, given the borrowed view the handler gives it.
    ///
    /// # Errors
    /// The refusal `parse_call` answers with.
    pub fn parse(&self) -> Result<Call, ParseFailure> {
        parse_call(&RawRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &borrowed_headers(&self.headers),
            body: &self.body,
        })
    }
}

/// Parses an HTTP/1.x request (head, blank line, body) as hyper would, or `None` where hyper
/// would answer 400 itself and the handler never run. Everything after the head is the body
/// (no framing: the fuzz input's end is the body's end).
#[must_use]
pub fn deliver(data: &[u8]) -> Option<Delivered> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut slots);
    let httparse::Status::Complete(head_len) = request.parse(data).ok()? else {
        return None;
    };
    let method = http::Method::from_bytes(request.method?.as_bytes()).ok()?;
    let uri: http::Uri = request.path?.parse().ok()?;
    let mut map = http::HeaderMap::new();
    for header in request.headers.iter() {
        let name = http::HeaderName::from_bytes(header.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(header.value).ok()?;
        map.append(name, value);
    }
    Some(Delivered {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: handler_headers(&map),
        body: data.get(head_len..).unwrap_or_default().to_vec(),
    })
}

/// `ens-server`'s conversion of the header map (handler.rs), kept byte for byte equivalent.
fn handler_headers(map: &http::HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Writes a request as HTTP/1.1 text, the inverse of [`deliver`] for what it accepts: the
/// structured targets build a request, print it, and deliver it like any other.
#[must_use]
pub fn write_http(method: &str, target: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\n").into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_split_as_the_handler_sees_it() {
        let text = b"POST /?A=1&B=x+y HTTP/1.1\r\nHost: h:1\r\nX-Acs-Date:  2025-01-02T03:04:05Z \r\n\r\nk=v";
        let delivered = deliver(text).expect("a valid request");
        assert_eq!(delivered.method, "POST");
        assert_eq!(delivered.path, "/");
        assert_eq!(delivered.query, "A=1&B=x+y");
        assert_eq!(
            delivered.headers,
            vec![
                ("host".to_owned(), "h:1".to_owned()),
                ("x-acs-date".to_owned(), "2025-01-02T03:04:05Z".to_owned())
            ]
        );
        assert_eq!(delivered.body, b"k=v");
    }

    #[test]
    fn what_hyper_refuses_is_not_delivered() {
        assert!(deliver(b"GET / HTTP/1.1\r\nbad header: x\r\n\r\n").is_none());
        assert!(deliver(b"GET / HTTP/1.1\r\nx: a\x01b\r\n\r\n").is_none());
        assert!(deliver(b"GET / HTTP/1.1\r\n").is_none());
    }

    #[test]
    fn writing_then_delivering_round_trips() {
        let headers = vec![
            ("host".to_owned(), "h".to_owned()),
            ("x-a".to_owned(), "1".to_owned()),
        ];
        let text = write_http("GET", "/?a=b", &headers, b"body");
        let delivered = deliver(&text).expect("a valid request");
        assert_eq!(delivered.headers, headers);
        assert_eq!(delivered.query, "a=b");
        assert_eq!(delivered.body, b"body");
    }
}
