//! Delivery bookkeeping, sans-io: where each channel stands in the outbox, what it has sent and
//! failed, and what to do after a failed attempt (retry later, with exponential backoff, or give
//! the notice up once it is older than the channel allows).

use crate::clock::WallMs;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The first retry comes 1 s after a failure, each next one twice as long after, up to this.
pub const LONGEST_RETRY: Duration = Duration::from_secs(300);

/// A channel's progress through the outbox, kept in the store so a restart resumes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Every notice up to this sequence is done with (sent, given up, or not for this channel).
    pub done_through: u64,
    pub sent: u64,
    /// Given up after `give_up_after`.
    pub failed: u64,
    /// Not routed to the channel, or silenced by a maintenance window.
    pub skipped: u64,
    /// Failed attempts at the notice after `done_through`.
    pub attempts: u32,
    pub last_attempt: Option<WallMs>,
    pub last_sent: Option<WallMs>,
    /// The last failure's error, kept after a success for the console; `None` until one.
    pub last_error: Option<String>,
    /// Whether the last attempt failed (the channel is failing now).
    pub failing: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(Duration),
    GiveUp,
}

/// After the `attempts`th failed attempt at a notice `age` old: retry, or give it up once it is
/// `give_up_after` old. Age counts from the alert's change, not the first attempt, so a channel
/// down for days gives up a backlog at one attempt per notice instead of a full wait each.
pub fn after_failure(attempts: u32, age: Duration, give_up_after: Duration) -> AfterFailure {
    if age >= give_up_after {
        return AfterFailure::GiveUp;
    }
    AfterFailure::RetryIn(crate::net::backoff::doubling(
        attempts.max(1),
        0,
        LONGEST_RETRY,
    ))
}

/// Attempts at a notice the server refuses for good before it is given up.
pub const PERMANENT_TRIES: u32 = 3;

/// [`after_failure`], except that a delivery the server refused for good (`permanent`: a 5xx
/// from SMTP, a 4xx) is given up at its [`PERMANENT_TRIES`]th attempt: a few tries in case it
/// was a passing fault, then the channel goes on without it rather than hold everything after
/// it for a day.
pub fn after_refusal(
    permanent: bool,
    attempts: u32,
    age: Duration,
    give_up_after: Duration,
) -> AfterFailure {
    if permanent && attempts >= PERMANENT_TRIES {
        return AfterFailure::GiveUp;
    }
    after_failure(attempts, age, give_up_after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_then_give_up_by_age() {
        let day = Duration::from_secs(86400);
        let waits: Vec<_> = (1..=12)
            .map(|n| after_failure(n, Duration::ZERO, day))
            .collect();
        assert_eq!(waits[0], AfterFailure::RetryIn(Duration::from_secs(1)));
        assert_eq!(waits[1], AfterFailure::RetryIn(Duration::from_secs(2)));
        assert_eq!(waits[4], AfterFailure::RetryIn(Duration::from_secs(16)));
        assert_eq!(waits[11], AfterFailure::RetryIn(LONGEST_RETRY));
        assert_eq!(
            after_failure(u32::MAX, Duration::ZERO, day),
            AfterFailure::RetryIn(LONGEST_RETRY)
        );
        assert_eq!(after_failure(1, day, day), AfterFailure::GiveUp);
    }

    #[test]
    fn a_permanent_refusal_is_given_up_after_a_few_tries_whatever_its_age() {
        let day = Duration::from_secs(86400);
        let refused = |n| after_refusal(true, n, Duration::ZERO, day);
        assert_eq!(refused(1), AfterFailure::RetryIn(Duration::from_secs(1)));
        assert_eq!(refused(PERMANENT_TRIES), AfterFailure::GiveUp);
        assert_eq!(
            after_refusal(false, PERMANENT_TRIES, Duration::ZERO, day),
            AfterFailure::RetryIn(Duration::from_secs(4))
        );
    }
}
