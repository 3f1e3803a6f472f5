//! The privacy door: raw account ids become pseudonyms here, before anything is computed or
//! stored, and nothing else of a producer's personal data is ever decoded.
//!
//! `viewer_id = "v_" + first 32 hex chars of HMAC-SHA256(key, user_id)`. The key comes from
//! `REWIND_PSEUDONYM_KEY`, from a key file, or (embedded default only) is created at random
//! in the store directory with mode 0600. Without the key, a pseudonym cannot be linked back
//! to an account, and with a new key the same account gets an unlinkable new pseudonym.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rewind_dataflows::event::ViewerId;
use sha2::Sha256;

/// The environment variable that holds the pseudonymization key.
pub const KEY_ENV: &str = "REWIND_PSEUDONYM_KEY";
/// The key file the embedded default creates in its store directory.
pub const STORE_KEY_FILE: &str = "pseudonym.key";
/// Shorter keys are guessable; HMAC-SHA256 gains nothing past 64 bytes.
const MIN_KEY_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no pseudonymization key: set {KEY_ENV} or pass --key-file (only the embedded default \
         creates one itself)"
    )]
    Missing,
    #[error("pseudonymization key from {source_name} is {len} bytes; use at least {MIN_KEY_BYTES}")]
    TooShort { source_name: String, len: usize },
    #[error("cannot read or create key file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the key may come from, in order of precedence.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    pub key_file: Option<PathBuf>,
    /// The store directory, if the key may be created there (embedded default).
    pub create_in: Option<PathBuf>,
}

/// Turns raw account ids into pseudonymous viewer ids.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key withheld>)")
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Pseudonymizer {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        Pseudonymizer { mac }
    }

    /// Loads the key from the environment, the key file, or creates one in the store.
    pub fn load(source: &KeySource) -> Result<Pseudonymizer, KeyError> {
        if let Ok(key) = std::env::var(KEY_ENV) {
            return checked(KEY_ENV, key.into_bytes());
        }
        if let Some(path) = &source.key_file {
            return checked(&path.display().to_string(), read_key_file(path)?);
        }
        if let Some(dir) = &source.create_in {
            let path = dir.join(STORE_KEY_FILE);
            let key = if path.exists() {
                read_key_file(&path)?
            } else {
                create_key_file(&path)?
            };
            return checked(&path.display().to_string(), key);
        }
        Err(KeyError::Missing)
    }

    /// The first 128 bits of HMAC-SHA256(key, user_id), displayed as `v_` + 32 hex chars.
    pub fn viewer_id(&self, user_id: &str) -> ViewerId {
        let mut mac = self.mac.clone();
        mac.update(user_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut first = [0u8; 16];
        first.copy_from_slice(&digest[..16]);
        ViewerId(u128::from_be_bytes(first))
    }
}

fn checked(source_name: &str, key: Vec<u8>) -> Result<Pseudonymizer, KeyError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort {
            source_name: source_name.to_string(),
            len: key.len(),
        });
    }
    Ok(Pseudonymizer::new(&key))
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::File {
        path: path.into(),
        source,
    })?;
    // Editors add a trailing newline; it is not part of the key.
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    Ok(trimmed.strip_suffix(b"\r").unwrap_or(trimmed).to_vec())
}

fn create_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    use rand::TryRngCore;
    use std::io::Write;
    let err = |source| KeyError::File {
        path: path.into(),
        source,
    };
    let mut raw = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut raw)
        .map_err(|e| err(std::io::Error::other(e)))?;
    let key: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    file.write_all(key.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    Ok(key.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_id_is_v_and_32_hex_of_hmac_sha256() {
        // RFC 4231 test case 2: HMAC-SHA256("Jefe", "what do ya want for nothing?").
        let p = Pseudonymizer::new(b"Jefe");
        assert_eq!(
            p.viewer_id("what do ya want for nothing?").to_string(),
            "v_5bdcc146bf60754e6a042426089575c7"
        );
    }

    #[test]
    fn a_created_key_file_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let source = KeySource {
            key_file: None,
            create_in: Some(dir.path().to_path_buf()),
        };
        // The environment wins over files; this test relies on it being unset.
        if std::env::var(KEY_ENV).is_ok() {
            return;
        }
        let first = Pseudonymizer::load(&source).unwrap().viewer_id("u1");
        let second = Pseudonymizer::load(&source).unwrap().viewer_id("u1");
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join(STORE_KEY_FILE)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn short_keys_and_missing_keys_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "short\n").unwrap();
        let source = KeySource {
            key_file: Some(path),
            create_in: None,
        };
        if std::env::var(KEY_ENV).is_ok() {
            return;
        }
        let err = Pseudonymizer::load(&source).unwrap_err().to_string();
        assert!(err.contains("5 bytes"), "{err}");
        let err = Pseudonymizer::load(&KeySource::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(KEY_ENV), "{err}");
    }
}
