//! Replays the SDK-captured signature vectors (shared/spec/vectors) stage by stage, then rebuilds
//! every captured wire request the way the server does and checks that it verifies, and that
//! changing any signed byte makes it fail.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "shared test helpers, not just #[test] fns, fail the test by panicking"
)]

use std::collections::BTreeMap;
use std::path::Path;

use ens_protocol::encoding::{form_decode, form_encode, percent_encode};
use ens_protocol::secret::AccessKeySecret;
use ens_protocol::sign::{v1, v3};
use serde::de::DeserializeOwned;
use serde::Deserialize;

#[derive(Deserialize)]
struct VectorFile<V> {
    vectors: Vec<V>,
}

#[derive(Clone, Deserialize)]
struct Wire {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Deserialize)]
struct V1Inputs {
    access_key_secret: String,
    http_method: String,
    signed_params: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct V1Vector {
    name: String,
    inputs: V1Inputs,
    canonicalized_query_string: String,
    string_to_sign: String,
    hmac_key: String,
    signature: String,
    wire: Option<Wire>,
}

#[derive(Deserialize)]
struct V3Inputs {
    access_key_id: String,
    access_key_secret: String,
    algorithm: String,
    http_method: String,
    canonical_uri: String,
    query_decoded: BTreeMap<String, String>,
    signed_headers: Vec<String>,
    signed_header_values: BTreeMap<String, String>,
    body: String,
}

#[derive(Deserialize)]
struct V3Vector {
    name: String,
    inputs: V3Inputs,
    canonical_query_string: String,
    canonical_headers: String,
    hashed_payload: String,
    canonical_request: String,
    hashed_canonical_request: String,
    string_to_sign: String,
    signature: String,
    authorization: String,
    wire: Option<Wire>,
}

#[derive(Deserialize)]
struct PercentVector {
    input: String,
    encoded: String,
    form_urlencoded_wire_form: String,
}

fn load<V: DeserializeOwned>(file: &str) -> Vec<V> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let parsed: VectorFile<V> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
    parsed.vectors
}

fn rpc_v1() -> Vec<V1Vector> {
    load("rpc_v1.json")
}

fn acs3() -> Vec<V3Vector> {
    load("acs3.json")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

fn split_target(path: &str) -> (&str, &str) {
    path.split_once('?').unwrap_or((path, ""))
}

/// Changes one byte and keeps the text UTF-8 and form-decodable: the last ASCII letter or digit
/// that is not part of a `%XX` escape gets its low bit flipped; text without one gets a byte added.
fn flip_one_byte(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let escaped = |i: usize| (i >= 1 && bytes[i - 1] == b'%') || (i >= 2 && bytes[i - 2] == b'%');
    match (0..bytes.len())
        .rev()
        .find(|&i| bytes[i].is_ascii_alphanumeric() && !escaped(i))
    {
        Some(i) => bytes[i] ^= 0x01,
        None => bytes.push(b'x'),
    }
    String::from_utf8(bytes).unwrap()
}

/// One location's parameters; the same name twice in one location is rejected by the server.
fn unique_params(pairs: Vec<(String, String)>, context: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        assert!(
            map.insert(key.clone(), value).is_none(),
            "{context}: duplicate {key}"
        );
    }
    map
}

/// Server-side V1 extraction (protocol.md §3): decoded query, then the form body on top (body wins).
/// Returns the signed parameters (without `Signature`) and the provided signature.
fn v1_params_from_wire(wire: &Wire, context: &str) -> (BTreeMap<String, String>, String) {
    let (_, query) = split_target(&wire.path);
    let mut params = unique_params(form_decode(query.as_bytes()).unwrap(), context);
    let is_form = header(&wire.headers, "content-type")
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        params.extend(unique_params(form_decode(wire.body.as_bytes()).unwrap(), context));
    }
    let signature = params
        .remove("Signature")
        .unwrap_or_else(|| panic!("{context}: no Signature"));
    (params, signature)
}

