//! Deciding one request against a caller's policies.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::document::{Effect, PolicyDocument};

/// What the server knows about a request beyond its action and resource, for `Condition` blocks.
///
/// The caller supplies the clock so evaluation stays pure and tests can stand at any instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    /// `acs:SourceIp`; `None` when unknown, which makes both IP operators fail to match.
    pub source_ip: Option<IpAddr>,
    /// `acs:CurrentTime`: the instant of evaluation.
    pub current_time: OffsetDateTime,
    /// `acs:SecureTransport`: whether the request arrived over TLS.
    pub secure_transport: bool,
}

/// One authorization question: may this caller do `action` to `resource`?
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The RAM action, e.g. `ens:DescribeImages`.
    pub action: &'a str,
    /// The resource ARN (see [`crate::image_arn`]) or [`crate::ALL_RESOURCES`].
    pub resource: &'a str,
    /// Facts for conditions.
    pub context: &'a RequestContext,
}

/// The outcome, keeping why access was refused since the cloud reports the two refusals alike
/// but operators debugging a policy need to tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// A matching `Deny` statement; nothing can override it.
    ExplicitDeny,
    /// A matching `Allow` statement and no matching `Deny`.
    Allow,
    /// No statement matched: RAM refuses by default.
    ImplicitDeny,
}

impl Decision {
    /// True only for [`Decision::Allow`].
    #[must_use]
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }
}

