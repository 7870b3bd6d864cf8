//! The AccessKey secret as a type that is hard to leak.

use std::fmt;

use zeroize::Zeroizing;

/// An AccessKey secret. Zeroed on drop, Debug prints a placeholder, never the value; no Display,
/// no Serialize, no PartialEq (comparing secrets is the verifier's job, in constant time).
#[derive(Clone)]
pub struct AccessKeySecret(Zeroizing<String>);

impl AccessKeySecret {
    /// Takes ownership so the only copy of the value is the one zeroed on drop.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The single reader of the value, so every use of the secret is grep-able.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKeySecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_the_secret() {
        let secret = AccessKeySecret::new("hunter2-very-secret".to_owned());
        let printed = format!("{secret:?} {secret:#?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn expose_and_clone_return_the_original_value() {
        let secret = AccessKeySecret::new("testsecret".to_owned());
        let copy = secret.clone();
        drop(secret);
        assert_eq!(copy.expose(), "testsecret");
    }
}
