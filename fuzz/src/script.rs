//! The input of the two signature targets: a few edit lines, then a request to sign.
//!
//! ```text
//! ~q 0 other value          <- edits, applied after signing (zero or more lines)
//! ~secret not-the-secret
//! POST /?Action=DescribeImages&... HTTP/1.1    <- the template: any HTTP request
//! host: 127.0.0.1:18199
//!
//! body
//! ```
//!
//! The target signs the template with [`SECRET`](crate::reference::SECRET) the way a client would
//! (so the verifier's success path is reached whatever the fuzzer wrote), then applies the edits
//! as an attacker holding the signed request would, and checks the verifier's verdict on the
//! result. Seeds are real SDK requests (readable, and a mutation of one stays close to what
//! clients send); edits are plain text, so libFuzzer's dictionary and byte mutations find them.

use ens_protocol::encoding::form_encode;

use crate::reference;
use crate::transport::{self, Delivered};

/// One change an attacker makes to a signed request. Indices wrap around the list they index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// `~method M`: another method.
    Method(String),
    /// `~q I V` / `~b I V` / `~h I V`: a new value for the I-th query, form-body or header entry.
    Value(Part, usize, String),
    /// `~qn I N` / `~bn I N` / `~hn I N`: a new name for the I-th entry.
    Rename(Part, usize, String),
    /// `~qd I` / `~bd I` / `~hd I`: the I-th entry removed.
    Remove(Part, usize),
    /// `~qa N=V` / `~ba N=V` / `~ha N: V`: an entry appended.
    Append(Part, String, String),
    /// `~qr` / `~br` / `~hr`: the entries in reverse order.
    Reverse(Part),
    /// `~mv I`: the I-th query parameter moved to the end of the form body.
    MoveToBody(usize),
    /// `~raw-query TEXT`: the query string replaced as is (no encoding).
    RawQuery(String),
    /// `~raw-body TEXT`: the body replaced as is.
    RawBody(String),
    /// `~secret S`: verify with this secret instead of the signing one.
    Secret(String),
}

/// Which list of name-value entries an [`Edit`] addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The decoded query parameters.
    Query,
    /// The decoded form-body parameters (no effect on a body that is not a form).
    Body,
    /// The headers.
    Header,
}

/// Splits the leading `~` lines off and parses them; unknown edit lines are ignored, so a
/// mutated keyword costs nothing but the edit.
#[must_use]
pub fn split(data: &[u8]) -> (Vec<Edit>, &[u8]) {
    let mut edits = Vec::new();
    let mut rest = data;
    while rest.first() == Some(&b'~') {
        let end = rest.iter().position(|&byte| byte == b'\n').unwrap_or(rest.len());
        let line = String::from_utf8_lossy(&rest[1..end]);
        edits.extend(parse_edit(line.trim_end_matches('\r')));
        rest = rest.get(end + 1..).unwrap_or_default();
    }
    (edits, rest)
}

fn parse_edit(line: &str) -> Option<Edit> {
    let (word, argument) = line.split_once(' ').unwrap_or((line, ""));
    let indexed = || {
        let (index, value) = argument.split_once(' ').unwrap_or((argument, ""));
        Some((index.parse::<usize>().ok()?, value.to_owned()))
    };
    let part = match word.as_bytes().first() {
        Some(b'q') => Part::Query,
        Some(b'b') => Part::Body,
        _ => Part::Header,
    };
    Some(match word {
        "method" => Edit::Method(argument.to_owned()),
        "mv" => Edit::MoveToBody(indexed()?.0),
        "raw-query" => Edit::RawQuery(argument.to_owned()),
        "raw-body" => Edit::RawBody(argument.to_owned()),
        "secret" => Edit::Secret(argument.to_owned()),
        "q" | "b" | "h" => {
            let (index, value) = indexed()?;
            Edit::Value(part, index, value)
        }
        "qn" | "bn" | "hn" => {
            let (index, name) = indexed()?;
            Edit::Rename(part, index, name)
        }
        "qd" | "bd" | "hd" => Edit::Remove(part, indexed()?.0),
        "qa" | "ba" => {
            let (name, value) = argument.split_once('=').unwrap_or((argument, ""));
            Edit::Append(part, name.to_owned(), value.to_owned())
        }
        "ha" => {
            let (name, value) = argument.split_once(':').unwrap_or((argument, ""));
            Edit::Append(part, name.to_owned(), value.trim().to_owned())
        }
        "qr" | "br" | "hr" => Edit::Reverse(part),
        _ => return None,
    })
}