fn v1_wire_verifies(wire: &Wire, secret: &AccessKeySecret, context: &str) -> bool {
    let (params, signature) = v1_params_from_wire(wire, context);
    v1::verify(secret, &v1::string_to_sign(&wire.method, &params), &signature)
}

/// Server-side V3 verification (protocol.md §5.2) of a captured request.
fn v3_wire_verifies(wire: &Wire, secret: &AccessKeySecret) -> bool {
    let (path, query) = split_target(&wire.path);
    let query = form_decode(query.as_bytes()).unwrap();
    let authorization = v3::parse_authorization(header(&wire.headers, "authorization").unwrap()).unwrap();
    let algorithm = authorization.algorithm;
    let Ok(headers) = v3::canonical_headers(&authorization.signed_headers, &wire.headers) else {
        return false;
    };
    let request = v3::canonical_request(
        &wire.method,
        path,
        &v3::canonical_query(&query),
        &headers,
        &authorization.signed_headers,
        &v3::hash_hex(algorithm, wire.body.as_bytes()),
    );
    v3::verify(
        algorithm,
        secret,
        &v3::string_to_sign(algorithm, &request),
        &authorization.signature,
    )
}

/// Rewrites the query of `wire` with the value of pair `index` flipped, as a client would send it.
fn with_query_value_flipped(wire: &Wire, index: usize) -> Wire {
    let (path, query) = split_target(&wire.path);
    let mut pairs = form_decode(query.as_bytes()).unwrap();
    pairs[index].1 = flip_one_byte(&pairs[index].1);
    Wire {
        path: format!("{path}?{}", form_encode(&pairs)),
        ..wire.clone()
    }
}

fn with_other_method(wire: &Wire) -> Wire {
    let method = if wire.method == "GET" { "POST" } else { "GET" };
    Wire {
        method: method.to_owned(),
        ..wire.clone()
    }
}

#[test]
fn the_vector_files_hold_every_expected_vector() {
    let v1_vectors = rpc_v1();
    let v3_vectors = acs3();
    assert_eq!(v1_vectors.len(), 14);
    assert_eq!(v1_vectors.iter().filter(|v| v.wire.is_some()).count(), 13);
    assert_eq!(v3_vectors.len(), 10);
    assert_eq!(v3_vectors.iter().filter(|v| v.wire.is_some()).count(), 8);
    assert_eq!(load::<PercentVector>("percent_encoding.json").len(), 22);
}

#[test]
fn every_rpc_v1_vector_matches_each_intermediate_stage() {
    for vector in rpc_v1() {
        let name = &vector.name;
        let inputs = &vector.inputs;
        let secret = AccessKeySecret::new(inputs.access_key_secret.clone());
        assert_eq!(
            vector.hmac_key,
            format!("{}&", inputs.access_key_secret),
            "{name}"
        );
        assert_eq!(
            v1::canonicalized_query(&inputs.signed_params),
            vector.canonicalized_query_string,
            "{name}"
        );
        let sts = v1::string_to_sign(&inputs.http_method, &inputs.signed_params);
        assert_eq!(sts, vector.string_to_sign, "{name}");
        assert_eq!(v1::sign(&secret, &sts), vector.signature, "{name}");
        assert!(v1::verify(&secret, &sts, &vector.signature), "{name}");
    }
}

#[test]
fn every_rpc_v1_wire_request_decodes_to_the_signed_parameters_and_verifies() {
    for vector in rpc_v1() {
        let Some(wire) = &vector.wire else { continue };
        let name = &vector.name;
        let secret = AccessKeySecret::new(vector.inputs.access_key_secret.clone());
        let (params, signature) = v1_params_from_wire(wire, name);
        assert_eq!(params, vector.inputs.signed_params, "{name}");
        assert_eq!(signature, vector.signature, "{name}");
        assert_eq!(wire.method, vector.inputs.http_method, "{name}");
        assert!(v1_wire_verifies(wire, &secret, name), "{name}");
    }
}

