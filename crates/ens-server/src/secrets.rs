//! AccessKey secrets at rest: sealed with AES-256-GCM under the operator's master key.
//!
//! Signatures are HMACs, so the verifier needs each secret itself; what the store keeps is
//! `sealed:v1:` + base64(nonce || ciphertext || tag). A copy of the database without the
//! master key reveals no secret. The key never comes from the source code: the operator
//! supplies it (or lets the first start generate one into a file it controls).

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ens_protocol::AccessKeySecret;
use zeroize::Zeroizing;

/// Prefix of a sealed secret, with the format version.
const SEALED_PREFIX: &str = "sealed:v1:";

/// Why a master key or a sealed secret was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The master key text is not 32 bytes in base64 or hex.
    #[error("a master key is 32 bytes, written as 64 hex digits or in base64")]
    BadMasterKey,
    /// The stored value was sealed under another key, or damaged.
    #[error("a stored secret cannot be opened with this master key")]
    CannotOpen,
}

/// The operator's key that seals every AccessKey secret.
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Reads a key written as 64 hex digits or as base64 of 32 bytes (surrounding
    /// whitespace ignored).
    ///
    /// # Errors
    /// `BadMasterKey` for anything else.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = Zeroizing::new(if text.len() == 64 {
            hex::decode(text).map_err(|_| SecretError::BadMasterKey)?
        } else {
            STANDARD.decode(text).map_err(|_| SecretError::BadMasterKey)?
        });
        if bytes.len() != 32 {
            return Err(SecretError::BadMasterKey);
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// A fresh random key, as text for the operator to keep.
    #[must_use]
    pub fn generate() -> Zeroizing<String> {
        let key = Aes256Gcm::generate_key(OsRng);
        Zeroizing::new(STANDARD.encode(key))
    }

    /// Seals a secret for the store.
    #[must_use]
    pub fn seal(&self, secret: &str) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and a 96-bit nonce cannot fail; keep the type honest anyway.
        let ciphertext = self.cipher.encrypt(&nonce, secret.as_bytes()).unwrap_or_default();
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed))
    }

    /// Opens a sealed secret.
    ///
    /// # Errors
    /// `CannotOpen` for a value sealed under another key, damaged, or not sealed at all.
    pub fn open(&self, stored: &str) -> Result<AccessKeySecret, SecretError> {
        let encoded = stored
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretError::CannotOpen)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| SecretError::CannotOpen)?;
        if bytes.len() < 12 {
            return Err(SecretError::CannotOpen);
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(nonce), ciphertext)
                .map_err(|_| SecretError::CannotOpen)?,
        );
        let text = String::from_utf8(plain.to_vec()).map_err(|_| SecretError::CannotOpen)?;
        Ok(AccessKeySecret::new(text))
    }

    /// Whether a stored value is sealed (as opposed to a plain secret from an older store).
    #[must_use]
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_same_key_only() {
        let key = MasterKey::parse(&MasterKey::generate()).unwrap();
        let sealed = key.seal("my-secret");
        assert!(MasterKey::is_sealed(&sealed));
        assert!(!sealed.contains("my-secret"));
        assert_eq!(key.open(&sealed).unwrap().expose(), "my-secret");
        // Two seals of one secret differ (fresh nonce).
        assert_ne!(key.seal("my-secret"), sealed);
        let other = MasterKey::parse(&"ab".repeat(32)).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(key.open("my-secret").is_err());
        assert!(key.open("sealed:v1:AAAA").is_err());
    }

    #[test]
    fn master_keys_are_32_bytes_in_hex_or_base64() {
        assert!(MasterKey::parse(&"0f".repeat(32)).is_ok());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 32])).is_ok());
        assert!(MasterKey::parse("short").is_err());
        assert!(MasterKey::parse(&STANDARD.encode([7u8; 16])).is_err());
        assert!(!format!("{:?}", MasterKey::parse(&"0f".repeat(32)).unwrap()).contains("0f"));
    }
}
