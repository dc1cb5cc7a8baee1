//! Passwords (argon2id), keyed hashes (HMAC-SHA256), random tokens and field encryption
//! (AES-256-GCM with a key id, so keys can rotate).
//!
//! argon2 is deliberately slow: call [`hash_password`] and [`verify_password`] from
//! `spawn_blocking`, never on an async worker thread.

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, Generate, KeyInit},
};
use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// `n` random bytes from the OS generator, URL-safe base64 without padding.
pub fn random_token(n: usize) -> String {
    let mut bytes = Vec::with_capacity(n + 32);
    while bytes.len() < n {
        bytes.extend_from_slice(&rand::random::<[u8; 32]>());
    }
    bytes.truncate(n);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hashes a human password with argon2id and a random salt (PHC string). Blocking.
pub fn hash_password(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Crypto(format!("hashing password: {e}")))
}

/// Checks a password against a PHC string. Blocking. A malformed hash counts as a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// HMAC-SHA256 of `data` under `key`, hex encoded: how high-entropy tokens (agent keys) are
/// stored, so a lookup is one indexed equality match instead of an argon2 run.
pub fn keyed_hash(key: &[u8], data: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(data);
    hex::encode(mac.finalize().into_bytes())
}

/// Derives a 32-byte purpose-specific key from a root secret, so one secret never serves two uses.
pub fn derive_key(root: &str, purpose: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(root.as_bytes())
        .expect("hmac takes any key length");
    mac.update(b"techdeck-mcp/");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// A new agent key: the recognisable prefix and 256 bits from the OS generator.
pub fn new_agent_key() -> String {
    format!(
        "{}{}",
        crate::domain::agent::AGENT_KEY_PREFIX,
        random_token(32)
    )
}

/// How an agent key is stored and looked up: HMAC-SHA256 under a key derived from
/// `MCP_SECRET_KEY`. Constant-time to compute, and one indexed equality match to find.
pub fn agent_key_hash(root_secret: &str, key: &str) -> String {
    keyed_hash(&derive_key(root_secret, "agent-keys"), key.as_bytes())
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// AES-256-GCM for sensitive fields. Output: `v1:{key_id}:{base64(nonce || ciphertext)}`.
/// The key id lets a later rotation find which key sealed a value.
#[derive(Clone)]
pub struct FieldCipher {
    key_id: String,
    cipher: Aes256Gcm,
    /// The key itself, from which the other uses' keys are derived (never used directly for
    /// anything but sealing fields, and never printed).
    key: [u8; 32],
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldCipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl FieldCipher {
    /// The field key is derived from `MCP_SECRET_KEY`; its id is a short fingerprint of the key.
    pub fn from_root_secret(root: &str) -> Self {
        let key = derive_key(root, "field-encryption");
        let key_id = sha256_hex(&key)[..12].to_string();
        Self::with_key(key_id, &key)
    }

    fn with_key(key_id: String, key: &[u8; 32]) -> Self {
        let cipher = <Aes256Gcm as KeyInit>::new_from_slice(key).expect("32-byte key");
        Self {
            key_id,
            cipher,
            key: *key,
        }
    }

    /// A key for another use, derived from this one: the same id names it.
    fn subkey(&self, purpose: Purpose) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.key)
            .expect("hmac takes any key length");
        mac.update(b"techdeck-mcp/");
        mac.update(purpose.label().as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String> {
        let nonce = Nonce::generate();
        let mut out = nonce.to_vec();
        out.extend(
            self.cipher
                .encrypt(&nonce, plaintext)
                .map_err(|_| Error::Crypto("encryption failed".into()))?,
        );
        Ok(format!(
            "v1:{}:{}",
            self.key_id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Crypto("unrecognised sealed value".into()));
        };
        if key_id != self.key_id {
            return Err(Error::Crypto(format!("sealed with unknown key {key_id}")));
        }
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| Error::Crypto("sealed value is not base64".into()))?;
        if raw.len() < 12 {
            return Err(Error::Crypto("sealed value too short".into()));
        }
        let (nonce, ciphertext) = raw.split_at(12);
        let nonce = Nonce::try_from(nonce).map_err(|_| Error::Crypto("bad nonce".into()))?;
        self.cipher
            .decrypt(&nonce, ciphertext)
            .map_err(|_| Error::Crypto("decryption failed (wrong key or tampered value)".into()))
    }
}

/// The key id a sealed value names, if it is one.
pub fn sealed_key_id(sealed: &str) -> Option<&str> {
    let mut parts = sealed.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some(id), Some(_)) => Some(id),
        _ => None,
    }
}

