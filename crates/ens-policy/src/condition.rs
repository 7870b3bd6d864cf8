//! The `Condition` block: the operators and keys this service can enforce.
//!
//! Values are parsed once, when the document is accepted, so evaluation has nothing left that
//! can fail. Each supported operator applies to exactly one key, which makes a mismatched pair
//! (say `Bool` on `acs:SourceIp`) a parse error rather than a condition that never matches.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::OffsetDateTime;

use crate::document::one_or_many;
use crate::error::PolicyError;
use crate::eval::RequestContext;

/// A condition operator, spelled (case-sensitively) as RAM spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// The source address lies in one of the listed networks.
    IpAddress,
    /// The source address is known and lies in none of the listed networks.
    NotIpAddress,
    /// Now is strictly after one of the listed instants.
    DateGreaterThan,
    /// Now is at or after one of the listed instants.
    DateGreaterThanEquals,
    /// Now is strictly before one of the listed instants.
    DateLessThan,
    /// Now is at or before one of the listed instants.
    DateLessThanEquals,
    /// The boolean key equals one of the listed values.
    Bool,
}

impl Operator {
    const ALL: [Self; 7] = [
        Self::IpAddress,
        Self::NotIpAddress,
        Self::DateGreaterThan,
        Self::DateGreaterThanEquals,
        Self::DateLessThan,
        Self::DateLessThanEquals,
        Self::Bool,
    ];

    /// The name as it appears in policy documents.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IpAddress => "IpAddress",
            Self::NotIpAddress => "NotIpAddress",
            Self::DateGreaterThan => "DateGreaterThan",
            Self::DateGreaterThanEquals => "DateGreaterThanEquals",
            Self::DateLessThan => "DateLessThan",
            Self::DateLessThanEquals => "DateLessThanEquals",
            Self::Bool => "Bool",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.as_str() == name)
    }

    /// The one key each operator can test here.
    fn key(self) -> ConditionKey {
        match self {
            Self::IpAddress | Self::NotIpAddress => ConditionKey::SourceIp,
            Self::DateGreaterThan
            | Self::DateGreaterThanEquals
            | Self::DateLessThan
            | Self::DateLessThanEquals => ConditionKey::CurrentTime,
            Self::Bool => ConditionKey::SecureTransport,
        }
    }
}

/// A request attribute a condition can test; RAM spells keys case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConditionKey {
    /// `acs:SourceIp`: the client address.
    SourceIp,
    /// `acs:CurrentTime`: when the request is evaluated.
    CurrentTime,
    /// `acs:SecureTransport`: whether the request came over HTTPS.
    SecureTransport,
}

impl ConditionKey {
    const ALL: [Self; 3] = [Self::SourceIp, Self::CurrentTime, Self::SecureTransport];

    /// The canonical spelling from the RAM documentation.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SourceIp => "acs:SourceIp",
            Self::CurrentTime => "acs:CurrentTime",
            Self::SecureTransport => "acs:SecureTransport",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|key| key.as_str().eq_ignore_ascii_case(name))
    }
}

/// One operator applied to one key; a statement holds these in a conjunction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The key as the author spelled it, so the document serializes back as written.
    key_text: String,
    /// The values as written (strings, or JSON booleans under `Bool`), for serialization.
    values: Vec<Value>,
    test: Test,
}

/// The parsed values, shaped by the operator so a mismatch cannot be represented.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Test {
    Ip {
        negated: bool,
        nets: Vec<IpNet>,
    },
    Time {
        order: Order,
        instants: Vec<OffsetDateTime>,
    },
    Bool(Vec<bool>),
}

/// Where now must lie relative to a listed instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    After,
    AtOrAfter,
    Before,
    AtOrBefore,
}

