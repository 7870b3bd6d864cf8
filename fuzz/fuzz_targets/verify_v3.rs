//! The V3 (ACS3-HMAC-SHA256 and ACS3-HMAC-SM3) verifier, through `parse_call` and
//! `Credentials::verify`.
//!
//! Input: edit lines, then a request (see `ens_images_fuzz::script`). The request is signed
//! with the test secret by the spec's rules (its `Authorization` header, if it has one, says
//! which algorithm and which headers), so the success path is reached; it must then be accepted.
//! After the edits, a request the server still accepts must be one the spec accepts, under the
//! signing secret, with the same action, parameters, nonce and time.
#![no_main]

use ens_images_fuzz::signing::{run, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| run(data, Version::V3));
