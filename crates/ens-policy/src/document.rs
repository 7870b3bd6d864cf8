//! The policy document: its grammar, its validation and its canonical serialization.

use std::str::FromStr;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::condition::{self, Condition};
use crate::error::PolicyError;
use crate::eval::AccessRequest;
use crate::wildcard::{self, Case};

/// RAM's limit on a custom policy document, in characters.
pub const MAX_DOCUMENT_CHARS: usize = 6144;

const ROOT: &str = "policy document";

/// A validated RAM policy document.
///
/// Built only by [`PolicyDocument::parse`], so holding one means every statement is enforceable.
/// The original text is kept because operators expect to read back the policy exactly as they wrote it.
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    source: String,
    statements: Vec<Statement>,
}

/// Whether a matching statement grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// Grants, unless some statement denies.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

impl Effect {
    /// The spelling in policy documents.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "Allow",
            Self::Deny => "Deny",
        }
    }
}

/// The actions a statement covers: those listed (`Action`) or all but those listed (`NotAction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionScope {
    /// Covers an action matched by any of the patterns.
    Action(Vec<String>),
    /// Covers an action matched by none of the patterns.
    NotAction(Vec<String>),
}

/// One `Effect` over actions and resources, gated by conditions that must all hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    effect: Effect,
    action: ActionScope,
    resources: Vec<String>,
    conditions: Vec<Condition>,
}

impl Statement {
    /// Grant or refusal.
    #[must_use]
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// The action patterns and whether they include or exclude.
    #[must_use]
    pub fn action(&self) -> &ActionScope {
        &self.action
    }

    /// The resource patterns; a resource matched by any of them is covered.
    #[must_use]
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The conditions, one per operator and key; all must hold.
    #[must_use]
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// True when the statement applies to the request: its effect then decides.
    pub(crate) fn applies_to(&self, request: &AccessRequest<'_>) -> bool {
        let action_listed = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| wildcard::matches(p, request.action, Case::Insensitive))
        };
        let action_covered = match &self.action {
            ActionScope::Action(patterns) => action_listed(patterns),
            ActionScope::NotAction(patterns) => !action_listed(patterns),
        };
        action_covered
            && self
                .resources
                .iter()
                .any(|p| wildcard::matches(p, request.resource, Case::Sensitive))
            && self.conditions.iter().all(|c| c.matches(request.context))
    }

    fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("Effect".to_owned(), Value::from(self.effect.as_str()));
        let (key, patterns) = match &self.action {
            ActionScope::Action(patterns) => ("Action", patterns),
            ActionScope::NotAction(patterns) => ("NotAction", patterns),
        };
        object.insert(
            key.to_owned(),
            one_or_many(patterns.iter().map(|p| Value::from(p.as_str())).collect()),
        );
        object.insert(
            "Resource".to_owned(),
            one_or_many(self.resources.iter().map(|p| Value::from(p.as_str())).collect()),
        );
        if !self.conditions.is_empty() {
            object.insert("Condition".to_owned(), condition::to_value(&self.conditions));
        }
        Value::Object(object)
    }
}

impl PolicyDocument {
    /// Validates `json` against the RAM grammar and keeps it.
    ///
    /// # Errors
    /// [`PolicyError`] naming the first problem found and where it is.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let length = json.chars().count();
        if length > MAX_DOCUMENT_CHARS {
            return Err(PolicyError::TooLong {
                length,
                max: MAX_DOCUMENT_CHARS,
            });
        }
        let root = crate::json::parse(json).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let Value::Object(root) = root else {
            return Err(PolicyError::Invalid {
                at: ROOT.to_owned(),
                expected: "a JSON object",
            });
        };
        for key in root.keys() {
            if key != "Version" && key != "Statement" {
                return Err(PolicyError::UnknownKey {
                    at: ROOT.to_owned(),
                    key: key.clone(),
                });
            }
        }
        match root.get("Version") {
            None => {
                return Err(PolicyError::MissingKey {
                    at: ROOT.to_owned(),
                    key: "Version",
                })
            }
            Some(Value::String(v)) if v == "1" => {}
            Some(_) => {
                return Err(PolicyError::Invalid {
                    at: "Version".to_owned(),
                    expected: "\"1\"",
                })
            }
        }
        let statements = match root.get("Statement") {
            None => {
                return Err(PolicyError::MissingKey {
                    at: ROOT.to_owned(),
                    key: "Statement",
                })
            }
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_statement(item, &format!("Statement[{i}]")))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(PolicyError::Invalid {
                    at: "Statement".to_owned(),
                    expected: "a non-empty array of statements",
                })
            }
        };
        Ok(Self {
            source: json.to_owned(),
            statements,
        })
    }

    /// The document exactly as submitted, for listing back to its author.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The statements in document order.
    #[must_use]
    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// A canonical compact rendering: keys in a stable order, a list of one item written as that
    /// item, longer lists as arrays.
    ///
    /// Parsing it yields the same statements; use [`PolicyDocument::source`] for the author's text.
    /// It is never longer than the source (no spaces, no escapes that are not needed, no list
    /// brackets the source did not have), so it is within [`MAX_DOCUMENT_CHARS`] too: with every
    /// list as an array, a document near the limit that wrote its lists as strings rendered
    /// over it and could not be parsed back (found by the policy fuzz target).
    #[must_use]
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }

    fn to_value(&self) -> Value {
        let mut object = Map::new();
        object.insert("Version".to_owned(), Value::from("1"));
        object.insert(
            "Statement".to_owned(),
            Value::Array(self.statements.iter().map(Statement::to_value).collect()),
        );
        Value::Object(object)
    }
}