#[test]
fn tea_wire_forms_are_exactly_what_form_encode_produces() {
    for vector in rpc_v1().into_iter().filter(|v| v.name.starts_with("tea_")) {
        let Some(wire) = &vector.wire else { continue };
        let (_, query) = split_target(&wire.path);
        assert_eq!(
            form_encode(&form_decode(query.as_bytes()).unwrap()),
            query,
            "{}",
            vector.name
        );
        assert_eq!(
            form_encode(&form_decode(wire.body.as_bytes()).unwrap()),
            wire.body,
            "{}",
            vector.name
        );
    }
    for vector in acs3() {
        let Some(wire) = &vector.wire else { continue };
        let (_, query) = split_target(&wire.path);
        assert_eq!(
            form_encode(&form_decode(query.as_bytes()).unwrap()),
            query,
            "{}",
            vector.name
        );
    }
}

#[test]
fn changing_any_byte_of_a_signed_rpc_v1_value_body_or_method_is_rejected() {
    for vector in rpc_v1() {
        let Some(wire) = &vector.wire else { continue };
        let name = &vector.name;
        let secret = AccessKeySecret::new(vector.inputs.access_key_secret.clone());
        let (_, query) = split_target(&wire.path);
        let body_pairs = form_decode(wire.body.as_bytes()).unwrap();
        let query_pairs = form_decode(query.as_bytes()).unwrap();
        for (index, (key, _)) in query_pairs.iter().enumerate() {
            if key == "Signature" {
                continue;
            }
            let tampered = with_query_value_flipped(wire, index);
            // A query value shadowed by the body is not signed: body wins (protocol.md §3).
            let shadowed = body_pairs.iter().any(|(body_key, _)| body_key == key);
            assert_eq!(
                v1_wire_verifies(&tampered, &secret, name),
                shadowed,
                "{name}: query {key}"
            );
        }
        if !wire.body.is_empty() {
            let tampered = Wire {
                body: flip_one_byte(&wire.body),
                ..wire.clone()
            };
            assert!(!v1_wire_verifies(&tampered, &secret, name), "{name}: body");
        }
        assert!(
            !v1_wire_verifies(&with_other_method(wire), &secret, name),
            "{name}: method"
        );
        let other_secret = AccessKeySecret::new(flip_one_byte(secret.expose()));
        assert!(!v1_wire_verifies(wire, &other_secret, name), "{name}: secret");
    }
}

#[test]
fn every_acs3_vector_matches_each_intermediate_stage() {
    for vector in acs3() {
        let name = &vector.name;
        let inputs = &vector.inputs;
        let secret = AccessKeySecret::new(inputs.access_key_secret.clone());
        let algorithm = v3::Algorithm::parse(&inputs.algorithm).unwrap();
        assert_eq!(algorithm.as_str(), inputs.algorithm, "{name}");

        let query: Vec<(String, String)> = inputs.query_decoded.clone().into_iter().collect();
        let canonical_query = v3::canonical_query(&query);
        assert_eq!(canonical_query, vector.canonical_query_string, "{name}");

        let headers: Vec<(String, String)> = inputs.signed_header_values.clone().into_iter().collect();
        let canonical_headers = v3::canonical_headers(&inputs.signed_headers, &headers).unwrap();
        assert_eq!(canonical_headers, vector.canonical_headers, "{name}");

        let hashed_payload = v3::hash_hex(algorithm, inputs.body.as_bytes());
        assert_eq!(hashed_payload, vector.hashed_payload, "{name}");

        let request = v3::canonical_request(
            &inputs.http_method,
            &inputs.canonical_uri,
            &canonical_query,
            &canonical_headers,
            &inputs.signed_headers,
            &hashed_payload,
        );
        assert_eq!(request, vector.canonical_request, "{name}");
        assert_eq!(
            v3::hash_hex(algorithm, request.as_bytes()),
            vector.hashed_canonical_request,
            "{name}"
        );

        let sts = v3::string_to_sign(algorithm, &request);
        assert_eq!(sts, vector.string_to_sign, "{name}");
        assert_eq!(v3::sign(algorithm, &secret, &sts), vector.signature, "{name}");
        assert!(v3::verify(algorithm, &secret, &sts, &vector.signature), "{name}");

        let expected = v3::Authorization {
            algorithm,
            access_key_id: inputs.access_key_id.clone(),
            signed_headers: inputs.signed_headers.clone(),
            signature: vector.signature.clone(),
        };
        assert_eq!(
            v3::parse_authorization(&vector.authorization),
            Ok(expected),
            "{name}"
        );
    }
}

