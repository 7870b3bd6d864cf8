//! `ModifyImageSharePermission`: shares an image with accounts, or revokes a share.

use std::collections::BTreeMap;

use ens_domain::{AccountId, ImageId};

use super::{optional, required_image_id};
use crate::error::ApiError;
use crate::render::{Body, Value};

/// Most accounts one call may add.
pub const MAX_ADD_ACCOUNTS: usize = 10;

/// A validated `ModifyImageSharePermission` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModifyImageSharePermissionRequest {
    /// `ImageId`: the image.
    pub image_id: ImageId,
    /// `AddAccounts`: comma-separated account IDs to share with.
    pub add: Vec<AccountId>,
    /// `RemoveAccounts`: the account to revoke (the cloud takes one per call).
    pub remove: Vec<AccountId>,
}

fn accounts(
    params: &BTreeMap<String, String>,
    name: &'static str,
    max: usize,
) -> Result<Vec<AccountId>, ApiError> {
    let Some(list) = optional(params, name) else {
        return Ok(Vec::new());
    };
    let mut parsed: Vec<AccountId> = Vec::with_capacity(max);
    for item in list.split(',').map(str::trim) {
        // Refused at the first item over the bound: a long list costs no more than a full one.
        if parsed.len() == max {
            return Err(ApiError::invalid_parameter(
                name,
                &format!("at most {max} account(s) per call"),
            ));
        }
        let account = AccountId::parse(name, item)?;
        if parsed.contains(&account) {
            return Err(ApiError::invalid_parameter(
                name,
                &format!("account {item} is listed twice"),
            ));
        }
        parsed.push(account);
    }
    Ok(parsed)
}

impl ModifyImageSharePermissionRequest {
    /// Reads and validates the business parameters.
    ///
    /// # Errors
    /// `MissingParameter` when neither list is given, `InvalidParameter.<Name>` for bad IDs,
    /// too many accounts, or an account both added and removed.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let image_id = required_image_id(params)?;
        let add = accounts(params, "AddAccounts", MAX_ADD_ACCOUNTS)?;
        let remove = accounts(params, "RemoveAccounts", 1)?;
        if add.is_empty() && remove.is_empty() {
            return Err(ApiError::missing_parameter("AddAccounts or RemoveAccounts"));
        }
        if let Some(both) = add.iter().find(|account| remove.contains(account)) {
            return Err(ApiError::invalid_parameter(
                "RemoveAccounts",
                &format!("account {both} is both added and removed"),
            ));
        }
        Ok(Self {
            image_id,
            add,
            remove,
        })
    }
}

/// Only `RequestId`, as the SDK model declares.
#[must_use]
pub fn response<'a>(request_id: &'a str) -> Body<'a> {
    Body {
        action: "ModifyImageSharePermission",
        fields: vec![("RequestId", Value::str(request_id))],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<ModifyImageSharePermissionRequest, ApiError> {
        ModifyImageSharePermissionRequest::from_params(
            &pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        )
    }

    #[test]
    fn add_accounts_is_a_comma_separated_list() {
        let request = parse(&[("ImageId", "m-1"), ("AddAccounts", "1122334455,6677889900")]).unwrap();
        assert_eq!(request.add.len(), 2);
        assert!(request.remove.is_empty());
    }

    #[test]
    fn bad_lists_are_refused_by_name() {
        let code = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err().code.wire_code().into_owned();
        assert_eq!(code(&[("ImageId", "m-1")]), "MissingParameter");
        assert_eq!(
            code(&[("ImageId", "m-1"), ("AddAccounts", "12,x")]),
            "InvalidParameter.AddAccounts"
        );
        assert_eq!(
            code(&[("ImageId", "m-1"), ("AddAccounts", "12,12")]),
            "InvalidParameter.AddAccounts"
        );
        let eleven = (1..=11).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        assert_eq!(
            code(&[("ImageId", "m-1"), ("AddAccounts", &eleven)]),
            "InvalidParameter.AddAccounts"
        );
        // Refused at the eleventh item, before the malformed ones after it are even read.
        let huge = format!("{eleven},{}", vec!["x"; 50_000].join(","));
        let refused = parse(&[("ImageId", "m-1"), ("AddAccounts", &huge)]).unwrap_err();
        assert!(refused.message.contains("at most 10"), "{}", refused.message);
        assert_eq!(
            code(&[("ImageId", "m-1"), ("RemoveAccounts", "1,2")]),
            "InvalidParameter.RemoveAccounts"
        );
        assert_eq!(
            code(&[("ImageId", "m-1"), ("AddAccounts", "5"), ("RemoveAccounts", "5")]),
            "InvalidParameter.RemoveAccounts"
        );
    }
}
