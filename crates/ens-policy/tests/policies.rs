//! The crate as the server uses it: documents in the shapes RAM users write, decided end to end,
//! plus properties of the parser over arbitrary input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::net::IpAddr;

use ens_policy::{
    evaluate, image_arn, AccessRequest, Decision, PolicyDocument, PolicyError, RequestContext, ALL_RESOURCES,
};
use proptest::prelude::*;
use time::macros::datetime;

const ACCOUNT: &str = "5123456789012345";

/// Read-only access to images, from the office network, over HTTPS, until the end of 2030.
const READ_ONLY_FROM_OFFICE: &str = r#"{
  "Version": "1",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["ens:Describe*"],
      "Resource": "*",
      "Condition": {
        "IpAddress": {"acs:SourceIp": ["203.0.113.0/24", "2001:db8:1::/48"]},
        "Bool": {"acs:SecureTransport": "true"},
        "DateLessThan": {"acs:CurrentTime": "2031-01-01T00:00:00+08:00"}
      }
    }
  ]
}"#;

/// Full image management, except that golden images can never be deleted.
const MANAGE_BUT_KEEP_GOLDEN: &str = r#"{
  "Version": "1",
  "Statement": [
    {"Effect": "Allow", "Action": "ens:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "ens:DeleteImage", "Resource": "acs:ens:*:*:image/m-golden*"}
  ]
}"#;

fn office_https() -> RequestContext {
    RequestContext {
        source_ip: Some(IpAddr::from([203, 0, 113, 7])),
        current_time: datetime!(2026-03-01 09:30:00 +08:00),
        secure_transport: true,
    }
}

fn decide(policies: &[&PolicyDocument], action: &str, resource: &str, context: &RequestContext) -> Decision {
    evaluate(
        policies,
        &AccessRequest {
            action,
            resource,
            context,
        },
    )
}

#[test]
fn read_only_policy_from_the_office() {
    let policy = PolicyDocument::parse(READ_ONLY_FROM_OFFICE).unwrap();
    let ctx = office_https();
    assert_eq!(
        decide(&[&policy], "ens:DescribeImages", ALL_RESOURCES, &ctx),
        Decision::Allow
    );
    assert_eq!(
        decide(
            &[&policy],
            "ens:DeleteImage",
            &image_arn(None, ACCOUNT, "m-1"),
            &ctx
        ),
        Decision::ImplicitDeny
    );

    let home = RequestContext {
        source_ip: Some(IpAddr::from([198, 51, 100, 1])),
        ..ctx
    };
    assert_eq!(
        decide(&[&policy], "ens:DescribeImages", ALL_RESOURCES, &home),
        Decision::ImplicitDeny
    );
    let plain_http = RequestContext {
        secure_transport: false,
        ..ctx
    };
    assert_eq!(
        decide(&[&policy], "ens:DescribeImages", ALL_RESOURCES, &plain_http),
        Decision::ImplicitDeny
    );
    let expired = RequestContext {
        current_time: datetime!(2031-01-01 00:00:00 +08:00),
        ..ctx
    };
    assert_eq!(
        decide(&[&policy], "ens:DescribeImages", ALL_RESOURCES, &expired),
        Decision::ImplicitDeny
    );
    let v6 = RequestContext {
        source_ip: Some("2001:db8:1:ff::10".parse().unwrap()),
        ..ctx
    };
    assert_eq!(
        decide(&[&policy], "ens:DescribeImages", ALL_RESOURCES, &v6),
        Decision::Allow
    );
}

#[test]
fn golden_images_survive_a_broad_grant() {
    let manage = PolicyDocument::parse(MANAGE_BUT_KEEP_GOLDEN).unwrap();
    let ctx = office_https();
    let golden = image_arn(Some("cn-hangzhou-telecom"), ACCOUNT, "m-golden-2024");
    let scratch = image_arn(Some("cn-hangzhou-telecom"), ACCOUNT, "m-scratch");
    assert_eq!(
        decide(&[&manage], "ens:DeleteImage", &golden, &ctx),
        Decision::ExplicitDeny
    );
    assert_eq!(
        decide(&[&manage], "ens:deleteimage", &golden, &ctx),
        Decision::ExplicitDeny
    );
    assert_eq!(
        decide(&[&manage], "ens:DeleteImage", &scratch, &ctx),
        Decision::Allow
    );
    assert_eq!(
        decide(&[&manage], "ens:ModifyImageAttribute", &golden, &ctx),
        Decision::Allow
    );

    // Another attached policy granting everything cannot lift the deny.
    let admin = PolicyDocument::parse(
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#,
    )
    .unwrap();
    assert_eq!(
        decide(&[&admin, &manage], "ens:DeleteImage", &golden, &ctx),
        Decision::ExplicitDeny
    );
}

