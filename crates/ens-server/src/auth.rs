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

/// Refuses STS tokens first (none is ever valid here), then runs the checks in the
/// documented order: key lookup, signature, timestamp, nonce. The
/// nonce is claimed last, so unauthenticated traffic cannot burn a caller's nonces.
pub async fn authenticate(
    state: &AppState,
    credentials: &Credentials,
    now: OffsetDateTime,
) -> Result<Caller, ServerError> {
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
    let claim = NonceClaim {
        key: key_id.clone(),
        nonce: credentials.nonce.clone(),
        expires_at: now + state.config.nonce_window,
    };
    // A failed claim is a store failure like any other (ServerError maps it to the wire).
    if !state.nonces.claim(claim, now).await? {
        return Err(ApiError::new(ErrorCode::SignatureNonceUsed).into());
    }
    Ok(Caller {
        principal: key.principal,
        access_key_id: key_id,
    })
}