impl Serialize for PolicyDocument {
    /// Serializes the canonical form (see [`PolicyDocument::to_json`]).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

impl FromStr for PolicyDocument {
    type Err = PolicyError;

    fn from_str(json: &str) -> Result<Self, PolicyError> {
        Self::parse(json)
    }
}

/// A one-item list as the item itself, which the grammar accepts wherever it accepts a list.
pub(crate) fn one_or_many(mut items: Vec<Value>) -> Value {
    if items.len() == 1 {
        items.pop().unwrap_or_default()
    } else {
        Value::Array(items)
    }
}

const STATEMENT_KEYS: [&str; 5] = ["Effect", "Action", "NotAction", "Resource", "Condition"];

fn parse_statement(item: &Value, at: &str) -> Result<Statement, PolicyError> {
    let Value::Object(object) = item else {
        return Err(PolicyError::Invalid {
            at: at.to_owned(),
            expected: "an object",
        });
    };
    for key in object.keys() {
        let unsupported = |key, reason| PolicyError::UnsupportedKey {
            at: at.to_owned(),
            key,
            reason,
        };
        match key.as_str() {
            k if STATEMENT_KEYS.contains(&k) => {}
            "NotResource" => {
                return Err(unsupported(
                    "NotResource",
                    "RAM policies list resources under \"Resource\"",
                ))
            }
            "Principal" => {
                return Err(unsupported(
                    "Principal",
                    "it belongs to resource-based policies, not identity policies",
                ))
            }
            _ => {
                return Err(PolicyError::UnknownKey {
                    at: at.to_owned(),
                    key: key.clone(),
                })
            }
        }
    }
    let required = |key: &'static str| {
        object.get(key).ok_or_else(|| PolicyError::MissingKey {
            at: at.to_owned(),
            key,
        })
    };

    let effect = match required("Effect")? {
        Value::String(s) if s == "Allow" => Effect::Allow,
        Value::String(s) if s == "Deny" => Effect::Deny,
        _ => {
            return Err(PolicyError::Invalid {
                at: format!("{at}.Effect"),
                expected: "Allow or Deny",
            })
        }
    };

    let action = match (object.get("Action"), object.get("NotAction")) {
        (Some(_), Some(_)) => {
            return Err(PolicyError::Conflict {
                at: at.to_owned(),
                first: "Action",
                second: "NotAction",
            })
        }
        (Some(list), None) => ActionScope::Action(patterns(list, &format!("{at}.Action"), Kind::Action)?),
        (None, Some(list)) => {
            ActionScope::NotAction(patterns(list, &format!("{at}.NotAction"), Kind::Action)?)
        }
        (None, None) => {
            return Err(PolicyError::MissingKey {
                at: at.to_owned(),
                key: "Action",
            })
        }
    };

    let resources = patterns(required("Resource")?, &format!("{at}.Resource"), Kind::Resource)?;

    let conditions = match object.get("Condition") {
        Some(block) => condition::parse_block(block, &format!("{at}.Condition"))?,
        None => Vec::new(),
    };

    Ok(Statement {
        effect,
        action,
        resources,
        conditions,
    })
}

#[derive(Clone, Copy)]
enum Kind {
    Action,
    Resource,
}