impl Condition {
    /// The operator, recovered from the parsed test (each variant belongs to known operators).
    #[must_use]
    pub fn operator(&self) -> Operator {
        match &self.test {
            Test::Ip { negated: false, .. } => Operator::IpAddress,
            Test::Ip { negated: true, .. } => Operator::NotIpAddress,
            Test::Time {
                order: Order::After, ..
            } => Operator::DateGreaterThan,
            Test::Time {
                order: Order::AtOrAfter,
                ..
            } => Operator::DateGreaterThanEquals,
            Test::Time {
                order: Order::Before, ..
            } => Operator::DateLessThan,
            Test::Time {
                order: Order::AtOrBefore,
                ..
            } => Operator::DateLessThanEquals,
            Test::Bool(_) => Operator::Bool,
        }
    }

    /// The key tested; always the one key the operator applies to.
    #[must_use]
    pub fn key(&self) -> ConditionKey {
        self.operator().key()
    }

    /// The values as written in the document: strings, or booleans where the author used them.
    #[must_use]
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Values are OR'ed, except under `NotIpAddress`, where the address must lie outside all of
    /// them: "not in A or not in B" would admit nearly every address, which no author means.
    pub(crate) fn matches(&self, context: &RequestContext) -> bool {
        match &self.test {
            Test::Ip { negated, nets } => match context.source_ip {
                // An unknown address satisfies neither IpAddress nor NotIpAddress.
                None => false,
                Some(ip) => {
                    let ip = unmap(ip);
                    nets.iter().any(|net| net.contains(&ip)) != *negated
                }
            },
            Test::Time { order, instants } => instants.iter().any(|instant| {
                let now = context.current_time;
                match order {
                    Order::After => now > *instant,
                    Order::AtOrAfter => now >= *instant,
                    Order::Before => now < *instant,
                    Order::AtOrBefore => now <= *instant,
                }
            }),
            Test::Bool(values) => values.contains(&context.secure_transport),
        }
    }
}

/// An IPv4 client seen through a dual-stack socket arrives as `::ffff:a.b.c.d`; policies name it
/// in IPv4 form, so compare it that way.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Parses a statement's `Condition` object found at path `at`.
pub(crate) fn parse_block(block: &Value, at: &str) -> Result<Vec<Condition>, PolicyError> {
    let operators = non_empty_object(block, at, "a non-empty object of condition operators")?;
    let mut conditions = Vec::new();
    for (name, keys) in operators {
        let operator = Operator::from_name(name).ok_or_else(|| PolicyError::UnsupportedOperator {
            at: at.to_owned(),
            operator: name.clone(),
        })?;
        let op_at = format!("{at}.{name}");
        let keys = non_empty_object(keys, &op_at, "a non-empty object of condition keys")?;
        let mut seen = Vec::new();
        for (key_text, values) in keys {
            let key =
                ConditionKey::from_name(key_text).ok_or_else(|| PolicyError::UnsupportedConditionKey {
                    at: op_at.clone(),
                    key: key_text.clone(),
                })?;
            if key != operator.key() {
                return Err(PolicyError::KeyNotForOperator {
                    at: op_at,
                    key: key_text.clone(),
                    operator: operator.as_str(),
                });
            }
            if seen.contains(&key) {
                return Err(PolicyError::DuplicateConditionKey {
                    at: op_at,
                    key: key_text.clone(),
                });
            }
            seen.push(key);
            conditions.push(parse_condition(
                operator,
                key_text,
                values,
                &format!("{op_at}.{key_text}"),
            )?);
        }
    }
    Ok(conditions)
}

fn non_empty_object<'v>(
    value: &'v Value,
    at: &str,
    expected: &'static str,
) -> Result<&'v Map<String, Value>, PolicyError> {
    match value {
        Value::Object(map) if !map.is_empty() => Ok(map),
        _ => Err(PolicyError::Invalid {
            at: at.to_owned(),
            expected,
        }),
    }
}

