//! Keyed pseudonyms for callers (SPEC section 5). The raw number never leaves [`Pseudonymizer`].

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::Path;

/// A caller reference: the first 10 bytes of HMAC-SHA256, shown as 16 lowercase base32 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallerRef(pub [u8; 10]);

impl CallerRef {
    /// The reference packed into an integer, for compact in-memory maps.
    pub fn to_u128(self) -> u128 {
        let mut b = [0u8; 16];
        b[..10].copy_from_slice(&self.0);
        u128::from_le_bytes(b)
    }
    pub fn from_u128(v: u128) -> CallerRef {
        let b = v.to_le_bytes();
        let mut r = [0u8; 10];
        r.copy_from_slice(&b[..10]);
        CallerRef(r)
    }
    pub fn parse(s: &str) -> Option<CallerRef> {
        if s.len() != 16 {
            return None;
        }
        // On the stack: start-up parses one or two of these for every call it reads back.
        let mut upper = [0u8; 16];
        upper.copy_from_slice(s.as_bytes());
        upper.make_ascii_uppercase();
        let mut r = [0u8; 10];
        data_encoding::BASE32_NOPAD.decode_mut(&upper, &mut r).ok()?;
        Some(CallerRef(r))
    }
}

impl fmt::Display for CallerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = data_encoding::BASE32_NOPAD.encode(&self.0);
        f.write_str(&s.to_ascii_lowercase())
    }
}

impl fmt::Debug for CallerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallerRef({self})")
    }
}

impl serde::Serialize for CallerRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the pseudonym key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the pseudonym key is empty: set LANTERN_PSEUDONYM_KEY or put at least 16 bytes in {0}")]
    Empty(String),
    #[error("cannot create the pseudonym key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
}

/// Holds the secret key; turns numbers and address ids into [`CallerRef`]s.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Pseudonymizer {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Pseudonymizer { mac }
    }

    /// The key from `LANTERN_PSEUDONYM_KEY`, else the bytes of `key_file`.
    pub fn from_env_or_file(key_file: &Path) -> Result<Pseudonymizer, KeyError> {
        if let Ok(k) = std::env::var("LANTERN_PSEUDONYM_KEY") {
            if !k.is_empty() {
                return Ok(Pseudonymizer::new(k.as_bytes()));
            }
        }
        let bytes = std::fs::read(key_file).map_err(|source| KeyError::Read { path: key_file.display().to_string(), source })?;
        if bytes.is_empty() {
            return Err(KeyError::Empty(key_file.display().to_string()));
        }
        Ok(Pseudonymizer::new(&bytes))
    }

    /// Like [`from_env_or_file`](Self::from_env_or_file), but makes a new random key file
    /// (mode 0600) when there is none: what a first `make run` needs.
    pub fn load_or_create(key_file: &Path) -> Result<Pseudonymizer, KeyError> {
        if std::env::var("LANTERN_PSEUDONYM_KEY").is_ok_and(|k| !k.is_empty()) || key_file.exists() {
            return Pseudonymizer::from_env_or_file(key_file);
        }
        let create = |source| KeyError::Create { path: key_file.display().to_string(), source };
        if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create)?;
        }
        let key: [u8; 32] = rand::random();
        let text = data_encoding::HEXLOWER.encode(&key);
        write_private(key_file, text.as_bytes()).map_err(create)?;
        tracing::warn!(path = %key_file.display(), "created a new pseudonym key; back it up: caller references change if it is lost");
        Pseudonymizer::from_env_or_file(key_file)
    }

    fn digest(&self, parts: &[&[u8]]) -> CallerRef {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        let out = mac.finalize().into_bytes();
        let mut r = [0u8; 10];
        r.copy_from_slice(&out[..10]);
        CallerRef(r)
    }

    /// The reference for a normalised (E.164) number.
    pub fn phone(&self, e164: &str) -> CallerRef {
        self.digest(&[e164.as_bytes()])
    }

    /// The reference for an address identity.
    pub fn address(&self, address_id: &str) -> CallerRef {
        self.digest(&[b"address:", address_id.as_bytes()])
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_is_sixteen_lowercase_base32_characters_and_round_trips() {
        let p = Pseudonymizer::new(b"conformance-key");
        let r = p.phone("+441134960123");
        let s = r.to_string();
        assert_eq!(s.len(), 16);
        assert!(s.chars().all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
        assert_eq!(CallerRef::parse(&s), Some(r));
        assert_eq!(CallerRef::from_u128(r.to_u128()), r);
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog") starts f7bc83f430538424b13298e6aa6fb143.
        let p = Pseudonymizer::new(b"key");
        let r = p.phone("The quick brown fox jumps over the lazy dog");
        assert_eq!(data_encoding::HEXLOWER.encode(&r.0), "f7bc83f430538424b132");
    }

    #[test]
    fn address_and_phone_references_differ_and_depend_on_the_key() {
        let a = Pseudonymizer::new(b"one");
        let b = Pseudonymizer::new(b"two");
        assert_ne!(a.phone("100010012345"), a.address("100010012345"));
        assert_ne!(a.phone("+441134960123"), b.phone("+441134960123"));
    }
}
