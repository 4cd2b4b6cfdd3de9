//! Activation tokens: how one is made, checked and used up (sans-io; time is an argument).
//!
//! The secret is a random 64-hex-digit string shown once to the administrator; only its SHA-256
//! ([`TokenHash`]) is stored, and the first 16 hex digits of that hash ([`token_id`]) name the
//! token in lists and deletes. No message of [`ActivationError`] holds a secret.

use crate::clock::{WallMs, format_utc};
use crate::model::{PolicyId, Token, TokenHash, format_duration, parse_duration};
use crate::pki::{self, PkiError};
use std::fmt;
use std::time::Duration;

/// How long a token works when no expiry is given: a forgotten token must not work forever.
pub const DEFAULT_TTL: Duration = Duration::from_secs(86_400);
/// How many activations a token allows unless told otherwise: enough for a batch of computers
/// set up together, few enough that a token copied into the wrong place does little.
/// `--uses unlimited` remains for mass enrolment.
pub const DEFAULT_USES: u32 = 10;
/// The shortest and longest expiry an administrator may ask for.
pub const TTL_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(365 * 86_400));
/// The most activations one token may allow (without `unlimited`).
pub const MAX_USES: u32 = 100_000;
/// Hex digits of the token hash that name a token.
pub const ID_LEN: usize = 16;
/// Where the printed agent command puts the agent's data dir.
pub const AGENT_DATA_DIR: &str = "/var/lib/picket-agent";

/// Why a token could not be made or used.
#[derive(Debug)]
#[non_exhaustive]
pub enum ActivationError {
    /// No stored token has this secret.
    UnknownToken,
    /// The token stopped working at `at`.
    Expired { at: WallMs },
    /// Every activation the token allowed has been made.
    UsedUp,
    /// `uses` is not a whole number from 1 to [`MAX_USES`] or `unlimited`; `given` as written.
    Uses { given: String },
    /// `expires` is not a duration within [`TTL_RANGE`]; `given` as written.
    Expires { given: String },
    /// `policy` names no policy.
    UnknownPolicy { reference: String },
    /// The system's random number generator failed.
    Random(PkiError),
}

impl ActivationError {
    /// The request field to fix, for the errors that have one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ActivationError::Uses { .. } => Some("uses"),
            ActivationError::Expires { .. } => Some("expires"),
            ActivationError::UnknownPolicy { .. } => Some("policy"),
            ActivationError::UnknownToken
            | ActivationError::Expired { .. }
            | ActivationError::UsedUp
            | ActivationError::Random(_) => None,
        }
    }
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActivationError::UnknownToken => f.write_str("unknown activation token"),
            ActivationError::Expired { at } => {
                write!(f, "the activation token expired at {}", format_utc(*at))
            }
            ActivationError::UsedUp => {
                f.write_str("the activation token has been used as often as it allows")
            }
            ActivationError::Uses { given } => write!(
                f,
                "invalid uses '{given}': expected a whole number from 1 to {MAX_USES}, or unlimited"
            ),
            ActivationError::Expires { given } => write!(
                f,
                "invalid expires '{given}': expected a duration from {} to {}, such as 30m, 24h or 7d",
                format_duration(TTL_RANGE.0),
                format_duration(TTL_RANGE.1)
            ),
            ActivationError::UnknownPolicy { reference } => {
                write!(f, "no policy '{reference}': give a policy name or id")
            }
            ActivationError::Random(_) => f.write_str("cannot generate an activation token"),
        }
    }
}

impl std::error::Error for ActivationError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ActivationError::Random(e) => Some(e),
            _ => None,
        }
    }
}

/// A new token for `policy`, working `uses` times (`None`: any number) until `ttl` after `now`
/// (default [`DEFAULT_TTL`]). Returns the secret, to be shown once, and the record to store.
pub fn new_token(
    policy: PolicyId,
    uses: Option<u32>,
    ttl: Option<Duration>,
    now: WallMs,
) -> Result<(String, Token), ActivationError> {
    if let Some(n) = uses {
        check_uses(n)?;
    }
    let ttl = ttl.unwrap_or(DEFAULT_TTL);
    check_ttl(ttl)?;
    let secret = pki::random_secret().map_err(ActivationError::Random)?;
    let token = Token {
        hash: hash_secret(&secret),
        policy,
        uses_left: uses,
        expires: Some(later(now, ttl)),
        created: now,
    };
    Ok((secret, token))
}

/// The token after one activation at `now`, with one use fewer; refused once it has expired
/// (at `expires` exactly) or has no use left.
pub fn redeem(token: &Token, now: WallMs) -> Result<Token, ActivationError> {
    if let Some(at) = token.expires
        && now >= at
    {
        return Err(ActivationError::Expired { at });
    }
    let uses_left = match token.uses_left {
        None => None,
        Some(0) => return Err(ActivationError::UsedUp),
        Some(n) => Some(n - 1),
    };
    Ok(Token {
        uses_left,
        ..token.clone()
    })
}

