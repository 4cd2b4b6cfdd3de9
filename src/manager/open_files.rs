//! The open-files limit a manager needs. Every agent connection, waiting in the agent port's
//! queue or in its session, holds a file descriptor, and the usual soft limit is 1,024: a
//! manager of thousands of agents that falls a second behind would refuse connections (and
//! log accept failures) long before its CPU is the limit. The soft limit is raised to the hard
//! one at start, as nginx and the Go runtime do; the hard limit is the administrator's
//! (systemd's `LimitNOFILE`).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Below this many open files a loaded manager may run out: worth a warning.
const ENOUGH: u64 = 16_384;

/// What the limit was and is now (`None`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    pub before: Option<u64>,
    pub now: Option<u64>,
}

/// Raises the soft open-files limit to the hard one; says in the log what it did, and warns if
/// even the hard limit is low.
pub fn raise() -> Raised {
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    let now = if limit.current != limit.maximum {
        let wanted = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, wanted) {
            Ok(()) => limit.maximum,
            Err(e) => {
                log::warn!("cannot raise the open files limit from {before:?}: {e}");
                before
            }
        }
    } else {
        before
    };
    if now != before {
        log::debug!("open files limit raised from {before:?} to {now:?}");
    }
    if let Some(n) = now
        && n < ENOUGH
    {
        log::warn!(
            "this process may open only {n} files: each agent connection holds one, so a \
             loaded manager may refuse agents; raise the hard limit (systemd: LimitNOFILE)"
        );
    }
    Raised { before, now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one() {
        // Lower the soft limit first, as a default 1,024 would be, so there is work to do.
        let hard = getrlimit(Resource::Nofile).maximum;
        if let Some(hard) = hard {
            let low = Rlimit {
                current: Some(hard.min(1024)),
                maximum: Some(hard),
            };
            setrlimit(Resource::Nofile, low).unwrap();
        }
        let raised = raise();
        assert_eq!(raised.now, hard);
        assert_eq!(getrlimit(Resource::Nofile).current, hard);
        if let Some(hard) = hard {
            assert_eq!(raised.before, Some(hard.min(1024)));
        }
    }
}
