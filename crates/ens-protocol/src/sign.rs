//! Request signatures: V1 (classic RPC, HMAC-SHA1) and V3 (ACS3-HMAC-SHA256 / ACS3-HMAC-SM3).
//!
//! Pure string building and HMAC, no I/O: the server verifier and the test clients share it, so a
//! signature the server accepts is by construction one a client here can produce.

pub mod v1;
pub mod v3;

use hmac::digest::KeyInit;
use hmac::Mac;
use subtle::ConstantTimeEq;

/// HMAC tag of `message`. HMAC accepts keys of any length, so the error arm never runs; it yields
/// an empty tag, which `signatures_match` refuses, so even then nothing could verify.
fn mac_tag<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
    match <M as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Constant-time equality so response timing does not reveal how much of a guess was right.
fn signatures_match(expected: &str, provided: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(provided.as_bytes()))
}