/// A string or a non-empty array of strings, each checked as an action or resource pattern.
fn patterns(value: &Value, at: &str, kind: Kind) -> Result<Vec<String>, PolicyError> {
    let items: Vec<(&Value, String)> = match value {
        Value::String(_) => vec![(value, at.to_owned())],
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, item)| (item, format!("{at}[{i}]")))
            .collect(),
        _ => {
            return Err(PolicyError::Invalid {
                at: at.to_owned(),
                expected: "a string or a non-empty array of strings",
            })
        }
    };
    items
        .into_iter()
        .map(|(item, item_at)| {
            let Value::String(pattern) = item else {
                return Err(PolicyError::Invalid {
                    at: item_at,
                    expected: "a string",
                });
            };
            let (valid, expected) = match kind {
                Kind::Action => (
                    is_action_pattern(pattern),
                    "\"*\" or an action such as \"ens:DescribeImages\"",
                ),
                Kind::Resource => (
                    is_resource_pattern(pattern),
                    "\"*\" or an ARN such as \"acs:ens:*:*:image/m-*\"",
                ),
            };
            if valid {
                Ok(pattern.clone())
            } else {
                Err(PolicyError::BadValue {
                    at: item_at,
                    value: pattern.clone(),
                    expected,
                })
            }
        })
        .collect()
}

/// `*`, or `<service>:<action>` where both parts are non-empty words that may hold wildcards.
fn is_action_pattern(pattern: &str) -> bool {
    let word = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '*' | '?' | '-' | '_' | '.'))
    };
    pattern == "*"
        || pattern
            .split_once(':')
            .is_some_and(|(service, name)| word(service) && word(name))
}

