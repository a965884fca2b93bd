//! Encryption of webhook secrets at rest.
//!
//! Secrets are sealed with XChaCha20-Poly1305 under a key from `CRM_SECRET_KEY` (base64 of 32 bytes), with a
//! random 24-byte nonce each time and the workspace id as associated data, so a ciphertext copied to another
//! workspace's row does not open. `CRM_SECRET_KEY_PREVIOUS` (comma-separated) lists older keys that may still
//! open what they sealed: rotating the key is "add the new key, keep the old one as previous, re-seal, drop it".
//!
//! Layout of a sealed value: `0x01` (format version) ‖ key id (4 bytes: SHA-256 of the key, truncated) ‖ nonce
//! (24 bytes) ‖ ciphertext and tag.

use crate::config::ConfigError;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;

const FORMAT_V1: u8 = 1;

/// `N` bytes from the operating system's CSPRNG (tokens, generated webhook secrets).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    use chacha20poly1305::aead::rand_core::RngCore;
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 24;

struct Key {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

/// The current key, which seals, and any previous keys, which only open.
#[derive(Clone)]
pub struct SecretKeyring {
    keys: Arc<Vec<Key>>,
}

impl fmt::Debug for SecretKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKeyring({} key(s), redacted)", self.keys.len())
    }
}

/// A sealed value did not open with any key of the ring (wrong key, wrong workspace, or corrupted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenError;

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sealed secret does not open with any configured CRM_SECRET_KEY")
    }
}

impl std::error::Error for OpenError {}

impl SecretKeyring {
    /// Builds the ring from `CRM_SECRET_KEY` and the optional `CRM_SECRET_KEY_PREVIOUS`.
    pub fn from_env_values(current: &str, previous: Option<&str>) -> Result<Self, ConfigError> {
        let mut keys = vec![Self::parse_key(current, "CRM_SECRET_KEY")?];
        for old in previous.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()) {
            keys.push(Self::parse_key(old, "CRM_SECRET_KEY_PREVIOUS")?);
        }
        Ok(SecretKeyring { keys: Arc::new(keys) })
    }

    /// A ring of one key given as raw bytes (tests and tools).
    pub fn from_bytes(key: [u8; 32]) -> Self {
        SecretKeyring { keys: Arc::new(vec![Self::key(&key)]) }
    }

    fn parse_key(b64: &str, variable: &'static str) -> Result<Key, ConfigError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| ConfigError::invalid(variable, "must be base64 of 32 bytes (it is not valid base64)"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            ConfigError::invalid(variable, format!("must be base64 of 32 bytes (it decodes to {} bytes)", b.len()))
        })?;
        Ok(Self::key(&bytes))
    }

    fn key(bytes: &[u8; 32]) -> Key {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Key { id, cipher: XChaCha20Poly1305::new(bytes.into()) }
    }

    /// Seals `secret` for `context` (the workspace id) with the current key.
    pub fn seal(&self, secret: &SecretString, context: &[u8]) -> Vec<u8> {
        let key = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload { msg: secret.expose_secret().as_bytes(), aad: context };
        // Encryption with a valid key and nonce length only fails for messages beyond the cipher's 256 GiB limit.
        let ciphertext = key.cipher.encrypt(&nonce, payload).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + KEY_ID_LEN + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Opens a sealed value with whichever key of the ring sealed it.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<SecretString, OpenError> {
        if sealed.len() < 1 + KEY_ID_LEN + NONCE_LEN || sealed[0] != FORMAT_V1 {
            return Err(OpenError);
        }
        let (id, rest) = sealed[1..].split_at(KEY_ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key = self.keys.iter().find(|k| k.id == id).ok_or(OpenError)?;
        let plain =
            key.cipher.decrypt(nonce.into(), Payload { msg: ciphertext, aad: context }).map_err(|_| OpenError)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| OpenError)
    }

    /// Whether `sealed` was sealed with the current key (a re-seal job skips those).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.get(1..1 + KEY_ID_LEN) == Some(&self.keys[0].id[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: [u8; 32]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn seals_and_opens_for_the_same_context_only() {
        let ring = SecretKeyring::from_bytes([1; 32]);
        let secret = SecretString::from("whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=");
        let sealed = ring.seal(&secret, b"ws-a");
        assert!(!sealed.windows(6).any(|w| w == b"whsec_"), "plaintext leaked into the sealed value");
        assert_eq!(ring.open(&sealed, b"ws-a").unwrap().expose_secret(), secret.expose_secret());
        assert_eq!(ring.open(&sealed, b"ws-b").unwrap_err(), OpenError);
    }

    #[test]
    fn two_seals_of_one_secret_differ() {
        let ring = SecretKeyring::from_bytes([1; 32]);
        let secret = SecretString::from("s");
        assert_ne!(ring.seal(&secret, b"c"), ring.seal(&secret, b"c"));
    }

    #[test]
    fn previous_keys_open_but_do_not_seal() {
        let old = SecretKeyring::from_env_values(&b64([1; 32]), None).unwrap();
        let sealed_old = old.seal(&SecretString::from("x"), b"c");
        let rotated = SecretKeyring::from_env_values(&b64([2; 32]), Some(&format!(" {} ", b64([1; 32])))).unwrap();
        assert_eq!(rotated.open(&sealed_old, b"c").unwrap().expose_secret(), "x");
        assert!(!rotated.is_current(&sealed_old));
        let sealed_new = rotated.seal(&SecretString::from("y"), b"c");
        assert!(rotated.is_current(&sealed_new));
        assert!(old.open(&sealed_new, b"c").is_err());
    }

    #[test]
    fn bad_keys_name_their_variable() {
        assert_eq!(SecretKeyring::from_env_values("!!", None).unwrap_err().variable, "CRM_SECRET_KEY");
        let err = SecretKeyring::from_env_values(&b64([1; 32]), Some("AAAA")).unwrap_err();
        assert_eq!(err.variable, "CRM_SECRET_KEY_PREVIOUS");
        assert!(err.problem.contains("3 bytes"), "{}", err.problem);
    }

    #[test]
    fn corrupted_values_do_not_open() {
        let ring = SecretKeyring::from_bytes([1; 32]);
        let mut sealed = ring.seal(&SecretString::from("x"), b"c");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(ring.open(&sealed, b"c").is_err());
        assert!(ring.open(&[], b"c").is_err());
    }
}