/// Decides `request` against every statement of every policy attached to the caller.
///
/// A matching `Deny` anywhere wins, then a matching `Allow`; otherwise the default is refusal.
/// Order of policies and statements does not matter.
#[must_use]
pub fn evaluate(policies: &[&PolicyDocument], request: &AccessRequest<'_>) -> Decision {
    let mut allowed = false;
    for statement in policies.iter().flat_map(|policy| policy.statements()) {
        if statement.applies_to(request) {
            match statement.effect() {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{image_arn, ALL_RESOURCES};
    use time::macros::datetime;

    const ACCOUNT: &str = "1234567890123456";

    fn policy(statements: &str) -> PolicyDocument {
        PolicyDocument::parse(&format!(r#"{{"Version": "1", "Statement": [{statements}]}}"#)).unwrap()
    }

    fn context() -> RequestContext {
        RequestContext {
            source_ip: Some("10.1.2.3".parse().unwrap()),
            current_time: datetime!(2024-06-01 12:00:00 UTC),
            secure_transport: true,
        }
    }

    fn decide(
        policies: &[&PolicyDocument],
        action: &str,
        resource: &str,
        context: &RequestContext,
    ) -> Decision {
        evaluate(
            policies,
            &AccessRequest {
                action,
                resource,
                context,
            },
        )
    }

    fn image(id: &str) -> String {
        image_arn(Some("cn-beijing-telecom"), ACCOUNT, id)
    }

    /// Allows everything on every resource when `condition` (a Condition block) holds.
    fn allow_if(condition: &str) -> PolicyDocument {
        policy(&format!(
            r#"{{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {condition}}}"#
        ))
    }

    fn allowed_with(condition: &str, context: &RequestContext) -> bool {
        decide(
            &[&allow_if(condition)],
            "ens:DescribeImages",
            ALL_RESOURCES,
            context,
        )
        .is_allowed()
    }

    #[test]
    fn no_policies_and_no_match_are_implicit_denies() {
        let ctx = context();
        assert_eq!(
            decide(&[], "ens:DescribeImages", ALL_RESOURCES, &ctx),
            Decision::ImplicitDeny
        );
        let other = policy(r#"{"Effect": "Allow", "Action": "ecs:*", "Resource": "*"}"#);
        assert_eq!(
            decide(&[&other], "ens:DescribeImages", ALL_RESOURCES, &ctx),
            Decision::ImplicitDeny
        );
        assert!(!Decision::ImplicitDeny.is_allowed());
        assert!(!Decision::ExplicitDeny.is_allowed());
        assert!(Decision::Allow.is_allowed());
    }

    #[test]
    fn explicit_deny_beats_allow_across_documents_in_any_order() {
        let ctx = context();
        let allow = policy(r#"{"Effect": "Allow", "Action": "ens:*", "Resource": "*"}"#);
        let deny = policy(r#"{"Effect": "Deny", "Action": "ens:DeleteImage", "Resource": "*"}"#);
        let arn = image("m-1");
        assert_eq!(
            decide(&[&allow, &deny], "ens:DeleteImage", &arn, &ctx),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&deny, &allow], "ens:DeleteImage", &arn, &ctx),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&allow, &deny], "ens:DescribeImages", &arn, &ctx),
            Decision::Allow
        );
        assert_eq!(
            decide(&[&deny], "ens:DescribeImages", &arn, &ctx),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn explicit_deny_beats_allow_within_one_document() {
        let ctx = context();
        let both = policy(
            r#"{"Effect": "Allow", "Action": "*", "Resource": "*"},
               {"Effect": "Deny", "Action": "ens:*Image", "Resource": "acs:ens:*:*:image/m-keep*"}"#,
        );
        assert_eq!(
            decide(&[&both], "ens:DeleteImage", &image("m-keep1"), &ctx),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&both], "ens:DeleteImage", &image("m-other"), &ctx),
            Decision::Allow
        );
    }

    #[test]
    fn action_wildcards() {
        let ctx = context();
        let describe = policy(r#"{"Effect": "Allow", "Action": "ens:Describe*", "Resource": "*"}"#);
        assert!(decide(&[&describe], "ens:DescribeImages", ALL_RESOURCES, &ctx).is_allowed());
        assert!(decide(
            &[&describe],
            "ens:DescribeImageSharePermission",
            ALL_RESOURCES,
            &ctx
        )
        .is_allowed());
        assert!(!decide(&[&describe], "ens:DeleteImage", ALL_RESOURCES, &ctx).is_allowed());
        assert!(!decide(&[&describe], "ecs:DescribeImages", ALL_RESOURCES, &ctx).is_allowed());

        let one = policy(r#"{"Effect": "Allow", "Action": "ens:De?eteImage", "Resource": "*"}"#);
        assert!(decide(&[&one], "ens:DeleteImage", ALL_RESOURCES, &ctx).is_allowed());
        assert!(!decide(&[&one], "ens:DeleteImages", ALL_RESOURCES, &ctx).is_allowed());

        let service = policy(r#"{"Effect": "Allow", "Action": "ens:*", "Resource": "*"}"#);
        assert!(decide(&[&service], "ens:CreateImage", ALL_RESOURCES, &ctx).is_allowed());
        let everything = policy(r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}"#);
        assert!(decide(&[&everything], "ecs:CreateInstance", ALL_RESOURCES, &ctx).is_allowed());
    }

    #[test]
    fn actions_match_case_insensitively() {
        let ctx = context();
        let lower = policy(r#"{"Effect": "Allow", "Action": "ENS:describeimages", "Resource": "*"}"#);
        assert!(decide(&[&lower], "ens:DescribeImages", ALL_RESOURCES, &ctx).is_allowed());
        assert!(decide(&[&lower], "ENS:DESCRIBEIMAGES", ALL_RESOURCES, &ctx).is_allowed());
        let deny = policy(r#"{"Effect": "Deny", "Action": "ens:deleteimage", "Resource": "*"}"#);
        assert_eq!(
            decide(&[&deny], "ens:DeleteImage", ALL_RESOURCES, &ctx),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn not_action_covers_everything_else() {
        let ctx = context();
        let all_but_delete = policy(r#"{"Effect": "Allow", "NotAction": "ens:Delete*", "Resource": "*"}"#);
        assert!(decide(&[&all_but_delete], "ens:DescribeImages", ALL_RESOURCES, &ctx).is_allowed());
        assert_eq!(
            decide(&[&all_but_delete], "ens:deleteImage", ALL_RESOURCES, &ctx),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn resources_limit_to_one_image_case_sensitively() {
        let ctx = context();
        let one = policy(r#"{"Effect": "Allow", "Action": "ens:*", "Resource": "acs:ens:*:*:image/m-abc"}"#);
        assert!(decide(&[&one], "ens:DeleteImage", &image("m-abc"), &ctx).is_allowed());
        assert!(decide(
            &[&one],
            "ens:DeleteImage",
            &image_arn(None, ACCOUNT, "m-abc"),
            &ctx
        )
        .is_allowed());
        assert!(!decide(&[&one], "ens:DeleteImage", &image("m-abcd"), &ctx).is_allowed());
        assert!(!decide(&[&one], "ens:DeleteImage", &image("M-ABC"), &ctx).is_allowed());
        // A listing over all resources is not granted by a grant on one image.
        assert!(!decide(&[&one], "ens:DescribeImages", ALL_RESOURCES, &ctx).is_allowed());

        let account = policy(&format!(
            r#"{{"Effect": "Allow", "Action": "ens:*", "Resource": "acs:ens:*:{ACCOUNT}:image/*"}}"#
        ));
        assert!(decide(&[&account], "ens:DeleteImage", &image("m-x"), &ctx).is_allowed());
        let other_account = image_arn(Some("cn-beijing-telecom"), "999", "m-x");
        assert!(!decide(&[&account], "ens:DeleteImage", &other_account, &ctx).is_allowed());
    }

    #[test]
    fn conditions_are_anded_across_keys_and_operators() {
        let block = r#"{"IpAddress": {"acs:SourceIp": "10.0.0.0/8"},
                        "Bool": {"acs:SecureTransport": "true"},
                        "DateLessThan": {"acs:CurrentTime": "2025-01-01T00:00:00Z"}}"#;
        let ctx = context();
        assert!(allowed_with(block, &ctx));
        assert!(!allowed_with(
            block,
            &RequestContext {
                secure_transport: false,
                ..ctx
            }
        ));
        assert!(!allowed_with(
            block,
            &RequestContext {
                source_ip: Some("11.0.0.1".parse().unwrap()),
                ..ctx
            }
        ));
        assert!(!allowed_with(
            block,
            &RequestContext {
                current_time: datetime!(2025-01-01 00:00:00 UTC),
                ..ctx
            }
        ));
    }

    #[test]
    fn a_deny_with_an_unmet_condition_does_not_apply() {
        let allow = policy(r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}"#);
        let deny_outside = policy(
            r#"{"Effect": "Deny", "Action": "*", "Resource": "*",
                "Condition": {"NotIpAddress": {"acs:SourceIp": ["10.0.0.0/8", "192.168.0.0/16"]}}}"#,
        );
        let inside = context();
        let outside = RequestContext {
            source_ip: Some("8.8.8.8".parse().unwrap()),
            ..inside
        };
        let unknown = RequestContext {
            source_ip: None,
            ..inside
        };
        let arn = image("m-1");
        assert_eq!(
            decide(&[&allow, &deny_outside], "ens:DeleteImage", &arn, &inside),
            Decision::Allow
        );
        assert_eq!(
            decide(&[&allow, &deny_outside], "ens:DeleteImage", &arn, &outside),
            Decision::ExplicitDeny
        );
        assert_eq!(
            decide(&[&allow, &deny_outside], "ens:DeleteImage", &arn, &unknown),
            Decision::Allow
        );
    }

    #[test]
    fn ip_address_v4() {
        let block = r#"{"IpAddress": {"acs:SourceIp": ["192.168.1.0/24", "10.9.9.9"]}}"#;
        let with = |ip: &str| RequestContext {
            source_ip: Some(ip.parse().unwrap()),
            ..context()
        };
        assert!(allowed_with(block, &with("192.168.1.0")));
        assert!(allowed_with(block, &with("192.168.1.255")));
        assert!(!allowed_with(block, &with("192.168.2.0")));
        assert!(allowed_with(block, &with("10.9.9.9")), "a bare address is a /32");
        assert!(!allowed_with(block, &with("10.9.9.8")));
        assert!(
            allowed_with(block, &with("::ffff:192.168.1.7")),
            "IPv4-mapped IPv6 compares as IPv4"
        );
        assert!(!allowed_with(block, &with("2001:db8::1")));
        assert!(!allowed_with(
            block,
            &RequestContext {
                source_ip: None,
                ..context()
            }
        ));
        // Host bits in the block are ignored, as RAM does.
        assert!(allowed_with(
            r#"{"IpAddress": {"acs:SourceIp": "172.16.5.4/16"}}"#,
            &with("172.16.200.1")
        ));
    }

    #[test]
    fn ip_address_v6() {
        let block = r#"{"IpAddress": {"acs:SourceIp": ["2001:db8:abcd::/48", "fe80::1"]}}"#;
        let with = |ip: &str| RequestContext {
            source_ip: Some(ip.parse().unwrap()),
            ..context()
        };
        assert!(allowed_with(block, &with("2001:db8:abcd:12::1")));
        assert!(!allowed_with(block, &with("2001:db8:abce::1")));
        assert!(allowed_with(block, &with("fe80::1")));
        assert!(!allowed_with(block, &with("fe80::2")));
        assert!(!allowed_with(block, &with("10.0.0.1")));
    }

    #[test]
    fn not_ip_address() {
        let block = r#"{"NotIpAddress": {"acs:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#;
        let with = |ip: &str| RequestContext {
            source_ip: Some(ip.parse().unwrap()),
            ..context()
        };
        assert!(allowed_with(block, &with("8.8.8.8")));
        assert!(allowed_with(block, &with("2001:db9::1")));
        assert!(
            !allowed_with(block, &with("10.200.0.1")),
            "inside one listed block"
        );
        assert!(!allowed_with(block, &with("2001:db8::1")), "inside the other");
        assert!(
            !allowed_with(
                block,
                &RequestContext {
                    source_ip: None,
                    ..context()
                }
            ),
            "unknown address"
        );
    }

    #[test]
    fn date_operators_at_their_boundaries() {
        // 2019-08-12T17:00:00+08:00 is 09:00 UTC.
        let at = |t: OffsetDateTime| RequestContext {
            current_time: t,
            ..context()
        };
        let before = at(datetime!(2019-08-12 08:59:59 UTC));
        let exactly = at(datetime!(2019-08-12 09:00:00 UTC));
        let after = at(datetime!(2019-08-12 09:00:01 UTC));
        let block = |op: &str| format!(r#"{{"{op}": {{"acs:CurrentTime": "2019-08-12T17:00:00+08:00"}}}}"#);
        let expectations = [
            ("DateGreaterThan", [false, false, true]),
            ("DateGreaterThanEquals", [false, true, true]),
            ("DateLessThan", [true, false, false]),
            ("DateLessThanEquals", [true, true, false]),
        ];
        for (op, expected) in expectations {
            let got = [&before, &exactly, &after].map(|ctx| allowed_with(&block(op), ctx));
            assert_eq!(got, expected, "{op}");
        }
    }

    #[test]
    fn date_values_are_ored_and_windows_are_anded() {
        let window = r#"{"DateGreaterThanEquals": {"acs:CurrentTime": "2024-01-01T00:00:00Z"},
                         "DateLessThan": {"acs:CurrentTime": "2025-01-01T00:00:00+08:00"}}"#;
        let at = |t: OffsetDateTime| RequestContext {
            current_time: t,
            ..context()
        };
        assert!(allowed_with(window, &at(datetime!(2024-01-01 00:00:00 UTC))));
        assert!(allowed_with(window, &at(datetime!(2024-12-31 15:59:59 UTC))));
        assert!(!allowed_with(window, &at(datetime!(2024-12-31 16:00:00 UTC))));
        assert!(!allowed_with(window, &at(datetime!(2023-12-31 23:59:59 UTC))));

        let either =
            r#"{"DateLessThan": {"acs:CurrentTime": ["2000-01-01T00:00:00Z", "2030-01-01T00:00:00Z"]}}"#;
        assert!(allowed_with(either, &context()));
        // Fractional seconds and the ISO 8601 basic format are read too.
        assert!(allowed_with(
            r#"{"DateGreaterThan": {"acs:CurrentTime": "2024-06-01T11:59:59.5Z"}}"#,
            &context()
        ));
        assert!(allowed_with(
            r#"{"DateGreaterThan": {"acs:CurrentTime": "20240601T115959Z"}}"#,
            &context()
        ));
    }

    #[test]
    fn bool_secure_transport() {
        let https = context();
        let http = RequestContext {
            secure_transport: false,
            ..https
        };
        for (block, on_https, on_http) in [
            (r#"{"Bool": {"acs:SecureTransport": "true"}}"#, true, false),
            (r#"{"Bool": {"acs:SecureTransport": true}}"#, true, false),
            (r#"{"Bool": {"acs:SecureTransport": "FALSE"}}"#, false, true),
            (r#"{"Bool": {"acs:SecureTransport": [false]}}"#, false, true),
            (
                r#"{"Bool": {"acs:securetransport": ["true", "false"]}}"#,
                true,
                true,
            ),
        ] {
            assert_eq!(allowed_with(block, &https), on_https, "{block} over https");
            assert_eq!(allowed_with(block, &http), on_http, "{block} over http");
        }
    }

    #[test]
    fn condition_keys_are_case_insensitive() {
        let block = r#"{"IpAddress": {"ACS:SOURCEIP": "10.0.0.0/8"}}"#;
        assert!(allowed_with(block, &context()));
        let parsed = allow_if(block);
        let condition = &parsed.statements()[0].conditions()[0];
        assert_eq!(condition.key(), crate::ConditionKey::SourceIp);
        assert_eq!(condition.operator(), crate::Operator::IpAddress);
        assert_eq!(condition.values(), [serde_json::json!("10.0.0.0/8")]);
    }
}