/// Whether the token no longer works at `now` because of its expiry.
pub fn is_expired(token: &Token, now: WallMs) -> bool {
    token.expires.is_some_and(|at| now >= at)
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> TokenHash {
    TokenHash(crate::secret::sha256(secret.as_bytes()))
}

/// The name of a token in lists and deletes: the first [`ID_LEN`] hex digits of its hash. It
/// says nothing usable about the secret.
pub fn token_id(hash: &TokenHash) -> String {
    let mut id = crate::secret::hex(&hash.0);
    id.truncate(ID_LEN);
    id
}

/// Reads `uses` as written by an administrator: a whole number in range, or `unlimited`.
pub fn parse_uses(text: &str) -> Result<Option<u32>, ActivationError> {
    if text == "unlimited" {
        return Ok(None);
    }
    let bad = || ActivationError::Uses {
        given: text.to_string(),
    };
    let n: u32 = text.parse().map_err(|_| bad())?;
    check_uses(n).map_err(|_| bad())?;
    Ok(Some(n))
}

/// Reads `expires` as written by an administrator (`30m`, `24h`, `7d`), checking its range.
pub fn parse_ttl(text: &str) -> Result<Duration, ActivationError> {
    let bad = || ActivationError::Expires {
        given: text.to_string(),
    };
    let ttl = parse_duration(text).map_err(|_| bad())?;
    check_ttl(ttl).map_err(|_| bad())?;
    Ok(ttl)
}

/// The command that activates an agent with this token, as the administrator runs it on the
/// computer to protect.
///
/// The token goes in the environment, not on the command line: arguments are in `ps` for every
/// user for the agent's whole life, a process's environment only for its owner and root.
pub fn agent_command(manager: &str, secret: &str, ca_sha256: &str) -> String {
    format!(
        "PICKET_TOKEN={secret} picket agent --data-dir {AGENT_DATA_DIR} --manager {manager} --ca-sha256 {ca_sha256}"
    )
}

fn check_uses(n: u32) -> Result<(), ActivationError> {
    if (1..=MAX_USES).contains(&n) {
        Ok(())
    } else {
        Err(ActivationError::Uses {
            given: n.to_string(),
        })
    }
}

fn check_ttl(ttl: Duration) -> Result<(), ActivationError> {
    if ttl >= TTL_RANGE.0 && ttl <= TTL_RANGE.1 {
        Ok(())
    } else {
        Err(ActivationError::Expires {
            given: format_duration(ttl),
        })
    }
}

fn later(t: WallMs, d: Duration) -> WallMs {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    WallMs(t.0.saturating_add(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: WallMs = WallMs(1_700_000_000_000);
    const HOUR: Duration = Duration::from_secs(3_600);

    fn token(uses: Option<u32>, ttl: Option<Duration>) -> (String, Token) {
        new_token(PolicyId(2), uses, ttl, NOW).unwrap()
    }

    fn at(t: WallMs, plus: Duration) -> WallMs {
        later(t, plus)
    }

    #[test]
    fn a_new_token_stores_only_the_hash_of_its_secret() {
        let (secret, t) = token(Some(3), Some(HOUR));
        assert_eq!(secret.len(), 64);
        assert_eq!(t.hash, TokenHash(crate::secret::sha256(secret.as_bytes())));
        assert_eq!(t.hash, hash_secret(&secret));
        assert_eq!(t.policy, PolicyId(2));
        assert_eq!(t.uses_left, Some(3));
        assert_eq!(t.created, NOW);
        assert_eq!(t.expires, Some(at(NOW, HOUR)));
        let (other, _) = token(Some(3), Some(HOUR));
        assert_ne!(secret, other);
    }

    #[test]
    fn without_an_expiry_a_token_works_for_a_day() {
        let (_, t) = token(None, None);
        assert_eq!(t.expires, Some(at(NOW, DEFAULT_TTL)));
        assert_eq!(t.expires, Some(WallMs(NOW.0 + 86_400_000)));
    }

    #[test]
    fn a_token_expires_exactly_at_its_expiry() {
        let (_, t) = token(None, Some(HOUR));
        let expiry = at(NOW, HOUR);
        assert!(redeem(&t, NOW).is_ok());
        assert!(redeem(&t, WallMs(expiry.0 - 1)).is_ok());
        assert!(!is_expired(&t, WallMs(expiry.0 - 1)));
        for late in [expiry, WallMs(expiry.0 + 1), WallMs(u64::MAX)] {
            let err = redeem(&t, late).unwrap_err();
            assert!(
                matches!(err, ActivationError::Expired { at } if at == expiry),
                "{err:?}"
            );
            assert!(is_expired(&t, late));
        }
        assert_eq!(
            redeem(&t, expiry).unwrap_err().to_string(),
            "the activation token expired at 2023-11-14 23:13:20 UTC"
        );
    }

    #[test]
    fn uses_count_down_to_a_refusal() {
        let (_, mut t) = token(Some(2), None);
        t = redeem(&t, NOW).unwrap();
        assert_eq!(t.uses_left, Some(1));
        t = redeem(&t, NOW).unwrap();
        assert_eq!(t.uses_left, Some(0));
        assert!(matches!(redeem(&t, NOW), Err(ActivationError::UsedUp)));
        // Redeeming changes nothing but the count.
        let (_, fresh) = token(Some(2), None);
        let once = redeem(&fresh, NOW).unwrap();
        assert_eq!(
            Token {
                uses_left: Some(2),
                ..once
            },
            fresh
        );
    }

    #[test]
    fn an_unlimited_token_works_until_it_expires() {
        let (_, mut t) = token(None, Some(HOUR));
        for i in 0..1_000 {
            t = redeem(&t, WallMs(NOW.0 + i)).unwrap();
            assert_eq!(t.uses_left, None);
        }
        assert!(matches!(
            redeem(&t, at(NOW, HOUR)),
            Err(ActivationError::Expired { .. })
        ));
    }

    #[test]
    fn an_expired_token_is_refused_even_with_uses_left_and_a_used_up_one_before_expiry() {
        let (_, t) = token(Some(1), Some(HOUR));
        assert!(matches!(
            redeem(&t, at(NOW, HOUR)),
            Err(ActivationError::Expired { .. })
        ));
        let used = redeem(&t, NOW).unwrap();
        assert!(matches!(redeem(&used, NOW), Err(ActivationError::UsedUp)));
    }

    #[test]
    fn uses_range_is_one_to_a_hundred_thousand_or_unlimited() {
        assert_eq!(parse_uses("1").unwrap(), Some(1));
        assert_eq!(parse_uses("100000").unwrap(), Some(100_000));
        assert_eq!(parse_uses("unlimited").unwrap(), None);
        for bad in ["0", "-1", "100001", "2.5", "", "lots", "4294967296"] {
            let err = parse_uses(bad).unwrap_err();
            assert_eq!(err.field(), Some("uses"), "{bad}");
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
        for bad in [0, MAX_USES + 1, u32::MAX] {
            let err = new_token(PolicyId(1), Some(bad), None, NOW).unwrap_err();
            assert!(
                matches!(err, ActivationError::Uses { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn expires_range_is_a_minute_to_a_year() {
        assert_eq!(parse_ttl("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_ttl("24h").unwrap(), DEFAULT_TTL);
        assert_eq!(parse_ttl("365d").unwrap(), TTL_RANGE.1);
        for bad in ["0s", "59s", "366d", "400d", "abc", "", "10", "-1h"] {
            let err = parse_ttl(bad).unwrap_err();
            assert_eq!(err.field(), Some("expires"), "{bad}");
        }
        assert_eq!(
            parse_ttl("400d").unwrap_err().to_string(),
            "invalid expires '400d': expected a duration from 1m to 365d, such as 30m, 24h or 7d"
        );
        for bad in [Duration::ZERO, Duration::from_secs(59), TTL_RANGE.1 + HOUR] {
            let err = new_token(PolicyId(1), None, Some(bad), NOW).unwrap_err();
            assert_eq!(err.field(), Some("expires"), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_their_field_and_never_a_secret() {
        let (secret, t) = token(Some(1), Some(HOUR));
        let used = redeem(&t, NOW).unwrap();
        let errors = [
            ActivationError::UnknownToken,
            redeem(&t, at(NOW, HOUR)).unwrap_err(),
            redeem(&used, NOW).unwrap_err(),
            ActivationError::UnknownPolicy {
                reference: "Nope".into(),
            },
        ];
        for e in &errors {
            assert!(!e.to_string().contains(&secret), "{e}");
            assert!(!format!("{e:?}").contains(&secret), "{e:?}");
        }
        assert_eq!(errors[0].field(), None);
        assert_eq!(errors[3].field(), Some("policy"));
    }

    #[test]
    fn ids_are_the_first_sixteen_hex_digits_of_the_hash() {
        let mut hash = [0u8; 32];
        hash[0] = 0xab;
        hash[7] = 0x01;
        hash[8] = 0xff;
        assert_eq!(token_id(&TokenHash(hash)), "ab00000000000001");
        let (secret, t) = token(None, None);
        let id = token_id(&t.hash);
        assert_eq!(id.len(), ID_LEN);
        assert!(crate::secret::hex(&crate::secret::sha256(secret.as_bytes())).starts_with(&id));
    }

    #[test]
    fn the_agent_command_carries_endpoint_token_and_pin() {
        assert_eq!(
            agent_command("mgr.example:4120", "s3cret", "ab12"),
            "PICKET_TOKEN=s3cret picket agent --data-dir /var/lib/picket-agent --manager mgr.example:4120 --ca-sha256 ab12"
        );
    }
}
