//! Accounts and the AccessKeys that act for them.

use std::fmt;

use crate::validation::InvalidField;

/// An Alibaba Cloud account: 16 decimal digits, as the cloud prints them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

impl AccountId {
    /// Accepts 1 to 20 decimal digits (the cloud shows 14 to 16; older accounts are shorter).
    ///
    /// # Errors
    /// `InvalidField` naming `field` when the value is not such a number.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidField::new(field, "an account ID is a decimal number"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The ID as the wire and the store spell it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The longest AccessKey ID accepted: the cloud's own are 24 to 30 characters, STS ones
/// longer; anything past this is refused before it is looked up or stored.
pub const MAX_ACCESS_KEY_ID_CHARS: usize = 128;

/// The public half of an AccessKey pair; safe to log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessKeyId(String);

impl AccessKeyId {
    /// Accepts the printable ASCII IDs the SDKs send (the cloud issues `LTAI` + 20 characters).
    ///
    /// # Errors
    /// `InvalidField` for `AccessKeyId` when the value is empty, too long or not printable.
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        if value.is_empty()
            || value.len() > MAX_ACCESS_KEY_ID_CHARS
            || !value.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidField::new("AccessKeyId", "not a valid AccessKey ID"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The ID as sent on the wire.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccessKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A RAM user's name, unique within its account: 1 to 64 letters, digits, `.`, `_`, `-`, `@`
/// (the cloud's alphabet for user names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RamUserName(String);

impl RamUserName {
    /// Validates a user name.
    ///
    /// # Errors
    /// `InvalidField` naming `field` for anything outside the alphabet or length.
    pub fn parse(field: &'static str, value: &str) -> Result<Self, InvalidField> {
        if value.is_empty()
            || value.len() > 64
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
        {
            return Err(InvalidField::new(
                field,
                "a user name is 1 to 64 letters, digits, '.', '_', '-' or '@'",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The name as stored and shown.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RamUserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who acts: an account's owner, or one of its RAM users (whose rights come from policies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account acted in.
    pub account: AccountId,
    /// The RAM user, or `None` for the account's owner.
    pub user: Option<RamUserName>,
}

/// Whether a key may sign requests; an inactive key is kept so its owner can re-enable it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKeyStatus {
    /// Signs requests.
    Active,
    /// Refused with `InvalidAccessKeyId.Inactive`.
    Inactive,
}

impl AccessKeyStatus {
    /// The cloud's spelling, also used in the store.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Inactive => "Inactive",
        }
    }

    /// Reads the stored spelling back; anything else is treated as inactive, failing closed.
    #[must_use]
    pub fn from_stored(value: &str) -> Self {
        if value == "Active" {
            Self::Active
        } else {
            Self::Inactive
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_decimal_numbers() {
        assert!(AccountId::parse("AliyunId", "1234567890123456").is_ok());
        assert!(AccountId::parse("AliyunId", "12a4").is_err());
        assert!(AccountId::parse("AliyunId", "").is_err());
        assert!(AccountId::parse("AliyunId", &"1".repeat(21)).is_err());
    }

    #[test]
    fn ram_user_names_follow_the_cloud_alphabet() {
        assert!(RamUserName::parse("--user", "reader.team-1@corp").is_ok());
        assert!(RamUserName::parse("--user", "").is_err());
        assert!(RamUserName::parse("--user", "has space").is_err());
        assert!(RamUserName::parse("--user", &"u".repeat(65)).is_err());
    }

    #[test]
    fn unknown_stored_key_status_fails_closed() {
        assert_eq!(AccessKeyStatus::from_stored("Active"), AccessKeyStatus::Active);
        assert_eq!(AccessKeyStatus::from_stored("active"), AccessKeyStatus::Inactive);
    }
}
