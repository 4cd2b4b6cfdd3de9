//! Console passwords: Argon2id hashing and checking, generated one-time passwords, and the rules
//! a chosen password must meet. The password itself is never stored or logged.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;

/// Shortest password an administrator may choose. Long enough that the login delay, not the
/// hash, is what an online guesser runs into.
pub const MIN_LENGTH: usize = 12;
/// Longest accepted: Argon2 takes any length, but a megabyte "password" is only a way to burn CPU.
pub const MAX_LENGTH: usize = 1024;

#[derive(Debug)]
pub enum PasswordError {
    /// The system's random generator failed.
    Random,
    /// Argon2 refused to hash (it does so only for parameters out of range).
    Hash(String),
    /// The stored hash is not a PHC string Argon2 can read: the store was edited or damaged.
    StoredHash(String),
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordError::Random => write!(f, "the system's random generator failed"),
            PasswordError::Hash(e) => write!(f, "cannot hash the password: {e}"),
            PasswordError::StoredHash(e) => write!(f, "the stored password hash is damaged: {e}"),
        }
    }
}

impl std::error::Error for PasswordError {}

/// An Argon2id hash (the crate's defaults: 19 MiB, 2 passes, 1 lane, OWASP's minimum) with a
/// random salt, as a PHC string that carries its own parameters.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches `stored`, checked with the parameters written in `stored`.
pub fn verify(password: &str, stored: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::StoredHash(e.to_string()))?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A password for a terminal: 20 characters in groups of five, from an alphabet without look-alikes
/// (no 0/O, 1/l/I), about 100 bits.
pub fn generate() -> Result<String, PasswordError> {
    const ALPHABET: &[u8] = b"23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";
    let mut out = String::with_capacity(23);
    let rng = SystemRandom::new();
    while out.len() < 23 {
        let mut byte = [0u8; 1];
        rng.fill(&mut byte).map_err(|_| PasswordError::Random)?;
        // Rejection sampling keeps every character equally likely.
        let limit = 256 - 256 % ALPHABET.len();
        if usize::from(byte[0]) >= limit {
            continue;
        }
        if out.len() % 6 == 5 {
            out.push('-');
        }
        out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
    }
    Ok(out)
}

/// Why a chosen password is refused, in words for the field, or `None` if it is acceptable.
pub fn weakness(new: &str, current: &str, user: &str) -> Option<String> {
    let chars = new.chars().count();
    if chars < MIN_LENGTH {
        return Some(format!(
            "the new password must have at least {MIN_LENGTH} characters (it has {chars})"
        ));
    }
    if new.len() > MAX_LENGTH {
        return Some(format!("the new password is over {MAX_LENGTH} bytes"));
    }
    if new == current {
        return Some("the new password must differ from the current one".into());
    }
    if new.eq_ignore_ascii_case(user) {
        return Some("the new password must not be the user name".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse battery").unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(!stored.contains("correct horse"));
        assert!(verify("correct horse battery", &stored).unwrap());
        assert!(!verify("correct horse batterY", &stored).unwrap());
        assert!(!verify("", &stored).unwrap());
        // The salt is random: the same password hashes differently each time.
        assert_ne!(stored, hash("correct horse battery").unwrap());
    }

    #[test]
    fn a_damaged_stored_hash_is_an_error_not_a_match() {
        assert!(matches!(
            verify("x", "not a phc string"),
            Err(PasswordError::StoredHash(_))
        ));
    }

    #[test]
    fn generated_passwords_are_grouped_and_unambiguous() {
        let a = generate().unwrap();
        assert_eq!(a.len(), 23, "{a}");
        for (i, c) in a.chars().enumerate() {
            if i % 6 == 5 {
                assert_eq!(c, '-', "{a}");
            } else {
                assert!(c.is_ascii_alphanumeric() && !"01lIO".contains(c), "{a}");
            }
        }
        assert_ne!(a, generate().unwrap());
        assert_eq!(weakness(&a, "old", "admin"), None);
    }

    #[test]
    fn weak_choices_are_refused_with_the_reason() {
        let w = |new: &str| weakness(new, "the current one", "administrator");
        assert!(w("short").unwrap().contains("at least 12"));
        assert!(w("the current one").unwrap().contains("differ"));
        assert!(w("Administrator").unwrap().contains("user name"));
        let huge = "x".repeat(2000);
        assert!(w(&huge).unwrap().contains("over 1024"));
        assert_eq!(w("a long enough passphrase"), None);
    }
}
