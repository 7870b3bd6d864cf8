//! Authentication: who signed the call, and is the signature fresh and genuine.

use ens_domain::{AccessKeyId, AccessKeyStatus, Principal, MAX_ACCESS_KEY_ID_CHARS};
use ens_protocol::{ApiError, Credentials, ErrorCode};
use ens_store::{NonceClaim, StoredAccessKey};
use time::OffsetDateTime;

use crate::error::ServerError;
use crate::AppState;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account owner or RAM user the key acts for.
    pub principal: Principal,
    /// The key that signed.
    pub access_key_id: AccessKeyId,
}

/// A call whose key, signature and timestamp are good, with the nonce it still has to claim
/// ([`claim_nonce`]).
#[derive(Debug)]
pub struct Verified {
    /// Who signed.
    pub caller: Caller,
    /// The claim of its SignatureNonce.
    pub claim: NonceClaim,
    /// The key checked, when it was read as the replica held it, before the request was
    /// known to be current ([`ens_store::RequestStore::access_key_to_confirm`]): [`claim_nonce`]
    /// confirms it.
    unconfirmed_key: Option<StoredAccessKey>,
}

/// Refuses STS tokens first (none is ever valid here), then runs the checks in the
/// documented order: key lookup, signature, timestamp. The nonce is claimed afterwards,
/// once the call passed throttling ([`claim_nonce`]), so that neither unauthenticated
/// traffic nor a throttled caller burns nonces or costs a record write.
pub async fn verify(
    state: &AppState,
    credentials: &Credentials,
    now: OffsetDateTime,
) -> Result<Verified, ServerError> {
    if credentials.has_security_token {
        return Err(ApiError::new(ErrorCode::InvalidSecurityTokenMalformed).into());
    }
    // Checked before anything is looked up or stored: no key has such an ID.
    let key_id = AccessKeyId::parse(&credentials.access_key_id).map_err(|_| {
        ApiError::with_message(
            ErrorCode::InvalidAccessKeyIdNotFound,
            format!(
                "Specified access key is not found: an AccessKeyId is 1 to {MAX_ACCESS_KEY_ID_CHARS} printable \
                 ASCII characters, this one has {} bytes.",
                credentials.access_key_id.len()
            ),
        )
    })?;
    // A held key that refuses the call may be out of date (a secret replaced or a key enabled
    // through another replica a moment ago): only the current key may refuse.
    let held = state
        .store
        .access_key_to_confirm(&key_id)
        .filter(|held| check_key(state, credentials, held, now).is_ok());
    let (key, unconfirmed_key) = match held {
        Some(held) => (held.clone(), Some(held)),
        None => {
            let current = current_key(state, &key_id).await?;
            check_key(state, credentials, &current, now)?;
            (current, None)
        }
    };
    Ok(Verified {
        claim: NonceClaim {
            key: key_id,
            nonce: credentials.nonce.clone(),
            expires_at: now + state.config.nonce_window,
        },
        caller: Caller {
            principal: key.principal,
            access_key_id: key.id,
        },
        unconfirmed_key,
    })
}

/// The key `id` as the store has it now.
async fn current_key(state: &AppState, id: &AccessKeyId) -> Result<StoredAccessKey, ServerError> {
    Ok(state
        .store
        .access_key(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidAccessKeyIdNotFound))?)
}

/// Whether `key` may sign this call and did: status, signature, timestamp.
fn check_key(
    state: &AppState,
    credentials: &Credentials,
    key: &StoredAccessKey,
    now: OffsetDateTime,
) -> Result<(), ServerError> {
    if key.status == AccessKeyStatus::Inactive {
        return Err(ApiError::new(ErrorCode::InvalidAccessKeyIdInactive).into());
    }
    let secret = state.master_key.open(&key.secret).map_err(|error| {
        tracing::error!(access_key_id = %key.id, %error, "stored secret cannot be opened");
        ApiError::new(ErrorCode::InternalError)
    })?;
    credentials.verify(&secret)?;
    credentials.check_clock(now)?;
    if let Some(started) = state.replay_guard_since {
        // Within the clock window, a request signed before the start may have been answered
        // already, and its nonce is no longer on record.
        if credentials.timestamp < started {
            return Err(ApiError::with_message(
                ErrorCode::InvalidTimeStampExpired,
                "Specified time stamp or date value is expired: it is earlier than the server's last start, \
                 when its record of used nonces was lost. Sign the request again.",
            )
            .into());
        }
    }
    Ok(())
}

/// Claims a verified call's nonce, the last check of authentication, and confirms a key
/// read before the request was known to be current: a key changed meanwhile (disabled,
/// deleted, replaced) is checked again as it is now, and refused as it would have been.
///
/// # Errors
/// `SignatureNonce.Used` for a replay; what [`verify`] returns for a key changed meanwhile;
/// a store failure as the wire error it maps to.
pub async fn claim_nonce(
    state: &AppState,
    verified: Verified,
    credentials: &Credentials,
    now: OffsetDateTime,
) -> Result<Caller, ServerError> {
    // A failed claim is a store failure like any other (ServerError maps it to the wire).
    if !state.nonces.claim(verified.claim, now).await? {
        return Err(ApiError::new(ErrorCode::SignatureNonceUsed).into());
    }
    let Some(checked) = verified.unconfirmed_key else {
        return Ok(verified.caller);
    };
    let key = current_key(state, &checked.id).await?;
    if key != checked {
        check_key(state, credentials, &key, now)?;
    }
    Ok(Caller {
        principal: key.principal,
        access_key_id: key.id,
    })
}
