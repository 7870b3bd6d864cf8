//! Authentication: who signed the call, and is the signature fresh and genuine.

use ens_domain::{AccessKeyId, AccessKeyStatus, Principal, MAX_ACCESS_KEY_ID_CHARS};
use ens_protocol::{ApiError, Credentials, ErrorCode};
use ens_store::NonceClaim;
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
    let not_found = || ApiError::new(ErrorCode::InvalidAccessKeyIdNotFound);
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
    let key = state.store.access_key(&key_id).await?.ok_or_else(not_found)?;
    if key.status == AccessKeyStatus::Inactive {
        return Err(ApiError::new(ErrorCode::InvalidAccessKeyIdInactive).into());
    }
    let secret = state.master_key.open(&key.secret).map_err(|error| {
        tracing::error!(access_key_id = %key_id, %error, "stored secret cannot be opened");
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
    Ok(Verified {
        claim: NonceClaim {
            key: key_id.clone(),
            nonce: credentials.nonce.clone(),
            expires_at: now + state.config.nonce_window,
        },
        caller: Caller {
            principal: key.principal,
            access_key_id: key_id,
        },
    })
}

/// Claims a verified call's nonce: the last check of authentication.
///
/// # Errors
/// `SignatureNonce.Used` for a replay; a store failure as the wire error it maps to.
pub async fn claim_nonce(
    state: &AppState,
    claim: NonceClaim,
    now: OffsetDateTime,
) -> Result<(), ServerError> {
    // A failed claim is a store failure like any other (ServerError maps it to the wire).
    if !state.nonces.claim(claim, now).await? {
        return Err(ApiError::new(ErrorCode::SignatureNonceUsed).into());
    }
    Ok(())
}
