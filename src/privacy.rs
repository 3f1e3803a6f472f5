//! The privacy door: raw account ids become pseudonyms here, before anything is computed or
//! stored, and nothing else of a producer's personal data is ever decoded.
//!
//! `viewer_id = "v_" + first 32 hex chars of HMAC-SHA256(key, user_id)`. The key comes from
//! a key file (`--key-file`), else `REWIND_PSEUDONYM_KEY`, else (embedded default only) is
//! created at random in the store directory with mode 0600. Without the key, a pseudonym
//! cannot be linked back to an account, and with a new key the same account gets an
//! unlinkable new pseudonym: so a store keeps the key's [`Pseudonymizer::fingerprint`] and
//! refuses any other key.

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

/// What a key's fingerprint is the HMAC of. Versioned, so a new fingerprint scheme cannot be
/// mistaken for this one.
const FINGERPRINT_MESSAGE: &[u8] = b"rewind key fingerprint v1";
/// The label the erasure-token key is derived under: a key of its own, so a token is neither a
/// pseudonym nor anything else the pseudonym key makes, and joins nothing else.
const ERASURE_KEY_LABEL: &[u8] = b"rewind erasure token key v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "no pseudonymization key: set {KEY_ENV} or pass --key-file (only the embedded default \
         creates one itself)"
    )]
    Missing,
    #[error("pseudonymization key from {source_name} is {len} bytes; use at least {MIN_KEY_BYTES}")]
    TooShort { source_name: String, len: usize },
    #[error(
        "pseudonymization key from {source_name} is one byte repeated (such as all zeros), \
         which anyone could guess; make a random one, e.g. `openssl rand -hex 32 > FILE` then \
         `chmod 600 FILE`"
    )]
    Trivial { source_name: String },
    #[error(
        "key file {path} may be read by group or others (mode {mode:04o}); anyone who reads it \
         can link pseudonyms back to accounts. Run `chmod 600 {path}`"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("cannot read or create key file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where the key may come from, in order of precedence: a key file named by the user, the
/// environment, the store's own key file.
#[derive(Debug, Clone, Default)]
pub struct KeySource {
    /// Named on the command line, so it wins over the environment, which may be left over.
    pub key_file: Option<PathBuf>,
    /// The store directory, if the key may be created there (embedded default).
    pub create_in: Option<PathBuf>,
}

/// Turns raw account ids into pseudonymous viewer ids.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
    /// HMAC-SHA256 keyed by HMAC-SHA256(key, [`ERASURE_KEY_LABEL`]).
    erasure_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key withheld>)")
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Pseudonymizer {
        let mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        let mut derive = mac.clone();
        derive.update(ERASURE_KEY_LABEL);
        let erasure_key = derive.finalize().into_bytes();
        let erasure_mac =
            Hmac::<Sha256>::new_from_slice(&erasure_key).expect("HMAC takes keys of any length");
        Pseudonymizer { mac, erasure_mac }
    }

    /// Loads the key from the key file, the environment, or creates one in the store.
    pub fn load(source: &KeySource) -> Result<Pseudonymizer, KeyError> {
        if let Some(path) = &source.key_file {
            return checked(&path.display().to_string(), read_key_file(path)?);
        }
        if let Ok(key) = std::env::var(KEY_ENV) {
            return checked(KEY_ENV, key.into_bytes());
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

    /// What the store's suppression list keeps of an erased viewer: HMAC-SHA256 of the
    /// pseudonym's 16 bytes, under a key derived from the pseudonym key with its own label (never
    /// the pseudonym key itself). Without the key it cannot be linked to the pseudonym, and it
    /// matches no other value the key makes, so the list joins nothing else; with the key, the
    /// operator can answer "was this account erased?".
    pub fn erasure_token(&self, viewer: &ViewerId) -> [u8; 32] {
        let mut mac = self.erasure_mac.clone();
        mac.update(&viewer.0.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// HMAC-SHA256(key, "rewind key fingerprint v1") in hex: tells keys apart, and reveals
    /// no more of the key than any pseudonym does.
    pub fn fingerprint(&self) -> String {
        let mut mac = self.mac.clone();
        mac.update(FINGERPRINT_MESSAGE);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn checked(source_name: &str, key: Vec<u8>) -> Result<Pseudonymizer, KeyError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(KeyError::TooShort {
            source_name: source_name.to_string(),
            len: key.len(),
        });
    }
    if key.iter().all(|b| *b == key[0]) {
        return Err(KeyError::Trivial {
            source_name: source_name.to_string(),
        });
    }
    Ok(Pseudonymizer::new(&key))
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let err = |source| KeyError::File {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(err)?;
    check_private(path, &file)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes).map_err(err)?;
    // Editors add a trailing newline; it is not part of the key.
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    Ok(trimmed.strip_suffix(b"\r").unwrap_or(trimmed).to_vec())
}

/// Checked on the open file, so the file read is the file checked.
#[cfg(unix)]
fn check_private(path: &Path, file: &std::fs::File) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|source| KeyError::File {
            path: path.into(),
            source,
        })?
        .permissions()
        .mode();
    // Like ssh with private keys: any access by group or others is refused, not just reads.
    if mode & 0o077 != 0 {
        return Err(KeyError::Exposed {
            path: path.into(),
            mode: mode & 0o7777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::File) -> Result<(), KeyError> {
    Ok(())
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

    fn write_private(path: &Path, bytes: &[u8]) {
        std::fs::write(path, bytes).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }

    fn from_file(path: &Path) -> Result<Pseudonymizer, KeyError> {
        Pseudonymizer::load(&KeySource {
            key_file: Some(path.to_path_buf()),
            create_in: None,
        })
    }

    #[test]
    fn a_key_of_one_repeated_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zeros.key");
        write_private(&path, &[0u8; 32]);
        let err = from_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("all zeros") && err.contains("zeros.key"),
            "{err}"
        );
        write_private(&path, b"00000000000000000000000000000000\n");
        assert!(matches!(from_file(&path), Err(KeyError::Trivial { .. })));
        write_private(&path, b"0123456789abcdef0123456789abcdef\n");
        assert!(from_file(&path).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_may_read_is_refused_with_the_chmod_to_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        write_private(&path, b"0123456789abcdef0123456789abcdef\n");
        for mode in [0o644, 0o640, 0o604] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = from_file(&path).unwrap_err().to_string();
            let chmod = format!("chmod 600 {}", path.display());
            assert!(err.contains(&chmod), "{mode:o}: {err}");
            assert!(!err.contains("0123456789abcdef"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(from_file(&path).is_ok());
    }

    #[test]
    fn the_fingerprint_tells_keys_apart_and_does_not_show_the_key() {
        let key = b"0123456789abcdef0123456789abcdef";
        let a = Pseudonymizer::new(key).fingerprint();
        assert_eq!(a, Pseudonymizer::new(key).fingerprint());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(
            a,
            Pseudonymizer::new(b"0123456789abcdef0123456789abcdeF").fingerprint()
        );
        assert!(!a.contains("0123456789abcdef"));
        // Not the pseudonym of any account id a producer is likely to send.
        let door = Pseudonymizer::new(key);
        assert!(!a.starts_with(&door.viewer_id("").to_string()[2..]));
    }

    #[test]
    fn an_erasure_token_is_neither_the_pseudonym_nor_another_keys_token() {
        let key = b"0123456789abcdef0123456789abcdef";
        let door = Pseudonymizer::new(key);
        let viewer = door.viewer_id("u1234567");
        let token = door.erasure_token(&viewer);
        assert_eq!(token, Pseudonymizer::new(key).erasure_token(&viewer));
        assert_ne!(token, door.erasure_token(&door.viewer_id("u1234568")));
        // No part of the pseudonym, of the key or of its fingerprint.
        let pseudonym = viewer.0.to_be_bytes();
        assert!(
            !token
                .windows(8)
                .any(|w| pseudonym.windows(8).any(|p| p == w))
        );
        assert!(!token.windows(8).any(|w| key.windows(8).any(|k| k == w)));
        let fingerprint = door.fingerprint();
        let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(hex, fingerprint);
        // Nor the HMAC of the pseudonym under the pseudonym key itself.
        let mut plain = Hmac::<Sha256>::new_from_slice(key).unwrap();
        plain.update(&pseudonym);
        assert_ne!(token, <[u8; 32]>::from(plain.finalize().into_bytes()));
        let other = Pseudonymizer::new(b"fedcba9876543210fedcba9876543210");
        assert_ne!(token, other.erasure_token(&viewer));
    }

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
        write_private(&path, b"short\n");
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