#[test]
fn listing_keeps_the_authors_text_and_a_canonical_form() {
    let policy = PolicyDocument::parse(MANAGE_BUT_KEEP_GOLDEN).unwrap();
    assert_eq!(policy.source(), MANAGE_BUT_KEEP_GOLDEN);
    let canonical = policy.to_json();
    assert!(!canonical.contains('\n'));
    assert_eq!(
        PolicyDocument::parse(&canonical).unwrap().statements(),
        policy.statements()
    );
}

#[test]
fn errors_are_typed_and_precise() {
    let err = PolicyDocument::parse(
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},
           {"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringLike":{"acs:SourceIp":"1.*"}}}]}"#,
    )
    .unwrap_err();
    assert_eq!(
        err,
        PolicyError::UnsupportedOperator {
            at: "Statement[1].Condition".to_owned(),
            operator: "StringLike".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "Statement[1].Condition: unsupported operator \"StringLike\""
    );

    let err = PolicyDocument::parse(
        r#"{"Version":"1","Statement":[{"Effect":"Permit","Action":"*","Resource":"*"}]}"#,
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "Statement[0].Effect must be Allow or Deny");
}

/// Fragments of valid and nearly valid policies, so random documents reach the deep checks.
fn fragment() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"Version\"",
        "\"1\"",
        "\"Statement\"",
        "\"Effect\"",
        "\"Allow\"",
        "\"Deny\"",
        "\"Action\"",
        "\"NotAction\"",
        "\"Resource\"",
        "\"Condition\"",
        "\"*\"",
        "\"ens:*\"",
        "\"acs:ens:*:*:image/*\"",
        "\"IpAddress\"",
        "\"NotIpAddress\"",
        "\"DateLessThan\"",
        "\"Bool\"",
        "\"acs:SourceIp\"",
        "\"acs:CurrentTime\"",
        "\"acs:SecureTransport\"",
        "\"10.0.0.0/8\"",
        "\"::/0\"",
        "\"2019-08-12T17:00:00+08:00\"",
        "true",
        "false",
        "null",
        "1",
        "\"\"",
        "\"?\"",
    ])
}

fn valid_document() -> impl Strategy<Value = String> {
    let action = prop::sample::select(vec![
        "*",
        "ens:*",
        "ens:Describe*",
        "ens:DeleteImage",
        "ens:?reateImage",
    ]);
    let resource = prop::sample::select(vec![
        "*",
        "acs:ens:*:*:image/*",
        "acs:ens::1:image/m-1",
        "acs:ens:*:*:*",
    ]);
    let condition = prop::sample::select(vec![
        "",
        r#", "Condition": {"IpAddress": {"acs:SourceIp": "10.0.0.0/8"}}"#,
        r#", "Condition": {"NotIpAddress": {"acs:SourceIp": ["::/0", "1.2.3.4"]}}"#,
        r#", "Condition": {"DateGreaterThan": {"acs:CurrentTime": "2019-08-12T17:00:00+08:00"}}"#,
        r#", "Condition": {"Bool": {"acs:SecureTransport": false}}"#,
    ]);
    let statement = (prop::bool::ANY, prop::bool::ANY, action, resource, condition).prop_map(
        |(deny, not_action, action, resource, condition)| {
            format!(
                r#"{{"Effect": "{}", "{}": "{action}", "Resource": ["{resource}"]{condition}}}"#,
                if deny { "Deny" } else { "Allow" },
                if not_action { "NotAction" } else { "Action" },
            )
        },
    );
    prop::collection::vec(statement, 1..5)
        .prop_map(|statements| format!(r#"{{"Version": "1", "Statement": [{}]}}"#, statements.join(", ")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(text in any::<String>()) {
        let _ = PolicyDocument::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_policy_like_token_soup(tokens in prop::collection::vec(fragment(), 0..40)) {
        let _ = PolicyDocument::parse(&tokens.concat());
    }

    #[test]
    fn valid_documents_round_trip_and_evaluate(
        json in valid_document(),
        action in "ens:[A-Za-z]{0,12}",
        image in "m-[a-z0-9]{0,4}",
        ip in any::<Option<IpAddr>>(),
        secure in any::<bool>(),
    ) {
        let policy = PolicyDocument::parse(&json).unwrap();
        let again = PolicyDocument::parse(&policy.to_json()).unwrap();
        prop_assert_eq!(again.statements(), policy.statements());
        let context = RequestContext {
            source_ip: ip,
            current_time: datetime!(2024-01-01 00:00 UTC),
            secure_transport: secure,
        };
        let resource = image_arn(None, "1", &image);
        let request = AccessRequest { action: &action, resource: &resource, context: &context };
        prop_assert_eq!(evaluate(&[&policy], &request), evaluate(&[&again], &request));
    }
}