/// The body: decoded form parameters, or bytes that are not a decodable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A form body (the first `content-type` says so and it decodes).
    Form(Vec<(String, String)>),
    /// Anything else, sent as is.
    Bytes(Vec<u8>),
}

impl Body {
    /// The bytes on the wire.
    #[must_use]
    pub fn wire(&self) -> Vec<u8> {
        match self {
            Self::Form(pairs) => form_encode(pairs).into_bytes(),
            Self::Bytes(bytes) => bytes.clone(),
        }
    }
}

/// A request the targets sign and edit, kept decoded so edits address parameters, not bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The method.
    pub method: String,
    /// The path (the server only accepts `/` or empty).
    pub path: String,
    /// The decoded query parameters, in wire order.
    pub query: Vec<(String, String)>,
    /// A query string that replaces the encoded `query` on the wire.
    pub raw_query: Option<String>,
    /// The headers, in wire order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Model {
    /// The model of a delivered request, or `None` when its query does not decode (nothing
    /// could sign it).
    #[must_use]
    pub fn of(request: &Delivered) -> Option<Self> {
        let query = reference::form_decode(request.query.as_bytes())?;
        let body = match reference::form_decode(&request.body) {
            Some(pairs) if reference::is_form(&request.headers) => Body::Form(pairs),
            _ => Body::Bytes(request.body.clone()),
        };
        Some(Self {
            method: request.method.clone(),
            path: request.path.clone(),
            query,
            raw_query: None,
            headers: request.headers.clone(),
            body,
        })
    }

    /// The request as the server receives it, or `None` if hyper would refuse it.
    #[must_use]
    pub fn deliver(&self) -> Option<Delivered> {
        let query = self.raw_query.clone().unwrap_or_else(|| form_encode(&self.query));
        let target = if query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{query}", self.path)
        };
        transport::deliver(&transport::write_http(
            &self.method,
            &target,
            &self.headers,
            &self.body.wire(),
        ))
    }

    /// Sets every header named `name` (any case) to `value`, appending one if there is none.
    pub fn set_header(&mut self, name: &str, value: &str) {
        set_all(&mut self.headers, name, value, |key| {
            key.eq_ignore_ascii_case(name)
        });
    }

    /// Applies `edit`; returns the secret to verify with when the edit names one.
    pub fn apply(&mut self, edit: &Edit) -> Option<String> {
        match edit {
            Edit::Method(method) => self.method.clone_from(method),
            Edit::Value(part, index, value) => {
                if let Some(entry) = self.part(*part).and_then(|list| nth(list, *index)) {
                    entry.1.clone_from(value);
                }
            }
            Edit::Rename(part, index, name) => {
                if let Some(entry) = self.part(*part).and_then(|list| nth(list, *index)) {
                    entry.0.clone_from(name);
                }
            }
            Edit::Remove(part, index) => {
                if let Some(list) = self.part(*part).filter(|list| !list.is_empty()) {
                    list.remove(index % list.len());
                }
            }
            Edit::Append(part, name, value) => {
                if let Some(list) = self.part(*part) {
                    list.push((name.clone(), value.clone()));
                }
            }
            Edit::Reverse(part) => {
                if let Some(list) = self.part(*part) {
                    list.reverse();
                }
            }
            Edit::MoveToBody(index) => {
                if !self.query.is_empty() {
                    let pair = self.query.remove(index % self.query.len());
                    if let Body::Form(pairs) = &mut self.body {
                        pairs.push(pair);
                    }
                }
            }
            Edit::RawQuery(text) => self.raw_query = Some(text.clone()),
            Edit::RawBody(text) => self.body = Body::Bytes(text.clone().into_bytes()),
            Edit::Secret(secret) => return Some(secret.clone()),
        }
        None
    }

    fn part(&mut self, part: Part) -> Option<&mut Vec<(String, String)>> {
        match (part, &mut self.body) {
            (Part::Query, _) => Some(&mut self.query),
            (Part::Header, _) => Some(&mut self.headers),
            (Part::Body, Body::Form(pairs)) => Some(pairs),
            (Part::Body, Body::Bytes(_)) => None,
        }
    }

    /// Signs the model as a V1 client would: `Signature` (set wherever it already is, else
    /// appended to the query) over the merged parameters.
    pub fn sign_v1(&mut self, secret: &str) {
        let body: &[(String, String)] = match &self.body {
            Body::Form(pairs) => pairs,
            Body::Bytes(_) => &[],
        };
        let mut params = reference::merged_params(&self.query, body);
        params.remove("Signature");
        let signature = reference::v1_sign(secret, &self.method, &params);
        let in_body = body.iter().any(|(name, _)| name == "Signature");
        if let (true, Body::Form(pairs)) = (in_body, &mut self.body) {
            set_all(pairs, "Signature", &signature, |name| name == "Signature");
        }
        if !in_body || self.query.iter().any(|(name, _)| name == "Signature") {
            set_all(&mut self.query, "Signature", &signature, |name| {
                name == "Signature"
            });
        }
    }

    /// Signs the model as a V3 client would: the payload digest set, the `Authorization`
    /// header (its algorithm, credential and signed list kept when it has one, else
    /// `ACS3-HMAC-SHA256` over every header) written with the signature. Returns the claims.
    pub fn sign_v3(&mut self, secret: &str) -> reference::V3Authorization {
        let template = reference::first_header(&self.headers, "authorization")
            .and_then(reference::V3Authorization::parse);
        let algorithm = template
            .as_ref()
            .map_or(reference::Algorithm::Sha256, |claims| claims.algorithm);
        let body = self.body.wire();
        self.set_header("x-acs-content-sha256", &algorithm.hash_hex(&body));
        let mut claims = template.unwrap_or_else(|| {
            let mut names: Vec<String> = self
                .headers
                .iter()
                .map(|(name, _)| name.to_ascii_lowercase())
                .filter(|name| name != "authorization")
                .collect();
            names.sort();
            names.dedup();
            reference::V3Authorization {
                algorithm,
                credential: "testid".to_owned(),
                signed_headers: names,
                signature: String::new(),
            }
        });
        claims.signature =
            reference::v3_sign(secret, &claims, &self.method, &self.query, &self.headers, &body);
        self.set_header("authorization", &claims.render());
        claims
    }
}

