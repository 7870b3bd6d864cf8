//! Why a policy document was refused.

/// A policy document that breaks the RAM grammar or uses something this service cannot enforce.
///
/// Every variant names where the problem is (`at`, a path such as `Statement[1].Condition`) because
/// the message goes back to whoever wrote the policy, and "invalid policy" alone is useless to them.
/// Refusing is deliberate: a statement we silently ignored could grant or fail to deny access.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// RAM caps custom policies at 6144 characters; we keep the same limit so policies move freely.
    #[error("policy document is {length} characters long; the limit is {max}")]
    TooLong {
        /// Characters in the submitted text.
        length: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not one well-formed JSON value (duplicate object keys count as malformed).
    #[error("policy document is not valid JSON: {0}")]
    Syntax(String),
    /// A required element is absent.
    #[error("{at}: missing required key \"{key}\"")]
    MissingKey {
        /// Path of the object that lacks the key.
        at: String,
        /// The key the grammar requires.
        key: &'static str,
    },
    /// A key the grammar does not know; refused so a typo cannot silently drop a restriction.
    #[error("{at}: unknown key {key:?}")]
    UnknownKey {
        /// Path of the object holding the key.
        at: String,
        /// The key as written.
        key: String,
    },
    /// A key RAM knows but that has no meaning for the identity policies this service evaluates.
    #[error("{at}: {key:?} is not supported: {reason}")]
    UnsupportedKey {
        /// Path of the object holding the key.
        at: String,
        /// The key as written.
        key: &'static str,
        /// What to write instead.
        reason: &'static str,
    },
    /// Two keys that exclude each other, such as `Action` and `NotAction`.
    #[error("{at}: \"{first}\" and \"{second}\" cannot both be given")]
    Conflict {
        /// Path of the statement.
        at: String,
        /// One key.
        first: &'static str,
        /// The other key.
        second: &'static str,
    },
    /// An element of the wrong shape or value, e.g. `Statement[0].Effect must be Allow or Deny`.
    #[error("{at} must be {expected}")]
    Invalid {
        /// Path of the element.
        at: String,
        /// What the grammar wants there.
        expected: &'static str,
    },
    /// A string element that does not parse as what its position requires.
    #[error("{at}: {value:?} is not {expected}")]
    BadValue {
        /// Path of the element.
        at: String,
        /// The value as written.
        value: String,
        /// What the grammar wants there.
        expected: &'static str,
    },
    /// A condition operator this service does not evaluate (RAM has more; we refuse rather than guess).
    #[error("{at}: unsupported operator {operator:?}")]
    UnsupportedOperator {
        /// Path of the `Condition` block.
        at: String,
        /// The operator as written.
        operator: String,
    },
    /// A condition key this service has no value for in its request context.
    #[error("{at}: unsupported condition key {key:?}")]
    UnsupportedConditionKey {
        /// Path of the operator block.
        at: String,
        /// The key as written.
        key: String,
    },
    /// A supported key under an operator of the wrong type, e.g. `acs:SourceIp` under `Bool`.
    #[error("{at}: condition key {key:?} cannot be used with operator \"{operator}\"")]
    KeyNotForOperator {
        /// Path of the operator block.
        at: String,
        /// The key as written.
        key: String,
        /// The operator.
        operator: &'static str,
    },
    /// The same condition key twice under one operator (keys are case-insensitive, JSON keys are not).
    #[error("{at}: condition key {key:?} is given more than once")]
    DuplicateConditionKey {
        /// Path of the operator block.
        at: String,
        /// The second spelling met.
        key: String,
    },
}
