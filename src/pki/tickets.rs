//! TLS session tickets that survive a manager restart. With rustls's own ticketer the key lives
//! in memory, so after a restart every agent's next heartbeat is a full handshake, all within
//! one interval: at 100,000 agents that rush is more than a small box can take (measured with
//! `picket bench --warmup`: 23,150 of 101,265 first sessions failed). Here the tickets are sealed
//! with keys derived from a secret in `DIR/pki/ticket.key` (mode 0600, beside the CA key that
//! already guards everything): a key per six-hour period, tickets accepted for the current and
//! the previous period, so each key is retired after at most twelve hours.
//!
//! A ticket is `period (8 bytes, big-endian) || nonce (12) || AES-256-GCM(state) || tag`, the
//! period also authenticated. Only TLS 1.3 sessions get one: a TLS 1.3 resumption keeps the
//! key exchange (`psk_dhe_ke`), so a leaked ticket key does not open recorded traffic, while a
//! TLS 1.2 ticket carries the master secret itself in the clear handshake, and with a key that
//! outlives the process a leaked file would open every recorded TLS 1.2 session. (A leaked file
//! would still let one resume TLS 1.3 as an agent whose ticket was captured, which is why it is
//! as private as the CA key.)

use super::PkiError;
use crate::files::write_atomic;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf::{HKDF_SHA256, Salt};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::ProducesTickets;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const TICKET_KEY_FILE: &str = "ticket.key";
/// How long one derived key seals new tickets.
const PERIOD: Duration = Duration::from_secs(6 * 3600);
/// How long a ticket may be used, told to clients: two periods, the acceptance window.
const LIFETIME_SECS: u32 = 12 * 3600;
const PERIOD_LEN: usize = 8;

/// The ticket key of `pki_dir`, created on first use.
pub fn persistent_ticketer(
    pki_dir: &Path,
    clock: Arc<dyn crate::clock::Clock>,
) -> Result<Arc<dyn ProducesTickets>, PkiError> {
    let path = pki_dir.join(TICKET_KEY_FILE);
    let io = |action, source| PkiError::Io {
        path: path.clone(),
        action,
        source,
    };
    let secret = match std::fs::read(&path) {
        Ok(bytes) => {
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| PkiError::BadTicketKey {
                path: path.clone(),
                len: bytes.len(),
            })?
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            SystemRandom::new()
                .fill(&mut secret)
                .map_err(|_| PkiError::Random)?;
            write_atomic(&path, &secret, 0o600).map_err(|e| io("write", e))?;
            secret
        }
        Err(e) => return Err(io("read", e)),
    };
    Ok(Arc::new(Ticketer::new(secret, SystemClock(clock))))
}

/// Where the ticketer reads the time; tests step it by hand.
pub trait TicketClock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> SystemTime;
}

/// The manager's clock, as the ticketer reads it.
pub struct SystemClock(pub Arc<dyn crate::clock::Clock>);

impl std::fmt::Debug for SystemClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SystemClock")
    }
}

impl TicketClock for SystemClock {
    fn now(&self) -> SystemTime {
        self.0.wall().to_system_time()
    }
}

pub struct Ticketer<C> {
    secret: [u8; 32],
    clock: C,
    rng: SystemRandom,
}

// The secret stays out of logs and panics.
impl<C: std::fmt::Debug> std::fmt::Debug for Ticketer<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticketer")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl<C: TicketClock> Ticketer<C> {
    pub fn new(secret: [u8; 32], clock: C) -> Self {
        Ticketer {
            secret,
            clock,
            rng: SystemRandom::new(),
        }
    }

    /// The current period; `None` for a clock before 1970.
    fn period(&self) -> Option<u64> {
        let since = self.clock.now().duration_since(UNIX_EPOCH).ok()?;
        Some(since.as_secs() / PERIOD.as_secs())
    }

    fn key(&self, period: u64) -> Option<LessSafeKey> {
        let info = [b"picket session ticket".as_slice(), &period.to_be_bytes()];
        let prk = Salt::new(HKDF_SHA256, &[]).extract(&self.secret);
        let okm = prk.expand(&info, &AES_256_GCM).ok()?;
        Some(LessSafeKey::new(UnboundKey::from(okm)))
    }
}

impl<C: TicketClock + 'static> ProducesTickets for Ticketer<C> {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        // No ticket (a TLS 1.2 client then gets none) for anything but a TLS 1.3 session.
        if !is_tls13_session(plain) {
            return None;
        }
        let period = self.period()?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        self.key(period)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(period.to_be_bytes()),
                &mut sealed,
            )
            .ok()?;
        let mut out = Vec::with_capacity(PERIOD_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// `None` (a full handshake follows) for anything not sealed by this secret in the current
    /// or previous period: a stranger's, an old, a future or a tampered ticket.
    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let period = u64::from_be_bytes(ticket.get(..PERIOD_LEN)?.try_into().ok()?);
        let now = self.period()?;
        if period != now && Some(period) != now.checked_sub(1) {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = ticket
            .get(PERIOD_LEN..PERIOD_LEN + NONCE_LEN)?
            .try_into()
            .ok()?;
        let mut sealed = ticket.get(PERIOD_LEN + NONCE_LEN..)?.to_vec();
        let plain = self
            .key(period)?
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(period.to_be_bytes()),
                &mut sealed,
            )
            .ok()?;
        is_tls13_session(plain).then(|| plain.to_vec())
    }
}

