//! The one validation error of the domain.

/// A value that breaks the rules of the field it was given for.
///
/// `field` is the API parameter name (`PageSize`, `ImageName`, ...) because the cloud names the
/// parameter in its error code (`InvalidParameter.PageSize`); the domain knows the names of its
/// own fields, not how the wire spells the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct InvalidField {
    /// The parameter name as the API spells it.
    pub field: &'static str,
    /// Why the value was refused, for logs and operator messages.
    pub reason: String,
}

impl InvalidField {
    /// Builds the error for `field` with a human reason.
    #[must_use]
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// True for the identifier alphabet the cloud uses in image, snapshot and instance IDs.
pub(crate) fn is_identifier(value: &str, max_len: usize) -> bool {
    !value.is_empty()
        && value.len() <= max_len
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}