#[test]
fn every_acs3_wire_request_rebuilds_to_the_same_stages_and_verifies() {
    for vector in acs3() {
        let Some(wire) = &vector.wire else { continue };
        let name = &vector.name;
        let secret = AccessKeySecret::new(vector.inputs.access_key_secret.clone());

        let (path, query) = split_target(&wire.path);
        assert_eq!(path, vector.inputs.canonical_uri, "{name}");
        let query = unique_params(form_decode(query.as_bytes()).unwrap(), name);
        assert_eq!(query, vector.inputs.query_decoded, "{name}");

        let authorization = header(&wire.headers, "authorization").unwrap();
        assert_eq!(authorization, vector.authorization, "{name}");
        let parsed = v3::parse_authorization(authorization).unwrap();
        assert_eq!(parsed.access_key_id, vector.inputs.access_key_id, "{name}");
        let canonical_headers = v3::canonical_headers(&parsed.signed_headers, &wire.headers).unwrap();
        assert_eq!(canonical_headers, vector.canonical_headers, "{name}");

        let hashed_payload = v3::hash_hex(parsed.algorithm, wire.body.as_bytes());
        assert_eq!(hashed_payload, vector.hashed_payload, "{name}");
        assert_eq!(
            header(&wire.headers, "x-acs-content-sha256"),
            Some(hashed_payload.as_str()),
            "{name}"
        );

        assert!(v3_wire_verifies(wire, &secret), "{name}");
    }
}

#[test]
fn changing_any_byte_of_a_signed_acs3_header_query_value_body_or_method_is_rejected() {
    for vector in acs3() {
        let Some(wire) = &vector.wire else { continue };
        let name = &vector.name;
        let secret = AccessKeySecret::new(vector.inputs.access_key_secret.clone());

        for signed in &vector.inputs.signed_headers {
            let mut tampered = wire.clone();
            for (header_name, value) in &mut tampered.headers {
                if header_name.eq_ignore_ascii_case(signed) {
                    *value = flip_one_byte(value);
                }
            }
            assert!(!v3_wire_verifies(&tampered, &secret), "{name}: header {signed}");
        }
        let (_, query) = split_target(&wire.path);
        for index in 0..form_decode(query.as_bytes()).unwrap().len() {
            let tampered = with_query_value_flipped(wire, index);
            assert!(
                !v3_wire_verifies(&tampered, &secret),
                "{name}: query pair {index}"
            );
        }
        let tampered = Wire {
            body: flip_one_byte(&wire.body),
            ..wire.clone()
        };
        assert!(!v3_wire_verifies(&tampered, &secret), "{name}: body");
        assert!(
            !v3_wire_verifies(&with_other_method(wire), &secret),
            "{name}: method"
        );
        let other_secret = AccessKeySecret::new(flip_one_byte(secret.expose()));
        assert!(!v3_wire_verifies(wire, &other_secret), "{name}: secret");
    }
}

#[test]
fn every_percent_encoding_entry_encodes_as_listed_and_its_wire_form_decodes_back() {
    for vector in load::<PercentVector>("percent_encoding.json") {
        let input = &vector.input;
        let wire = &vector.form_urlencoded_wire_form;
        assert_eq!(percent_encode(input), vector.encoded, "{input:?}");
        let expected = vec![("k".to_owned(), input.clone())];
        assert_eq!(
            form_decode(format!("k={wire}").as_bytes()),
            Ok(expected.clone()),
            "{input:?}"
        );
        assert_eq!(
            form_decode(format!("k={}", vector.encoded).as_bytes()),
            Ok(expected.clone()),
            "{input:?}"
        );
        assert_eq!(form_encode(&expected), format!("k={wire}"), "{input:?}");
    }
}
