//! Secrets at rest: provider credentials and token-signing private keys are sealed with a
//! key-encryption key (KEK) from configuration before they reach the database.
//!
//! A sealed value is `"okek1" ‖ KEK id (8 bytes) ‖ nonce (24) ‖ XChaCha20-Poly1305 ciphertext`,
//! with the column and row it belongs to as associated data, so a sealed value copied into
//! another row or column does not open. The KEK id (the first 8 bytes of SHA-256 of the key)
//! lets a value sealed under an earlier KEK be opened during a rotation (`secrets.previous_keks`)
//! and found by `onboard keys rewrap`, which seals everything again under the current one.
//!
//! Without a configured KEK, values are sealed under a built-in development key: the database
//! still never holds plaintext, but anyone with the binary can open them, so live partners cannot
//! be given provider secrets until a real KEK is configured.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8] = b"okek1";
const ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;

/// Where the KEK comes from: `kek` (base64 of 32 bytes, typically `ONBOARD_SECRETS__KEK`) or
/// `kek_file` (a file holding the same); earlier KEKs stay readable while `onboard keys rewrap`
/// moves values to the current one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSettings {
    #[serde(skip_serializing)]
    pub kek: Option<SecretString>,
    pub kek_file: String,
    #[serde(skip_serializing)]
    pub previous_keks: Vec<SecretString>,
    pub previous_kek_files: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KekError {
    #[error("secrets: {0}")]
    Config(String),
    #[error("a sealed secret is not in the sealed format")]
    NotSealed,
    #[error("a secret was sealed under a key-encryption key that is not configured (id {0})")]
    UnknownKek(String),
    #[error("a sealed secret does not open: wrong key, another row's value, or corrupted")]
    Corrupt,
}

struct Key {
    id: [u8; ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn new(bytes: &[u8; 32]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest[..ID_LEN]);
        Self { id, cipher: XChaCha20Poly1305::new(bytes.into()) }
    }

    fn parse(base64: &str, what: &str) -> Result<Self, KekError> {
        let bytes = STANDARD.decode(base64.trim()).map_err(|_| KekError::Config(format!("{what} is not base64")))?;
        let bytes: [u8; 32] =
            bytes.try_into().map_err(|_| KekError::Config(format!("{what} must be 32 bytes (base64-encoded)")))?;
        Ok(Self::new(&bytes))
    }

    fn from_file(path: &str) -> Result<Self, KekError> {
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| KekError::Config(format!("cannot read the KEK file {path}: {e}")))?;
        Self::parse(&text, &format!("the KEK file {path}"))
    }
}

/// The current KEK and the earlier ones still accepted for opening.
pub struct Kek {
    current: Key,
    previous: Vec<Key>,
    configured: bool,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kek").field("id", &self.current_id()).field("configured", &self.configured).finish()
    }
}

impl Kek {
    /// The configured KEK, or the development key when none is configured.
    pub fn from_settings(settings: &SecretsSettings) -> Result<Self, KekError> {
        let current = match (&settings.kek, settings.kek_file.as_str()) {
            (Some(_), file) if !file.is_empty() => {
                return Err(KekError::Config("set secrets.kek or secrets.kek_file, not both".into()));
            }
            (Some(kek), _) => Some(Key::parse(kek.expose_secret(), "secrets.kek")?),
            (None, "") => None,
            (None, file) => Some(Key::from_file(file)?),
        };
        let mut previous = Vec::new();
        for kek in &settings.previous_keks {
            previous.push(Key::parse(kek.expose_secret(), "secrets.previous_keks")?);
        }
        for file in &settings.previous_kek_files {
            previous.push(Key::from_file(file)?);
        }
        let configured = current.is_some();
        let current = current.unwrap_or_else(development_key);
        // The development key stays readable after a real KEK is configured, so a database
        // started without one can be rewrapped.
        if configured {
            previous.push(development_key());
        }
        Ok(Self { current, previous, configured })
    }

    /// The development key alone (tests, and a first start with nothing configured).
    pub fn development() -> Self {
        Self { current: development_key(), previous: Vec::new(), configured: false }
    }

    /// Whether a real KEK is configured (live partners' secrets need one).
    pub fn is_configured(&self) -> bool {
        self.configured
    }

    /// The current KEK's id, hex (safe to log: it identifies the key, it does not reveal it).
    pub fn current_id(&self) -> String {
        hex::encode(self.current.id)
    }

