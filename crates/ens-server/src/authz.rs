//! Authorization: may this caller run this action on this resource?
//!
//! An account's owner may do everything in its own account. A RAM user may do what its
//! attached policies allow, evaluated as the cloud documents it: an explicit Deny wins, then
//! an Allow, else the call is denied. A user's policies come from the store's read model,
//! which drops them on any change of users, policies or attachments (an `ens-images admin`
//! change included), and each document is parsed once per distinct text.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ens_policy::{evaluate, AccessRequest, Decision, PolicyDocument, PolicyError, RequestContext};
use ens_protocol::{ApiError, ErrorCode};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::error::ServerError;
use crate::operation::Operation;
use crate::AppState;

/// Most parsed documents kept; past it the set is dropped whole and filled again as used.
const MAX_PARSED_POLICIES: usize = 10_000;

/// Policy documents parsed once each, by their text: a text is its own key, so a parse kept
/// here can never be out of date.
#[derive(Default)]
pub struct ParsedPolicies {
    parsed: Mutex<HashMap<String, Arc<PolicyDocument>>>,
}

impl ParsedPolicies {
    /// The document `text` parses to.
    fn parse(&self, text: &str) -> Result<Arc<PolicyDocument>, PolicyError> {
        if let Some(document) = self
            .parsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(text)
        {
            return Ok(Arc::clone(document));
        }
        let document = Arc::new(PolicyDocument::parse(text)?);
        let mut parsed = self.parsed.lock().unwrap_or_else(PoisonError::into_inner);
        if parsed.len() >= MAX_PARSED_POLICIES {
            parsed.clear();
        }
        parsed.insert(text.to_owned(), Arc::clone(&document));
        Ok(document)
    }
}

/// What the conditions of a policy may look at.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Whether the call came over TLS.
    pub secure_transport: bool,
}

/// Refuses the call unless the caller may run `operation`'s RAM action on `resource`, which
/// is `operation.resource(..)` for the caller's account (computed once by the pipeline, which
/// also audits it).
///
/// # Errors
/// `NoPermission` when denied (explicitly or by default).
pub async fn authorize(
    state: &AppState,
    caller: &Caller,
    operation: &Operation,
    resource: &str,
    context: Context,
    now: OffsetDateTime,
) -> Result<(), ServerError> {
    let Some(user) = &caller.principal.user else {
        return Ok(());
    };
    let texts = state
        .store
        .user_policy_documents(&caller.principal.account, user)
        .await?;
    let documents: Vec<Arc<PolicyDocument>> = texts
        .iter()
        .filter_map(|text| match state.parsed_policies.parse(text) {
            Ok(document) => Some(document),
            Err(error) => {
                // Documents are validated before they are stored; an unreadable one grants nothing.
                tracing::error!(%error, user = %user, "stored policy cannot be parsed; ignored");
                None
            }
        })
        .collect();
    let references: Vec<&PolicyDocument> = documents.iter().map(|document| &**document).collect();
    let request_context = RequestContext {
        source_ip: context.source_ip,
        current_time: now,
        secure_transport: context.secure_transport,
    };
    let decision = evaluate(
        &references,
        &AccessRequest {
            action: operation.ram_action(),
            resource,
            context: &request_context,
        },
    );
    match decision {
        Decision::Allow => Ok(()),
        Decision::ExplicitDeny | Decision::ImplicitDeny => {
            let why = if decision == Decision::ExplicitDeny {
                "an explicit Deny in a policy"
            } else {
                "no policy allows it"
            };
            Err(ApiError::with_message(
                ErrorCode::NoPermission,
                format!(
                    "Permission denied: RAM user {user} may not perform {} on {resource} ({why}).",
                    operation.ram_action()
                ),
            )
            .into())
        }
    }
}
