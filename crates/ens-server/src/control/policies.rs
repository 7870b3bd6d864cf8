//! RAM policies through the control API: what `ens-images admin policy ...` does, for tests
//! that give a RAM user rights (or take them away) without shelling out.
//!
//! A document is validated by the same parser, [`PolicyDocument::parse`], as the admin
//! command, and the same store calls keep it, so both ways to manage policies agree. The
//! request path reads a user's policies from the store on every call (nothing is cached), so
//! a change made here applies from the next API call on.

use std::fmt;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ens_domain::{AccountId, RamUserName};
use ens_policy::PolicyDocument;
use ens_store::{AdminStore, StoreError, StoredPolicy};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{account, body, ok, Answer, ControlError, ControlState};

/// The query string these routes accept: none; a parameter sent is refused, not ignored.
type NoQuery = Result<Query<std::collections::HashMap<String, String>>, QueryRejection>;

/// Refuses any query parameter: a typo must not pass for an option these routes do not have.
fn no_query(params: NoQuery) -> Result<(), ControlError> {
    let Query(params) = params.map_err(|rejection| ControlError::InvalidInput(rejection.body_text()))?;
    match params.keys().next() {
        Some(name) => Err(ControlError::InvalidInput(format!(
            "unknown query parameter {name:?}; this route takes none"
        ))),
        None => Ok(()),
    }
}

/// Policy names: 1 to 128 letters, digits and `-`, the cloud's rule for custom policies and
/// the one `admin policy create` applies.
fn policy_name(name: &str) -> Result<(), ControlError> {
    Ok(ens_domain::validation::validate_policy_name("PolicyName", name)?)
}

/// A user named in the path; a name no user can have is an unknown user.
fn user(value: &str) -> Result<RamUserName, ControlError> {
    RamUserName::parse("UserName", value)
        .map_err(|error| ControlError::NotFound(format!("no such RAM user: {error}")))
}

/// JSON text rebuilt from the parsed tokens of a body value: keys in the order sent, and a
/// key sent twice written twice, so the policy parser (which refuses duplicate keys) judges
/// what the caller sent, not what a map kept of it.
struct JsonText(String);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor).map(JsonText)
    }
}

/// Writes each JSON value it visits back as JSON text.
struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<String, E> {
        serde_json::Number::from_f64(value)
            .map(|number| number.to_string())
            .ok_or_else(|| E::custom("a number JSON cannot carry"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        Ok(Value::String(value.to_owned()).to_string())
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".to_owned())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<String, A::Error> {
        let mut text = String::from("[");
        while let Some(JsonText(element)) = seq.next_element()? {
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&element);
        }
        text.push(']');
        Ok(text)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<String, A::Error> {
        let mut text = String::from("{");
        while let Some(key) = map.next_key::<String>()? {
            let JsonText(value) = map.next_value()?;
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&Value::String(key).to_string());
            text.push(':');
            text.push_str(&value);
        }
        text.push('}');
        Ok(text)
    }
}

/// `PolicyDocument` as sent: a JSON object, or a string holding the document's text (as
/// `admin policy create` reads it from a file).
struct DocumentText(String);

impl<'de> Deserialize<'de> for DocumentText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Takes a string as the text itself and an object as JSON to rebuild; nothing else.
        struct DocumentVisitor;

        impl<'de> Visitor<'de> for DocumentVisitor {
            type Value = String;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a policy document: a JSON object, or a string holding one")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
                Ok(value.to_owned())
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<String, A::Error> {
                TextVisitor.visit_map(map)
            }
        }

        deserializer.deserialize_any(DocumentVisitor).map(DocumentText)
    }
}

/// `POST /accounts/{id}/policies`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreatePolicyRequest {
    policy_name: String,
    policy_document: DocumentText,
}

/// `POST /accounts/{id}/users/{user}/policies`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AttachRequest {
    policy_name: String,
}

/// How a stored policy is shown: its document as JSON (as written), and who has it.
pub fn policy_json(policy: &StoredPolicy) -> Value {
    json!({
        "AccountId": policy.account.as_str(),
        "PolicyName": policy.name,
        "PolicyDocument": serde_json::from_str::<Value>(&policy.document)
            .unwrap_or_else(|_| Value::String(policy.document.clone())),
        "AttachedTo": policy.attached_to.iter().map(RamUserName::as_str).collect::<Vec<_>>(),
        "CreationTime": policy
            .created_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
    })
}

/// `GET /accounts/{id}/policies`: every policy of the account with its document and users.
pub(super) async fn list_policies(
    State(state): State<ControlState>,
    Path(owner): Path<String>,
    params: NoQuery,
) -> Answer {
    no_query(params)?;
    let id = account(&owner)?;
    let policies = state.store.policies(Some(&id)).await?;
    // An empty list and an unknown account look the same to the store; only then ask which.
    if policies.is_empty()
        && !state
            .store
            .accounts()
            .await?
            .iter()
            .any(|summary| summary.id == id)
    {
        return Err(ControlError::NotFound("no such account".into()));
    }
    ok(
        StatusCode::OK,
        &json!({
            "AccountId": id.as_str(),
            "Policies": policies.iter().map(policy_json).collect::<Vec<_>>(),
        }),
    )
}

