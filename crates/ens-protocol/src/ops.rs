//! Request parsing and response building for each operation.
//!
//! Each operation module owns both directions for its call: reading validated domain values
//! out of the business parameters (`from_params`), writing them back (`to_params`, for
//! clients), and turning the domain result into the response tree, so the server and any
//! client cannot disagree about names or JSON types.

pub mod describe_images;

use std::collections::BTreeMap;

/// A business parameter, treating an empty value as absent (as the SDKs never send one).
pub(crate) fn optional<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}