    /// Seals `plaintext` for the place named by `aad` (e.g. `partner_kyc.secret_key:7`).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = self
            .current
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: aad.as_bytes() })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut sealed = Vec::with_capacity(MAGIC.len() + ID_LEN + NONCE_LEN + ciphertext.len());
        sealed.extend_from_slice(MAGIC);
        sealed.extend_from_slice(&self.current.id);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    /// Opens a value sealed for `aad` under the current or an earlier KEK.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, KekError> {
        let rest = sealed.strip_prefix(MAGIC).ok_or(KekError::NotSealed)?;
        if rest.len() < ID_LEN + NONCE_LEN {
            return Err(KekError::Corrupt);
        }
        let (id, rest) = rest.split_at(ID_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| KekError::UnknownKek(hex::encode(id)))?;
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| KekError::Corrupt)?;
        key.cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map_err(|_| KekError::Corrupt)
    }

    /// Opens a sealed UTF-8 secret.
    pub fn open_string(&self, aad: &str, sealed: &[u8]) -> Result<SecretString, KekError> {
        let bytes = self.open(aad, sealed)?;
        String::from_utf8(bytes).map(SecretString::from).map_err(|_| KekError::Corrupt)
    }

    /// Whether `stored` is sealed under the current KEK (else `onboard keys rewrap` reseals it).
    pub fn is_current(&self, stored: &[u8]) -> bool {
        stored.strip_prefix(MAGIC).is_some_and(|rest| rest.starts_with(&self.current.id))
    }

    /// Whether `stored` is sealed at all (values written before sealing existed are not).
    pub fn is_sealed(stored: &[u8]) -> bool {
        stored.starts_with(MAGIC)
    }
}

/// A fixed, public key: sealing under it keeps plaintext out of the database file and its
/// backups, nothing more. `onboard serve` warns while it is in use.
fn development_key() -> Key {
    let digest = Sha256::digest(b"onboard development key-encryption key: NOT A SECRET");
    Key::new(&digest.into())
}

/// A new random KEK, base64 (for `onboard keys generate`).
pub fn generate() -> String {
    STANDARD.encode(XChaCha20Poly1305::generate_key(&mut OsRng))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(kek: &str) -> SecretsSettings {
        SecretsSettings { kek: Some(SecretString::from(kek.to_owned())), ..SecretsSettings::default() }
    }

    #[test]
    fn sealed_values_open_only_in_their_place_and_under_their_key() {
        let kek = Kek::from_settings(&settings(&generate())).unwrap();
        assert!(kek.is_configured());
        let sealed = kek.seal("partner_kyc.secret_key:7", b"s3cr3t");
        assert!(!sealed.windows(6).any(|w| w == b"s3cr3t"));
        assert_eq!(kek.open("partner_kyc.secret_key:7", &sealed).unwrap(), b"s3cr3t");
        assert_eq!(kek.open("partner_kyc.secret_key:8", &sealed), Err(KekError::Corrupt));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(kek.open("partner_kyc.secret_key:7", &tampered), Err(KekError::Corrupt));
        assert_eq!(kek.open("x", b"plain"), Err(KekError::NotSealed));
        let other = Kek::from_settings(&settings(&generate())).unwrap();
        assert!(matches!(other.open("partner_kyc.secret_key:7", &sealed), Err(KekError::UnknownKek(_))));
    }

    #[test]
    fn a_rotation_keeps_old_values_readable_until_rewrapped() {
        let old = generate();
        let before = Kek::from_settings(&settings(&old)).unwrap();
        let sealed = before.seal("a", b"v");
        let mut next = settings(&generate());
        next.previous_keks = vec![SecretString::from(old)];
        let after = Kek::from_settings(&next).unwrap();
        assert!(!after.is_current(&sealed));
        assert_eq!(after.open("a", &sealed).unwrap(), b"v");
        assert!(after.is_current(&after.seal("a", b"v")));
        // Values sealed with no KEK configured open once one is.
        let dev = Kek::development().seal("a", b"v");
        assert_eq!(after.open("a", &dev).unwrap(), b"v");
        assert!(!Kek::development().is_configured());
    }

    #[test]
    fn bad_keys_are_configuration_errors() {
        assert!(matches!(Kek::from_settings(&settings("not base64!")), Err(KekError::Config(_))));
        assert!(matches!(Kek::from_settings(&settings("c2hvcnQ=")), Err(KekError::Config(_))));
    }
}
