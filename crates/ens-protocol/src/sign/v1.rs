//! RPC signature V1 (HMAC-SHA1), protocol.md §4. Tea with `signature_algorithm='v2'` and the
//! core SDK sign this way.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::Hmac;
use sha1::Sha1;
use zeroize::Zeroizing;

use super::{mac_tag, signatures_match};
use crate::encoding::percent_encode;
use crate::secret::AccessKeySecret;

/// `pe(k)=pe(v)` joined by '&'. A `BTreeMap<String, _>` iterates in byte order of the decoded
/// names, which is exactly the order §4.2 requires; empty values stay in (core signs `SignatureType=`).
pub fn canonicalized_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(key, value)| format!("{}={}", percent_encode(key), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `METHOD&%2F&pe(cqs)`. `method` is the request method as sent (the SDKs use GET or POST);
/// `params` must already exclude `Signature`.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    format!(
        "{method}&{}&{}",
        percent_encode("/"),
        percent_encode(&canonicalized_query(params))
    )
}

/// `base64(HMAC-SHA1(secret + "&", sts))`; the trailing '&' is where a (never used) token
/// secret would go in the original OAuth-like scheme.
pub fn sign(secret: &AccessKeySecret, string_to_sign: &str) -> String {
    let exposed = secret.expose();
    let mut key = Zeroizing::new(Vec::with_capacity(exposed.len() + 1));
    key.extend_from_slice(exposed.as_bytes());
    key.push(b'&');
    STANDARD.encode(mac_tag::<Hmac<Sha1>>(&key, string_to_sign.as_bytes()))
}

/// Constant-time comparison (subtle) of the expected signature with the one the caller sent
/// (the base64 text of the `Signature` parameter, after URL-decoding).
pub fn verify(secret: &AccessKeySecret, string_to_sign: &str, provided: &str) -> bool {
    signatures_match(&sign(secret, string_to_sign), provided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn secret() -> AccessKeySecret {
        AccessKeySecret::new("testsecret".to_owned())
    }

    #[test]
    fn the_public_documentation_example_signs_to_the_documented_value() {
        let example = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Version", "2014-05-26"),
        ]);
        let sts = string_to_sign("GET", &example);
        assert_eq!(sign(&secret(), &sts), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
        assert!(verify(&secret(), &sts, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="));
    }

    #[test]
    fn names_sort_case_sensitively_and_empty_values_are_kept() {
        let query = params(&[("a", "1"), ("B", ""), ("A", "x y")]);
        assert_eq!(canonicalized_query(&query), "A=x%20y&B=&a=1");
    }

    #[test]
    fn the_query_is_encoded_a_second_time_inside_the_string_to_sign() {
        let query = params(&[("Name", "a b")]);
        assert_eq!(string_to_sign("POST", &query), "POST&%2F&Name%3Da%2520b");
    }

    #[test]
    fn verification_rejects_a_wrong_secret_an_empty_or_a_truncated_signature() {
        let sts = string_to_sign("GET", &params(&[("Action", "DescribeImages")]));
        let good = sign(&secret(), &sts);
        assert!(verify(&secret(), &sts, &good));
        assert!(!verify(&AccessKeySecret::new("other".to_owned()), &sts, &good));
        assert!(!verify(&secret(), &sts, ""));
        assert!(!verify(&secret(), &sts, &good[..good.len() - 1]));
        assert!(!verify(&secret(), &sts, &format!("{good}=")));
    }

    proptest! {
        #[test]
        fn the_string_to_sign_does_not_depend_on_insertion_order(
            (entries, shuffled) in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..10)
                .prop_flat_map(|map| {
                    let entries: Vec<_> = map.into_iter().collect();
                    (Just(entries.clone()), Just(entries).prop_shuffle())
                })
        ) {
            let mut in_order = BTreeMap::new();
            for (key, value) in entries {
                in_order.insert(key, value);
            }
            let mut in_random_order = BTreeMap::new();
            for (key, value) in shuffled {
                in_random_order.insert(key, value);
            }
            prop_assert_eq!(string_to_sign("POST", &in_order), string_to_sign("POST", &in_random_order));
        }

        #[test]
        fn changing_any_one_value_changes_the_signature(
            map in proptest::collection::btree_map("[A-Za-z.]{1,12}", any::<String>(), 1..10),
            pick in any::<proptest::sample::Index>(),
            replacement in any::<String>(),
        ) {
            let key = pick.get(&map.keys().cloned().collect::<Vec<_>>()).clone();
            prop_assume!(map[&key] != replacement);
            let mut changed = map.clone();
            changed.insert(key, replacement);
            let original = sign(&secret(), &string_to_sign("GET", &map));
            let tampered = string_to_sign("GET", &changed);
            prop_assert_ne!(&original, &sign(&secret(), &tampered));
            prop_assert!(!verify(&secret(), &tampered, &original));
        }
    }
}