/// Whether rustls's encoded session state (`msgs::persist::ServerSessionValue`: an optional SNI
/// as a presence byte then a u8-length name, then the protocol version as a big-endian u16) is
/// a TLS 1.3 one. Reading rustls's private encoding is brittle, so
/// `tests/e2e/agent_port.rs::a_tls12_agent_gets_no_ticket_and_a_tls13_one_does` pins the
/// behaviour with real handshakes.
fn is_tls13_session(state: &[u8]) -> bool {
    let version_at = match state.first() {
        Some(0) => 1,
        Some(1) => match state.get(1) {
            Some(&len) => 2 + usize::from(len),
            None => return false,
        },
        _ => return false,
    };
    state.get(version_at..version_at + 2) == Some(&[0x03, 0x04])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Clone)]
    struct Manual(Arc<AtomicU64>);

    impl TicketClock for Manual {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
        }
    }

    fn at(secs: u64) -> (Ticketer<Manual>, Arc<AtomicU64>) {
        let t = Arc::new(AtomicU64::new(secs));
        (Ticketer::new([7; 32], Manual(t.clone())), t)
    }

    /// What rustls encodes for a TLS 1.3 session: no SNI, version 0x0304, then the rest.
    const STATE: &[u8] = b"\x00\x03\x04resumption state";

    #[test]
    fn only_tls13_sessions_are_sealed() {
        let (ticketer, _) = at(1_800_000_000);
        assert!(ticketer.encrypt(STATE).is_some());
        assert!(ticketer.encrypt(b"\x00\x03\x03tls 1.2 state").is_none());
        assert!(
            ticketer
                .encrypt(b"\x01\x03abc\x03\x04with an sni")
                .is_some()
        );
        assert!(
            ticketer
                .encrypt(b"\x01\x03abc\x03\x03with an sni")
                .is_none()
        );
        for junk in [
            &b""[..],
            b"\x00",
            b"\x00\x03",
            b"\x01",
            b"\x01\x09ab",
            b"\x02\x03\x04",
        ] {
            assert!(ticketer.encrypt(junk).is_none(), "{junk:?}");
        }
    }

    #[test]
    fn a_ticket_opens_for_two_periods_then_never() {
        let (ticketer, time) = at(1_800_000_000);
        let ticket = ticketer.encrypt(STATE).unwrap();
        assert!(!ticket.windows(16).any(|w| w == b"resumption state"));
        assert_eq!(ticketer.decrypt(&ticket).unwrap(), STATE);
        time.fetch_add(PERIOD.as_secs(), Ordering::SeqCst);
        assert_eq!(ticketer.decrypt(&ticket).unwrap(), STATE);
        time.fetch_add(PERIOD.as_secs(), Ordering::SeqCst);
        assert_eq!(ticketer.decrypt(&ticket), None, "two periods on");
        // A clock stepped back does not bring it back from the future either.
        time.store(1_800_000_000 - 2 * PERIOD.as_secs(), Ordering::SeqCst);
        assert_eq!(ticketer.decrypt(&ticket), None);
    }

    #[test]
    fn a_stranger_s_tampered_or_truncated_ticket_is_refused() {
        let (ticketer, time) = at(1_800_000_000);
        let ticket = ticketer.encrypt(STATE).unwrap();
        let other = Ticketer::new([8; 32], Manual(time));
        assert_eq!(other.decrypt(&ticket), None);
        for i in [0, 7, 8, 19, 20, ticket.len() - 1] {
            let mut bad = ticket.clone();
            bad[i] ^= 1;
            assert_eq!(ticketer.decrypt(&bad), None, "byte {i}");
        }
        for len in [0, 7, 8, 20, ticket.len() - 1] {
            assert_eq!(ticketer.decrypt(&ticket[..len]), None, "{len} bytes");
        }
        // Two tickets of the same state differ (random nonces).
        assert_ne!(ticket, ticketer.encrypt(STATE).unwrap());
    }

    #[test]
    fn the_key_file_is_private_kept_across_starts_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first =
            persistent_ticketer(dir.path(), Arc::new(crate::clock::RealClock::new())).unwrap();
        let ticket = first.encrypt(STATE).unwrap();
        let path = dir.path().join(TICKET_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let restarted =
            persistent_ticketer(dir.path(), Arc::new(crate::clock::RealClock::new())).unwrap();
        assert_eq!(restarted.decrypt(&ticket).unwrap(), STATE);

        std::fs::write(&path, b"short").unwrap();
        let err =
            persistent_ticketer(dir.path(), Arc::new(crate::clock::RealClock::new())).unwrap_err();
        assert!(
            matches!(err, PkiError::BadTicketKey { len: 5, .. }),
            "{err}"
        );
    }
}