/// What a key of the ring is used for besides sealing fields: each use gets its own key, derived
/// from the ring's key and named by the same id, so one rotation rotates them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// HMAC-SHA256 of the audit chain's records, anchors and published heads.
    AuditChain,
    /// AES-256-GCM of the artifact store's chunks (datasets, stage outputs, exports, reports).
    Artifacts,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Self::AuditChain => "audit-chain",
            Self::Artifacts => "artifacts",
        }
    }
}

/// Every field key the service knows: the first seals, all open. Rotation adds a key in front,
/// re-seals what the older keys sealed (`mcp-api keys rotate`), then retires them.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<FieldCipher>,
}

impl KeyRing {
    /// From `MCP_ENCRYPTION_KEYS` (`id:base64key,…`, 32-byte keys, the first active). The key
    /// derived from `MCP_SECRET_KEY` always opens too, so values sealed before explicit keys were
    /// configured stay readable until rotated; without explicit keys it is the active one.
    pub fn new(root_secret: &str, keys: Option<&str>) -> Result<Self> {
        let mut ring = Vec::new();
        for entry in keys.unwrap_or_default().split(',').map(str::trim) {
            if entry.is_empty() {
                continue;
            }
            let (id, b64) = entry.split_once(':').ok_or_else(|| {
                Error::Config("MCP_ENCRYPTION_KEYS entries look like `id:base64key`".into())
            })?;
            if id.is_empty()
                || id.len() > 32
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(Error::Config(format!(
                    "MCP_ENCRYPTION_KEYS: key id {id:?} must be 1-32 letters, digits, - or _"
                )));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
                .map_err(|_| {
                    Error::Config(format!("MCP_ENCRYPTION_KEYS: key {id} is not base64"))
                })?;
            let key: [u8; 32] = raw.try_into().map_err(|_| {
                Error::Config(format!("MCP_ENCRYPTION_KEYS: key {id} must be 32 bytes"))
            })?;
            if ring.iter().any(|k: &FieldCipher| k.key_id == id) {
                return Err(Error::Config(format!(
                    "MCP_ENCRYPTION_KEYS: key id {id} repeats"
                )));
            }
            ring.push(FieldCipher::with_key(id.to_string(), &key));
        }
        ring.push(FieldCipher::from_root_secret(root_secret));
        Ok(Self { keys: ring })
    }

    /// A new key entry for `MCP_ENCRYPTION_KEYS`.
    pub fn generate_entry(id: &str) -> String {
        format!(
            "{id}:{}",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
        )
    }