fn nth<T>(list: &mut [T], index: usize) -> Option<&mut T> {
    let length = list.len();
    list.get_mut(index.checked_rem(length)?)
}

fn set_all(list: &mut Vec<(String, String)>, name: &str, value: &str, matches: impl Fn(&str) -> bool) {
    let mut found = false;
    for entry in list.iter_mut().filter(|(key, _)| matches(key)) {
        entry.1 = value.to_owned();
        found = true;
    }
    if !found {
        list.push((name.to_owned(), value.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_lines_are_split_from_the_request() {
        let (edits, rest) = split(b"~q 1 x y\r\n~hd 3\n~secret s\n~nonsense\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(
            edits,
            vec![
                Edit::Value(Part::Query, 1, "x y".to_owned()),
                Edit::Remove(Part::Header, 3),
                Edit::Secret("s".to_owned())
            ]
        );
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn a_model_signed_for_v1_is_accepted_by_the_reference() {
        let request =
            transport::deliver(b"GET /?Action=DescribeImages&Signature=x HTTP/1.1\r\nhost: h\r\n\r\n")
                .expect("valid");
        let mut model = Model::of(&request).expect("decodable");
        model.sign_v1(reference::SECRET);
        let signed = model.deliver().expect("deliverable");
        assert!(reference::v1_accepts(&signed, reference::SECRET));
        assert!(!reference::v1_accepts(&signed, "other"));
    }

    #[test]
    fn a_model_signed_for_v3_is_accepted_by_the_reference() {
        let request = transport::deliver(b"POST /?a=b HTTP/1.1\r\nhost: h\r\nx-acs-date: d\r\n\r\nbody")
            .expect("valid");
        let mut model = Model::of(&request).expect("decodable");
        model.sign_v3(reference::SECRET);
        let signed = model.deliver().expect("deliverable");
        assert!(reference::v3_accepts(&signed, reference::SECRET));
        model.apply(&Edit::Value(Part::Query, 0, "c".to_owned()));
        assert!(!reference::v3_accepts(
            &model.deliver().expect("deliverable"),
            reference::SECRET
        ));
    }
}