/// `POST /accounts/{id}/policies`: validates the document as `admin policy create` does and
/// stores it as sent.
pub(super) async fn create_policy(
    State(state): State<ControlState>,
    Path(owner): Path<String>,
    params: NoQuery,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    no_query(params)?;
    let request: CreatePolicyRequest = body(bytes)?;
    let DocumentText(text) = request.policy_document;
    let document = PolicyDocument::parse(&text)
        .map_err(|error| ControlError::InvalidInput(format!("PolicyDocument: {error}")))?;
    policy_name(&request.policy_name)?;
    let id = account(&owner)?;
    state
        .store
        .create_policy(
            &id,
            &request.policy_name,
            document.source(),
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    tracing::info!(account = %id, policy = %request.policy_name, "control: policy created");
    ok(
        StatusCode::CREATED,
        &json!({
            "AccountId": id.as_str(),
            "PolicyName": request.policy_name,
            "PolicyDocument": serde_json::from_str::<Value>(document.source()).unwrap_or(Value::Null),
            "Statements": document.statements().len(),
        }),
    )
}

/// `DELETE /accounts/{id}/policies/{name}`: refused with 409 while the policy is attached,
/// as `admin policy delete` refuses it (detach it from each user first).
pub(super) async fn delete_policy(
    State(state): State<ControlState>,
    Path((owner, name)): Path<(String, String)>,
    params: NoQuery,
) -> Answer {
    no_query(params)?;
    let id = account(&owner)?;
    match state.store.delete_policy(&id, &name).await {
        Ok(()) => {}
        Err(StoreError::Conflict(why)) => return Err(ControlError::Conflict(why)),
        Err(error) => return Err(error.into()),
    }
    tracing::info!(account = %id, policy = %name, "control: policy deleted");
    ok(
        StatusCode::OK,
        &json!({"AccountId": id.as_str(), "PolicyName": name, "Deleted": true}),
    )
}

/// What attach and detach answer.
fn attachment_json(owner: &AccountId, policy: &str, user: &RamUserName, attached: bool) -> Value {
    json!({"AccountId": owner.as_str(), "UserName": user.as_str(), "PolicyName": policy, "Attached": attached})
}

/// `POST /accounts/{id}/users/{user}/policies`: attaches a policy; attaching twice is a no-op.
pub(super) async fn attach_policy(
    State(state): State<ControlState>,
    Path((owner, name)): Path<(String, String)>,
    params: NoQuery,
    bytes: Result<Bytes, BytesRejection>,
) -> Answer {
    no_query(params)?;
    let request: AttachRequest = body(bytes)?;
    let (id, user) = (account(&owner)?, user(&name)?);
    state
        .store
        .attach_policy(&id, &user, &request.policy_name)
        .await?;
    tracing::info!(account = %id, user = %user, policy = %request.policy_name, "control: policy attached");
    ok(
        StatusCode::OK,
        &attachment_json(&id, &request.policy_name, &user, true),
    )
}

/// `DELETE /accounts/{id}/users/{user}/policies/{name}`: detaches a policy; 404 when it was
/// not attached.
pub(super) async fn detach_policy(
    State(state): State<ControlState>,
    Path((owner, name, policy)): Path<(String, String, String)>,
    params: NoQuery,
) -> Answer {
    no_query(params)?;
    let (id, user) = (account(&owner)?, user(&name)?);
    state.store.detach_policy(&id, &user, &policy).await?;
    tracing::info!(account = %id, user = %user, policy = %policy, "control: policy detached");
    ok(StatusCode::OK, &attachment_json(&id, &policy, &user, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(body: &str) -> Result<String, serde_json::Error> {
        serde_json::from_str::<CreatePolicyRequest>(body).map(|request| request.policy_document.0)
    }

    #[test]
    fn an_object_is_rebuilt_in_order_with_duplicate_keys_kept() {
        let text = document(
            r#"{"PolicyName": "p", "PolicyDocument": {"Version": "1", "Statement": [
                {"Effect": "Allow", "Action": ["ens:Describe*"], "Resource": "*", "Effect": "Deny"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            text,
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["ens:Describe*"],"Resource":"*","Effect":"Deny"}]}"#
        );
        let refused = PolicyDocument::parse(&text).unwrap_err().to_string();
        assert!(refused.contains("Effect"), "{refused}");
    }

    #[test]
    fn a_string_is_the_text_itself_and_other_values_are_refused() {
        let text = document(r#"{"PolicyName": "p", "PolicyDocument": "{\"Version\": \"1\"}"}"#).unwrap();
        assert_eq!(text, r#"{"Version": "1"}"#);
        assert!(document(r#"{"PolicyName": "p", "PolicyDocument": [1]}"#).is_err());
        assert!(document(r#"{"PolicyName": "p", "PolicyDocument": {}, "Extra": 1}"#).is_err());
    }

    #[test]
    fn policy_names_follow_the_admin_rule() {
        assert!(policy_name("read-only-1").is_ok());
        assert!(policy_name("").is_err());
        assert!(policy_name("has space").is_err());
        assert!(policy_name(&"p".repeat(129)).is_err());
    }
}
