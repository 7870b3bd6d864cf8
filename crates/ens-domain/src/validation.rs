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

/// Compute types the cloud documents for images and instances.
pub const COMPUTE_TYPES: &[&str] = &[
    "ens_vm",
    "ens",
    "arm_vm",
    "bare_metal",
    "arm_bare_metal",
    "pcfarm",
];

/// Longest free-text field an operator may register (OS version, description).
pub const MAX_TEXT_CHARS: usize = 256;

/// Architecture and platform names (`x86_64`, `centos`): 1 to 64 letters, digits or `_`.
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_short_name(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.is_empty() || value.len() > 64 || !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(InvalidField::new(
            field,
            format!("must be 1 to 64 letters, digits or '_', got {value:?}"),
        ));
    }
    Ok(())
}

/// Checks a RAM policy name: 1 to 128 letters, digits or `-`. One rule for the admin
/// command, the control API and state documents.
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_policy_name(field: &'static str, name: &str) -> Result<(), InvalidField> {
    if name.is_empty() || name.len() > 128 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(InvalidField::new(
            field,
            format!("a policy name is 1 to 128 letters, digits or '-', got {name:?}"),
        ));
    }
    Ok(())
}

/// One of the documented compute types.
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_compute_type(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if COMPUTE_TYPES.contains(&value) {
        Ok(())
    } else {
        Err(InvalidField::new(
            field,
            format!("must be one of {COMPUTE_TYPES:?}, got {value:?}"),
        ))
    }
}

/// Free text an operator registers and every answer then carries: at most
/// [`MAX_TEXT_CHARS`] characters and no control character, which XML cannot carry and a
/// terminal would act on.
///
/// # Errors
/// `InvalidField` naming `field`.
pub fn validate_text(field: &'static str, value: &str) -> Result<(), InvalidField> {
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(InvalidField::new(
            field,
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    if let Some(control) = value.chars().find(|c| c.is_control()) {
        return Err(InvalidField::new(
            field,
            format!(
                "must not contain control characters, found U+{:04X}",
                u32::from(control)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_fields_follow_the_api_rules() {
        assert!(validate_short_name("Platform", "centos").is_ok());
        assert!(validate_short_name("Platform", "cent os").is_err());
        assert!(validate_short_name("Platform", "").is_err());
        assert!(validate_compute_type("ComputeType", "arm_vm").is_ok());
        assert!(validate_compute_type("ComputeType", "gpu").is_err());
        assert!(validate_text("OSVersion", "22.04 LTS (Jammy)").is_ok());
        let refused = validate_text("OSVersion", "7.9\u{1b}[31m").unwrap_err();
        assert_eq!(refused.field, "OSVersion");
        assert!(refused.reason.contains("U+001B"), "{}", refused.reason);
        assert!(validate_text("Description", "tab\there").is_err());
        assert!(validate_text("Description", "\u{85}").is_err());
        assert!(validate_text("Description", &"x".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(validate_text("Description", &"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }
}