    pub fn active_key_id(&self) -> &str {
        self.keys[0].key_id()
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String> {
        self.keys[0].seal(plaintext)
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>> {
        let id = sealed_key_id(sealed)
            .ok_or_else(|| Error::Crypto("unrecognised sealed value".into()))?;
        self.keys
            .iter()
            .find(|k| k.key_id() == id)
            .ok_or_else(|| Error::Crypto(format!("sealed with unknown key {id}")))?
            .open(sealed)
    }

    /// The active key's id and its key for `purpose`.
    pub fn active_subkey(&self, purpose: Purpose) -> (&str, [u8; 32]) {
        (self.keys[0].key_id(), self.keys[0].subkey(purpose))
    }

    /// The key for `purpose` of the ring's key named `id`, if the ring holds it.
    pub fn subkey(&self, id: &str, purpose: Purpose) -> Option<[u8; 32]> {
        self.keys
            .iter()
            .find(|k| k.key_id() == id)
            .map(|k| k.subkey(purpose))
    }

    /// Re-seals under the active key; `None` when it already is.
    pub fn reseal(&self, sealed: &str) -> Result<Option<String>> {
        if sealed_key_id(sealed) == Some(self.active_key_id()) {
            return Ok(None);
        }
        Ok(Some(self.seal(&self.open(sealed)?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_and_reject_others() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("correct horse", "not-a-hash"));
    }

    #[test]
    fn tokens_are_random_and_sized() {
        let a = random_token(32);
        let b = random_token(32);
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
    }

    #[test]
    fn keyed_hash_depends_on_key() {
        assert_ne!(keyed_hash(b"k1", b"data"), keyed_hash(b"k2", b"data"));
        assert_eq!(keyed_hash(b"k1", b"data"), keyed_hash(b"k1", b"data"));
    }

    #[test]
    fn key_rings_seal_with_the_first_key_and_open_with_any() {
        let old = KeyRing::new("root", Some(&KeyRing::generate_entry("k1"))).unwrap();
        let k1 = old.keys[0].clone();
        let sealed = old.seal(b"secret").unwrap();
        assert_eq!(sealed_key_id(&sealed), Some("k1"));
        let entry_k1 = format!(
            "k1:{}",
            base64::engine::general_purpose::STANDARD.encode([0u8; 32])
        );
        assert!(
            KeyRing::new("root", Some(&entry_k1))
                .unwrap()
                .open(&sealed)
                .is_err(),
            "another key under the same id does not open it"
        );
        let new = KeyRing {
            keys: vec![FieldCipher::with_key("k2".into(), &[7u8; 32]), k1],
        };
        assert_eq!(new.open(&sealed).unwrap(), b"secret");
        let resealed = new.reseal(&sealed).unwrap().unwrap();
        assert_eq!(sealed_key_id(&resealed), Some("k2"));
        assert!(new.reseal(&resealed).unwrap().is_none());
        // Values sealed by the derived key stay readable once explicit keys are configured.
        let derived = FieldCipher::from_root_secret("root")
            .seal(b"legacy")
            .unwrap();
        assert_eq!(old.open(&derived).unwrap(), b"legacy");
        assert!(KeyRing::new("root", Some("bad")).is_err());
        assert!(KeyRing::new("root", Some("k:c2hvcnQ=")).is_err());
    }

    #[test]
    fn subkeys_differ_by_purpose_and_key_and_follow_the_id() {
        let ring = KeyRing::new("root", Some(&KeyRing::generate_entry("k1"))).unwrap();
        let (id, audit) = ring.active_subkey(Purpose::AuditChain);
        assert_eq!(id, "k1");
        assert_eq!(ring.subkey("k1", Purpose::AuditChain), Some(audit));
        assert_ne!(ring.subkey("k1", Purpose::Artifacts), Some(audit));
        let derived = FieldCipher::from_root_secret("root");
        assert_eq!(
            ring.subkey(derived.key_id(), Purpose::AuditChain),
            Some(derived.subkey(Purpose::AuditChain)),
            "the key derived from MCP_SECRET_KEY has its subkeys too"
        );
        assert_ne!(derived.subkey(Purpose::AuditChain), audit);
        assert!(ring.subkey("k9", Purpose::AuditChain).is_none());
    }

    #[test]
    fn field_cipher_round_trips_and_detects_tampering() {
        let c = FieldCipher::from_root_secret("root");
        let sealed = c.seal(b"api-key-123").unwrap();
        assert!(!sealed.contains("api-key-123"));
        assert_ne!(sealed, c.seal(b"api-key-123").unwrap(), "nonces are random");
        assert_eq!(c.open(&sealed).unwrap(), b"api-key-123");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(c.open(&tampered).is_err());
        assert!(
            FieldCipher::from_root_secret("other")
                .open(&sealed)
                .is_err()
        );
    }
}
