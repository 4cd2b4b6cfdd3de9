//! Console login sessions, sans-io: which session tokens are live, for whom, and when they
//! expire. The token is a random secret held by the browser's cookie; only its SHA-256 is kept
//! here, in memory, so a restart of the manager logs everyone out.

use crate::clock::Instant;
use std::collections::HashMap;
use std::time::Duration;

/// A session unused this long is over: the next request goes back to the login page.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// However busy, a session ends this long after the login.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 3600);
/// Live sessions kept at most; beyond it the least recently used one ends. Bounds the memory a
/// script logging in over and over can take.
const MAX_SESSIONS: usize = 1000;

/// The SHA-256 of a session token.
pub type TokenHash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The user still has to replace a generated password; only that is allowed until then.
    pub must_change_password: bool,
    created: Instant,
    last_seen: Instant,
}

#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    live: HashMap<TokenHash, Session>,
}

impl Sessions {
    pub fn new(idle: Duration) -> Self {
        Sessions {
            idle,
            live: HashMap::new(),
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle
    }

    pub fn open(&mut self, token: TokenHash, user: &str, must_change_password: bool, now: Instant) {
        self.live.retain(|_, s| live_at(s, self.idle, now));
        if self.live.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .live
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(t, _)| *t)
        {
            self.live.remove(&oldest);
        }
        self.live.insert(
            token,
            Session {
                user: user.to_string(),
                must_change_password,
                created: now,
                last_seen: now,
            },
        );
    }

    /// The session of this token if it is still live, which counts as use; an expired one is
    /// removed.
    pub fn touch(&mut self, token: &TokenHash, now: Instant) -> Option<Session> {
        let session = self.live.get_mut(token)?;
        if !live_at(session, self.idle, now) {
            self.live.remove(token);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// The session of this token if it is still live, without counting this as use.
    pub fn peek(&mut self, token: &TokenHash, now: Instant) -> Option<Session> {
        let session = self.live.get(token)?;
        if !live_at(session, self.idle, now) {
            self.live.remove(token);
            return None;
        }
        Some(session.clone())
    }

    pub fn close(&mut self, token: &TokenHash) -> bool {
        self.live.remove(token).is_some()
    }

    /// After a password change: every other session of the user ends (whoever knew the old
    /// password is out), and the one that changed it may do everything again.
    pub fn password_changed(&mut self, user: &str, keep: Option<&TokenHash>) {
        // Names compare as the store compares them.
        let user = user.to_lowercase();
        self.live
            .retain(|t, s| s.user.to_lowercase() != user || Some(t) == keep);
        if let Some(session) = keep.and_then(|t| self.live.get_mut(t)) {
            session.must_change_password = false;
        }
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

fn live_at(session: &Session, idle: Duration, now: Instant) -> bool {
    now.saturating_since(session.last_seen) < idle
        && now.saturating_since(session.created) < MAX_AGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock, WallMs};

    fn token(n: u8) -> TokenHash {
        [n; 32]
    }

    #[test]
    fn a_session_lives_while_used_and_ends_after_the_idle_timeout() {
        let clock = ManualClock::new(WallMs(0));
        let mut s = Sessions::new(Duration::from_secs(60));
        s.open(token(1), "admin", false, clock.now());
        for _ in 0..5 {
            clock.advance(Duration::from_secs(59));
            assert_eq!(s.touch(&token(1), clock.now()).unwrap().user, "admin");
        }
        clock.advance(Duration::from_secs(60));
        assert_eq!(s.touch(&token(1), clock.now()), None);
        assert!(s.is_empty(), "the expired session is forgotten");
        assert_eq!(s.touch(&token(2), clock.now()), None);
    }

    #[test]
    fn a_peek_sees_the_session_but_does_not_keep_it_alive() {
        let clock = ManualClock::new(WallMs(0));
        let mut s = Sessions::new(Duration::from_secs(60));
        s.open(token(1), "admin", false, clock.now());
        for _ in 0..5 {
            clock.advance(Duration::from_secs(10));
            assert!(s.peek(&token(1), clock.now()).is_some());
        }
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            s.peek(&token(1), clock.now()),
            None,
            "60 s after the last use"
        );
        assert!(s.is_empty());
    }

    #[test]
    fn a_busy_session_still_ends_at_its_maximum_age() {
        let clock = ManualClock::new(WallMs(0));
        let mut s = Sessions::new(IDLE_TIMEOUT);
        s.open(token(1), "admin", false, clock.now());
        let step = Duration::from_secs(600);
        let mut used = Duration::ZERO;
        while used + step < MAX_AGE {
            clock.advance(step);
            used += step;
            assert!(s.touch(&token(1), clock.now()).is_some(), "at {used:?}");
        }
        clock.advance(step);
        assert_eq!(s.touch(&token(1), clock.now()), None);
    }

    #[test]
    fn logout_and_password_change_end_sessions() {
        let clock = ManualClock::new(WallMs(0));
        let now = clock.now();
        let mut s = Sessions::new(IDLE_TIMEOUT);
        s.open(token(1), "admin", true, now);
        s.open(token(2), "Admin", true, now);
        s.open(token(3), "alice", false, now);
        assert!(s.close(&token(3)));
        assert!(!s.close(&token(3)));
        s.password_changed("admin", Some(&token(1)));
        let kept = s.touch(&token(1), now).unwrap();
        assert!(!kept.must_change_password);
        assert_eq!(
            s.touch(&token(2), now),
            None,
            "the other admin session ended"
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn the_least_recently_used_session_makes_room() {
        let clock = ManualClock::new(WallMs(0));
        let mut s = Sessions::new(IDLE_TIMEOUT);
        for i in 0..MAX_SESSIONS {
            s.open(hash_of(i), "admin", false, clock.now());
            clock.advance(Duration::from_millis(1));
        }
        s.touch(&hash_of(0), clock.now());
        s.open(token(0xff), "admin", false, clock.now());
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.touch(&hash_of(0), clock.now()).is_some(), "recently used");
        assert!(
            s.touch(&hash_of(1), clock.now()).is_none(),
            "least recently used"
        );
    }

    fn hash_of(i: usize) -> TokenHash {
        crate::secret::sha256(&i.to_le_bytes())
    }
}
