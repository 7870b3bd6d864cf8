//! RAM policy documents: `PolicyDocument::parse`, the canonical rendering and `evaluate`.
//!
//! Input: a policy document (UTF-8 text). Beyond not panicking:
//! - a document over the length limit is refused for its length;
//! - an accepted document keeps its text, and its canonical rendering (`to_json`, also what
//!   `Serialize` writes) is no longer than it, parses back to the same statements and renders
//!   identically;
//! - the original and the canonical form decide every request alike, and a document without
//!   conditions decides as a naive transcription of RAM's rules does (an explicit `Deny` wins,
//!   then an `Allow`; `*` is any run of characters, `?` one; actions ignore case).
#![no_main]

use ens_policy::{evaluate, AccessRequest, ActionScope, Decision, Effect, PolicyDocument, PolicyError};
use ens_policy::{RequestContext, MAX_DOCUMENT_CHARS};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

/// Longest pattern or input the quadratic reference matcher is asked about.
const REFERENCE_LIMIT: usize = 256;

/// `pattern` matches the whole of `input`, by dynamic programming over prefixes.
fn reference_matches(pattern: &str, input: &str, ignore_case: bool) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let input: Vec<char> = input.chars().collect();
    let same = |a: char, b: char| a == b || (ignore_case && a.to_lowercase().eq(b.to_lowercase()));
    // row[j]: the pattern so far matches input[..j].
    let mut row: Vec<bool> = (0..=input.len()).map(|j| j == 0).collect();
    for &p in &pattern {
        let mut next = vec![false; input.len() + 1];
        for j in 0..=input.len() {
            next[j] = match p {
                '*' => row[j] || (j > 0 && next[j - 1]),
                _ => j > 0 && row[j - 1] && (p == '?' || same(p, input[j - 1])),
            };
        }
        row = next;
    }
    row[input.len()]
}

fn reference_decision(document: &PolicyDocument, action: &str, resource: &str) -> Decision {
    let listed = |patterns: &[String]| patterns.iter().any(|p| reference_matches(p, action, true));
    let effects: Vec<Effect> = document
        .statements()
        .iter()
        .filter(|statement| match statement.action() {
            ActionScope::Action(patterns) => listed(patterns),
            ActionScope::NotAction(patterns) => !listed(patterns),
        })
        .filter(|statement| {
            statement
                .resources()
                .iter()
                .any(|p| reference_matches(p, resource, false))
        })
        .map(|statement| statement.effect())
        .collect();
    if effects.contains(&Effect::Deny) {
        Decision::ExplicitDeny
    } else if effects.contains(&Effect::Allow) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Actions and resources to ask about: fixed ones, and ones made from the document's own
/// patterns so that matches are likely.
fn questions(document: &PolicyDocument) -> (Vec<String>, Vec<String>) {
    let mut actions: Vec<String> = [
        "ens:DescribeImages",
        "ENS:describeimages",
        "ens:DeleteImage",
        "ecs:DescribeImages",
        "",
        "*",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut resources: Vec<String> = [
        "*",
        "acs:ens:cn-beijing-telecom:1234567890123456:image/m-1",
        "acs:ens::42:image/m-1",
    ]
    .map(str::to_owned)
    .to_vec();
    for statement in document.statements().iter().take(4) {
        let (ActionScope::Action(patterns) | ActionScope::NotAction(patterns)) = statement.action();
        for pattern in patterns.iter().take(4) {
            actions.push(pattern.replace('*', "").replace('?', "x"));
            actions.push(pattern.replace('*', "Ab").replace('?', "y"));
        }
        for pattern in statement.resources().iter().take(4) {
            resources.push(pattern.replace('*', "").replace('?', "x"));
            resources.push(pattern.replace('*', "m-1/").replace('?', "0"));
        }
    }
    (actions, resources)
}

fn contexts() -> [RequestContext; 2] {
    [
        RequestContext {
            source_ip: "10.1.2.3".parse().ok(),
            current_time: datetime!(2024-06-01 12:00:00 UTC),
            secure_transport: true,
        },
        RequestContext {
            source_ip: None,
            current_time: datetime!(2019-08-12 09:00:00 +8),
            secure_transport: false,
        },
    ]
}

fn check_accepted(text: &str, document: &PolicyDocument) {
    assert_eq!(document.source(), text);
    assert!(!document.statements().is_empty());
    let canonical = document.to_json();
    assert!(
        canonical.chars().count() <= text.chars().count(),
        "the canonical form is longer: {canonical}"
    );
    assert_eq!(
        serde_json::to_string(document).ok().as_deref(),
        Some(canonical.as_str()),
        "Serialize"
    );
    let again = PolicyDocument::parse(&canonical);
    assert!(
        again.is_ok(),
        "the canonical form {canonical} is refused: {again:?}"
    );
    let Ok(again) = again else {
        return;
    };
    assert_eq!(again.statements(), document.statements(), "{canonical}");
    assert_eq!(again.to_json(), canonical);
    let conditional = document
        .statements()
        .iter()
        .any(|statement| !statement.conditions().is_empty());
    let longest_pattern = document
        .statements()
        .iter()
        .flat_map(|statement| {
            let (ActionScope::Action(patterns) | ActionScope::NotAction(patterns)) = statement.action();
            patterns.iter().chain(statement.resources())
        })
        .map(String::len)
        .max()
        .unwrap_or_default();
    let use_reference = !conditional && longest_pattern <= REFERENCE_LIMIT;
    let (actions, resources) = questions(document);
    for context in &contexts() {
        for action in &actions {
            for resource in &resources {
                let request = AccessRequest {
                    action,
                    resource,
                    context,
                };
                let decision = evaluate(&[document], &request);
                assert_eq!(decision, evaluate(&[&again], &request));
                if use_reference && action.len().max(resource.len()) <= REFERENCE_LIMIT {
                    assert_eq!(
                        decision,
                        reference_decision(document, action, resource),
                        "{action} on {resource}"
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PolicyDocument::parse(text) {
        Ok(document) => check_accepted(text, &document),
        Err(error) => {
            let too_long = text.chars().count() > MAX_DOCUMENT_CHARS;
            assert_eq!(matches!(error, PolicyError::TooLong { .. }), too_long, "{error}");
            assert!(!error.to_string().is_empty());
        }
    }
});