/// `*`, or `acs:<service>:<region>:<account>:<relative-id>`; region and account may be empty
/// (ENS images need not name a node), service and relative id may not. Wildcards go anywhere.
fn is_resource_pattern(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    if pattern.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let mut parts = pattern.splitn(5, ':');
    let (Some(scheme), Some(service), Some(_region), Some(_account), Some(relative)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    scheme == "acs" && !service.is_empty() && !relative.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(statements: &str) -> String {
        format!(r#"{{"Version": "1", "Statement": [{statements}]}}"#)
    }

    fn error(json: &str) -> String {
        PolicyDocument::parse(json).unwrap_err().to_string()
    }

    const ALLOW_ALL: &str = r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}"#;

    #[test]
    fn parses_the_documented_shapes() {
        let json = doc(
            r#"{"Effect": "Allow", "Action": ["ens:Describe*", "ens:CreateImage"],
                "Resource": "acs:ens:*:*:image/*"},
               {"Effect": "Deny", "NotAction": "ens:DescribeImages", "Resource": ["*"],
                "Condition": {"IpAddress": {"acs:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]},
                              "Bool": {"ACS:SECURETRANSPORT": false}}}"#,
        );
        let policy = PolicyDocument::parse(&json).unwrap();
        assert_eq!(policy.source(), json);
        let [first, second] = policy.statements() else {
            panic!("two statements")
        };
        assert_eq!(first.effect(), Effect::Allow);
        assert_eq!(
            first.action(),
            &ActionScope::Action(vec!["ens:Describe*".to_owned(), "ens:CreateImage".to_owned()])
        );
        assert_eq!(first.resources(), ["acs:ens:*:*:image/*"]);
        assert!(first.conditions().is_empty());
        assert_eq!(second.effect(), Effect::Deny);
        assert_eq!(
            second.action(),
            &ActionScope::NotAction(vec!["ens:DescribeImages".to_owned()])
        );
        assert_eq!(second.conditions().len(), 2);
    }

    #[test]
    fn accepts_the_usual_resource_forms() {
        for resource in [
            "*",
            "acs:ens:*:*:image/*",
            "acs:ens::1234567890:image/m-abc",
            "acs:ens:cn-beijing-cmcc:*:image/m-5*",
            "acs:ens:*:*:*",
            "acs:*:*:*:*",
            "acs:ens:*:*:image/m-???",
        ] {
            let json = doc(&format!(
                r#"{{"Effect": "Allow", "Action": "ens:*", "Resource": "{resource}"}}"#
            ));
            assert!(PolicyDocument::parse(&json).is_ok(), "{resource}");
        }
    }

    #[test]
    fn accepts_the_usual_action_forms() {
        for action in [
            "*",
            "ens:*",
            "ens:Describe*",
            "ens:DescribeImages",
            "ecs:Describe?nstances",
            "*:*",
        ] {
            let json = doc(&format!(
                r#"{{"Effect": "Allow", "Action": "{action}", "Resource": "*"}}"#
            ));
            assert!(PolicyDocument::parse(&json).is_ok(), "{action}");
        }
    }

    #[test]
    fn canonical_json_round_trips() {
        let json = doc(
            r#"{"Effect": "Deny", "Action": "ens:DeleteImage", "Resource": "acs:ens:*:*:image/m-1",
                "Condition": {"NotIpAddress": {"acs:sourceip": "192.168.0.0/16"},
                              "DateLessThan": {"acs:CurrentTime": "2019-08-12T17:00:00+08:00"},
                              "DateGreaterThanEquals": {"acs:CurrentTime": ["2019-01-01T00:00:00Z"]},
                              "Bool": {"acs:SecureTransport": ["true", false]}}},
               {"Effect": "Allow", "NotAction": ["ram:*"], "Resource": "*"}"#,
        );
        let policy = PolicyDocument::parse(&json).unwrap();
        let canonical = policy.to_json();
        let again = PolicyDocument::parse(&canonical).unwrap();
        assert_eq!(again.statements(), policy.statements());
        assert_eq!(again.to_json(), canonical);
        assert_eq!(serde_json::to_string(&policy).unwrap(), canonical);
        let value: Value = serde_json::from_str(&canonical).unwrap();
        assert_eq!(
            value["Statement"][0]["Condition"]["NotIpAddress"]["acs:sourceip"],
            "192.168.0.0/16"
        );
        assert_eq!(
            value["Statement"][0]["Condition"]["Bool"]["acs:SecureTransport"][1],
            false
        );
        assert_eq!(value["Statement"][1]["NotAction"], "ram:*");
    }

    #[test]
    fn the_canonical_form_of_a_document_at_the_limit_parses_back() {
        let statement = r#"{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bool":{"acs:SecureTransport":true}}}"#;
        let document = |count| {
            format!(
                r#"{{"Version":"1","Statement":[{}]}}"#,
                vec![statement; count].join(",")
            )
        };
        // As many statements as fit.
        let count = (1..)
            .find(|&count| document(count + 1).len() > MAX_DOCUMENT_CHARS)
            .unwrap();
        let json = document(count);
        let policy = PolicyDocument::parse(&json).unwrap();
        let canonical = policy.to_json();
        assert!(canonical.chars().count() <= json.chars().count());
        assert_eq!(
            PolicyDocument::parse(&canonical).unwrap().statements(),
            policy.statements()
        );
    }

    #[test]
    fn from_str_is_parse() {
        let json = doc(ALLOW_ALL);
        let policy: PolicyDocument = json.parse().unwrap();
        assert_eq!(policy.statements().len(), 1);
    }

    #[test]
    fn refuses_documents_over_the_ram_limit_in_characters() {
        let padding = " ".repeat(MAX_DOCUMENT_CHARS);
        let json = format!("{}{padding}", doc(ALLOW_ALL));
        assert_eq!(
            error(&json),
            format!(
                "policy document is {} characters long; the limit is 6144",
                json.chars().count()
            )
        );
        // Characters, not bytes: 5000 two-byte characters fit.
        let wide = doc(&format!(
            r#"{{"Effect": "Allow", "Action": "*", "Resource": "acs:ens:*:*:image/{}"}}"#,
            "é".repeat(5000)
        ));
        assert!(wide.len() > MAX_DOCUMENT_CHARS && wide.chars().count() <= MAX_DOCUMENT_CHARS);
        assert!(PolicyDocument::parse(&wide).is_ok());
    }

    #[test]
    fn refuses_malformed_json() {
        assert!(error("{").starts_with("policy document is not valid JSON: "));
        assert!(error("").starts_with("policy document is not valid JSON: "));
        let dup = error(r#"{"Version": "1", "Version": "1", "Statement": []}"#);
        assert!(dup.contains("duplicate key \"Version\""), "{dup}");
    }

    #[test]
    fn refuses_bad_top_level_shapes() {
        let cases = [
            ("[]", "policy document must be a JSON object"),
            (
                r#"{"Statement": []}"#,
                "policy document: missing required key \"Version\"",
            ),
            (
                r#"{"Version": "1"}"#,
                "policy document: missing required key \"Statement\"",
            ),
            (r#"{"Version": 1, "Statement": []}"#, "Version must be \"1\""),
            (r#"{"Version": "2", "Statement": []}"#, "Version must be \"1\""),
            (
                r#"{"Version": "1", "Statement": []}"#,
                "Statement must be a non-empty array of statements",
            ),
            (
                r#"{"Version": "1", "Statement": {}}"#,
                "Statement must be a non-empty array of statements",
            ),
            (
                r#"{"Version": "1", "Id": "x", "Statement": []}"#,
                "policy document: unknown key \"Id\"",
            ),
            (
                r#"{"Version": "1", "Statement": ["x"]}"#,
                "Statement[0] must be an object",
            ),
        ];
        for (json, message) in cases {
            assert_eq!(error(json), message, "{json}");
        }
    }

    #[test]
    fn refuses_bad_statements_naming_the_problem() {
        let cases = [
            (r#"{"Action": "*", "Resource": "*"}"#, "Statement[1]: missing required key \"Effect\""),
            (r#"{"Effect": "Allow", "Resource": "*"}"#, "Statement[1]: missing required key \"Action\""),
            (r#"{"Effect": "Allow", "Action": "*"}"#, "Statement[1]: missing required key \"Resource\""),
            (r#"{"Effect": "allow", "Action": "*", "Resource": "*"}"#, "Statement[1].Effect must be Allow or Deny"),
            (r#"{"Effect": true, "Action": "*", "Resource": "*"}"#, "Statement[1].Effect must be Allow or Deny"),
            (
                r#"{"Effect": "Allow", "Action": "*", "NotAction": "ens:X", "Resource": "*"}"#,
                "Statement[1]: \"Action\" and \"NotAction\" cannot both be given",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "NotResource": "*"}"#,
                "Statement[1]: \"NotResource\" is not supported: RAM policies list resources under \"Resource\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": "*", "Principal": {"RAM": "*"}}"#,
                "Statement[1]: \"Principal\" is not supported: it belongs to resource-based policies, not identity policies",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": "*", "Sid": "x"}"#,
                "Statement[1]: unknown key \"Sid\"",
            ),
            (
                r#"{"Effect": "Allow", "action": "*", "Resource": "*"}"#,
                "Statement[1]: unknown key \"action\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": [], "Resource": "*"}"#,
                "Statement[1].Action must be a string or a non-empty array of strings",
            ),
            (
                r#"{"Effect": "Allow", "Action": 7, "Resource": "*"}"#,
                "Statement[1].Action must be a string or a non-empty array of strings",
            ),
            (
                r#"{"Effect": "Allow", "Action": ["ens:*", 7], "Resource": "*"}"#,
                "Statement[1].Action[1] must be a string",
            ),
            (
                r#"{"Effect": "Allow", "Action": ["ens:*", "ens:"], "Resource": "*"}"#,
                "Statement[1].Action[1]: \"ens:\" is not \"*\" or an action such as \"ens:DescribeImages\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "DescribeImages", "Resource": "*"}"#,
                "Statement[1].Action: \"DescribeImages\" is not \"*\" or an action such as \"ens:DescribeImages\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "ens:Describe Images", "Resource": "*"}"#,
                "Statement[1].Action: \"ens:Describe Images\" is not \"*\" or an action such as \"ens:DescribeImages\"",
            ),
            (
                r#"{"Effect": "Allow", "NotAction": "ens:a:b", "Resource": "*"}"#,
                "Statement[1].NotAction: \"ens:a:b\" is not \"*\" or an action such as \"ens:DescribeImages\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": ["*", "image/m-1"]}"#,
                "Statement[1].Resource[1]: \"image/m-1\" is not \"*\" or an ARN such as \"acs:ens:*:*:image/m-*\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": "acs:ens:*:*"}"#,
                "Statement[1].Resource: \"acs:ens:*:*\" is not \"*\" or an ARN such as \"acs:ens:*:*:image/m-*\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": "arn:ens:*:*:image/x"}"#,
                "Statement[1].Resource: \"arn:ens:*:*:image/x\" is not \"*\" or an ARN such as \"acs:ens:*:*:image/m-*\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": "acs:ens:*:*:"}"#,
                "Statement[1].Resource: \"acs:ens:*:*:\" is not \"*\" or an ARN such as \"acs:ens:*:*:image/m-*\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": "acs:ens:*:*:image/m 1"}"#,
                "Statement[1].Resource: \"acs:ens:*:*:image/m 1\" is not \"*\" or an ARN such as \"acs:ens:*:*:image/m-*\"",
            ),
            (
                r#"{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": []}"#,
                "Statement[1].Condition must be a non-empty object of condition operators",
            ),
        ];
        for (statement, message) in cases {
            let json = doc(&format!("{ALLOW_ALL}, {statement}"));
            assert_eq!(error(&json), message, "{statement}");
        }
    }

    #[test]
    fn refuses_bad_conditions_naming_the_problem() {
        let cases = [
            ("{}", "Statement[0].Condition must be a non-empty object of condition operators"),
            (
                r#"{"StringLike": {"acs:SourceIp": "*"}}"#,
                "Statement[0].Condition: unsupported operator \"StringLike\"",
            ),
            (
                r#"{"ipaddress": {"acs:SourceIp": "10.0.0.1"}}"#,
                "Statement[0].Condition: unsupported operator \"ipaddress\"",
            ),
            (
                r#"{"IpAddress": {}}"#,
                "Statement[0].Condition.IpAddress must be a non-empty object of condition keys",
            ),
            (
                r#"{"IpAddress": {"acs:UserAgent": "x"}}"#,
                "Statement[0].Condition.IpAddress: unsupported condition key \"acs:UserAgent\"",
            ),
            (
                r#"{"Bool": {"acs:SourceIp": "true"}}"#,
                "Statement[0].Condition.Bool: condition key \"acs:SourceIp\" cannot be used with operator \"Bool\"",
            ),
            (
                r#"{"DateLessThan": {"acs:SecureTransport": "true"}}"#,
                "Statement[0].Condition.DateLessThan: condition key \"acs:SecureTransport\" cannot be used with operator \"DateLessThan\"",
            ),
            (
                r#"{"IpAddress": {"ACS:SOURCEIP": "10.0.0.1", "acs:SourceIp": "10.0.0.2"}}"#,
                "Statement[0].Condition.IpAddress: condition key \"acs:SourceIp\" is given more than once",
            ),
            (
                r#"{"IpAddress": {"acs:SourceIp": []}}"#,
                "Statement[0].Condition.IpAddress.acs:SourceIp must be a string, a boolean or a non-empty array of them",
            ),
            (
                r#"{"IpAddress": {"acs:SourceIp": 10}}"#,
                "Statement[0].Condition.IpAddress.acs:SourceIp must be a string, a boolean or a non-empty array of them",
            ),
            (
                r#"{"IpAddress": {"acs:SourceIp": ["10.0.0.1", null]}}"#,
                "Statement[0].Condition.IpAddress.acs:SourceIp[1] must be a string or a boolean",
            ),
            (
                r#"{"IpAddress": {"acs:SourceIp": ["10.0.0.1", "10.0.0.300"]}}"#,
                "Statement[0].Condition.IpAddress.acs:SourceIp[1]: \"10.0.0.300\" is not an IP address or CIDR block",
            ),
            (
                r#"{"NotIpAddress": {"acs:SourceIp": "10.0.0.0/33"}}"#,
                "Statement[0].Condition.NotIpAddress.acs:SourceIp: \"10.0.0.0/33\" is not an IP address or CIDR block",
            ),
            (
                r#"{"IpAddress": {"acs:SourceIp": true}}"#,
                "Statement[0].Condition.IpAddress.acs:SourceIp: \"true\" is not an IP address or CIDR block",
            ),
            (
                r#"{"DateGreaterThan": {"acs:CurrentTime": "2019-08-12"}}"#,
                "Statement[0].Condition.DateGreaterThan.acs:CurrentTime: \"2019-08-12\" is not an ISO 8601 date-time with offset, such as \"2019-08-12T17:00:00+08:00\"",
            ),
            (
                r#"{"DateLessThanEquals": {"acs:CurrentTime": "2019-08-12T17:00:00"}}"#,
                "Statement[0].Condition.DateLessThanEquals.acs:CurrentTime: \"2019-08-12T17:00:00\" is not an ISO 8601 date-time with offset, such as \"2019-08-12T17:00:00+08:00\"",
            ),
            (
                r#"{"Bool": {"acs:SecureTransport": "yes"}}"#,
                "Statement[0].Condition.Bool.acs:SecureTransport: \"yes\" is not true or false",
            ),
        ];
        for (block, message) in cases {
            let json = doc(&format!(
                r#"{{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {block}}}"#
            ));
            assert_eq!(error(&json), message, "{block}");
        }
    }
}