fn parse_condition(
    operator: Operator,
    key_text: &str,
    raw: &Value,
    at: &str,
) -> Result<Condition, PolicyError> {
    let items = value_list(raw, at)?;
    let nets = |negated| -> Result<Test, PolicyError> {
        let nets = items
            .iter()
            .map(|(value, at)| parse_net(value, at))
            .collect::<Result<_, _>>()?;
        Ok(Test::Ip { negated, nets })
    };
    let instants = |order| -> Result<Test, PolicyError> {
        let instants = items
            .iter()
            .map(|(value, at)| parse_instant(value, at))
            .collect::<Result<_, _>>()?;
        Ok(Test::Time { order, instants })
    };
    let test = match operator {
        Operator::IpAddress => nets(false)?,
        Operator::NotIpAddress => nets(true)?,
        Operator::DateGreaterThan => instants(Order::After)?,
        Operator::DateGreaterThanEquals => instants(Order::AtOrAfter)?,
        Operator::DateLessThan => instants(Order::Before)?,
        Operator::DateLessThanEquals => instants(Order::AtOrBefore)?,
        Operator::Bool => Test::Bool(
            items
                .iter()
                .map(|(value, at)| parse_bool(value, at))
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Condition {
        key_text: key_text.to_owned(),
        values: items.into_iter().map(|(value, _)| value.clone()).collect(),
        test,
    })
}

/// A single value or a non-empty array of them, each a string or a boolean, with its path.
fn value_list<'v>(raw: &'v Value, at: &str) -> Result<Vec<(&'v Value, String)>, PolicyError> {
    const EXPECTED: &str = "a string, a boolean or a non-empty array of them";
    let items: Vec<(&Value, String)> = match raw {
        Value::String(_) | Value::Bool(_) => vec![(raw, at.to_owned())],
        Value::Array(values) if !values.is_empty() => values
            .iter()
            .enumerate()
            .map(|(i, value)| (value, format!("{at}[{i}]")))
            .collect(),
        _ => {
            return Err(PolicyError::Invalid {
                at: at.to_owned(),
                expected: EXPECTED,
            })
        }
    };
    for (value, item_at) in &items {
        if !matches!(value, Value::String(_) | Value::Bool(_)) {
            return Err(PolicyError::Invalid {
                at: item_at.clone(),
                expected: "a string or a boolean",
            });
        }
    }
    Ok(items)
}

/// The value's text for messages and parsing; booleans read as `true`/`false`.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn bad(value: &Value, at: &str, expected: &'static str) -> PolicyError {
    PolicyError::BadValue {
        at: at.to_owned(),
        value: text(value),
        expected,
    }
}

fn parse_net(value: &Value, at: &str) -> Result<IpNet, PolicyError> {
    const EXPECTED: &str = "an IP address or CIDR block";
    let Value::String(s) = value else {
        return Err(bad(value, at, EXPECTED));
    };
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    s.parse::<IpNet>().map_err(|_| bad(value, at, EXPECTED))
}

fn parse_instant(value: &Value, at: &str) -> Result<OffsetDateTime, PolicyError> {
    const EXPECTED: &str = "an ISO 8601 date-time with offset, such as \"2019-08-12T17:00:00+08:00\"";
    let Value::String(s) = value else {
        return Err(bad(value, at, EXPECTED));
    };
    OffsetDateTime::parse(s, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(s, &Iso8601::DEFAULT))
        .map_err(|_| bad(value, at, EXPECTED))
}

fn parse_bool(value: &Value, at: &str) -> Result<bool, PolicyError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(bad(value, at, "true or false")),
    }
}

/// Rebuilds the `Condition` object: operators hold their keys, keys hold their value lists.
pub(crate) fn to_value(conditions: &[Condition]) -> Value {
    let mut operators: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for condition in conditions {
        operators
            .entry(condition.operator().as_str())
            .or_default()
            .insert(condition.key_text.clone(), one_or_many(condition.values.clone()));
    }
    Value::Object(
        operators
            .into_iter()
            .map(|(name, keys)| (name.to_owned(), Value::Object(keys)))
            .collect(),
    )
}
