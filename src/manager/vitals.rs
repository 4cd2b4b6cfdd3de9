//! What the manager's watchdog keep-alive vouches for: every task meant to run until shutdown
//! still runs, the store writer's thread too, and both executors (the workers and the agent
//! port's accept thread) still run a task within the keep-alive's interval. A manager that
//! fails this is no longer serving, so systemd should restart it.

use crate::clock::Clock;
use crate::tasks::Spawner;
use std::time::Duration;

/// Something that ends: a task or a thread.
pub trait Ends {
    fn has_ended(&self) -> bool;
}

impl<T> Ends for smol::Task<T> {
    fn has_ended(&self) -> bool {
        self.is_finished()
    }
}

impl<T> Ends for std::thread::JoinHandle<T> {
    fn has_ended(&self) -> bool {
        self.is_finished()
    }
}

/// The manager's running parts, by the names the log gives them.
pub struct Vitals<'a> {
    pub parts: Vec<(&'static str, &'a dyn Ends)>,
    pub executors: Vec<(&'static str, Spawner)>,
    pub clock: &'a dyn Clock,
    /// How long an executor may take to run a trivial task.
    pub within: Duration,
}

impl Vitals<'_> {
    /// `Err` names the first part that ended or the executor that did not answer in time.
    pub async fn check(&self) -> Result<(), String> {
        if let Some((name, _)) = self.parts.iter().find(|(_, part)| part.has_ended()) {
            return Err(format!("{name} has stopped"));
        }
        for (name, executor) in &self.executors {
            let probe = executor.spawn(async {});
            if crate::clock::within(self.clock, self.within, probe)
                .await
                .is_none()
            {
                return Err(format!("{name} ran no task within {:?}", self.within));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, WallMs};
    use std::sync::Arc;

    #[test]
    fn an_ended_task_or_a_stuck_executor_fails_the_check_by_name() {
        let clock = ManualClock::new(WallMs(0));
        let running: Spawner = Arc::new(smol::Executor::new());
        let ended = running.spawn(async {});
        let forever = running.spawn(std::future::pending::<()>());
        // An executor nobody drives: its probe never runs.
        let stuck: Spawner = Arc::new(smol::Executor::new());
        let mut vitals = Vitals {
            parts: vec![("the dialer", &forever)],
            executors: vec![("the workers", running.clone())],
            clock: &clock,
            within: Duration::from_secs(15),
        };
        let check = |vitals: &Vitals| smol::block_on(running.run(vitals.check()));
        assert_eq!(check(&vitals), Ok(()));
        smol::block_on(running.run(async {
            while !ended.is_finished() {
                smol::future::yield_now().await;
            }
        }));
        vitals.parts.push(("the API", &ended));
        assert_eq!(check(&vitals), Err("the API has stopped".to_string()));
        vitals.parts.pop();
        // Alone, so the deadline waited on is the stuck executor's.
        vitals.executors = vec![("the accept thread", stuck)];
        let mut checking = Box::pin(vitals.check());
        let turn = |f: &mut _| smol::block_on(running.run(smol::future::poll_once(f)));
        assert!(turn(&mut checking).is_none());
        clock.advance(Duration::from_secs(15));
        assert_eq!(
            turn(&mut checking),
            Some(Err("the accept thread ran no task within 15s".to_string()))
        );
    }
}
