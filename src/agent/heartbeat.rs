//! The agent's side of the heartbeat: it dials the manager each interval when its direction is
//! bidirectional or agent-initiated, waits quietly when manager-initiated (but dials once after
//! `SILENT_INTERVALS` without a session), announces a new listening port at once whatever the
//! direction, and says goodbye on a clean stop.

use super::Stopped;
use super::error::AgentError;
use super::runtime::Runtime;
use super::schedule::{Heartbeats, Next, SILENT_INTERVALS};
use super::session;
use crate::model::events;
use crate::proto::Purpose;
use crate::release;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Interval before the first configuration arrives (the activation answer carries one).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);

pub(super) async fn run(
    rt: &Runtime<'_>,
    tls: &Arc<rustls::ClientConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stopped, AgentError> {
    let mut interval = rt
        .spool
        .config()?
        .map_or(DEFAULT_INTERVAL, |(c, _)| c.interval);
    let mut plan = Heartbeats::new(rt.clock.now(), interval);
    log::info!(
        "running as computer {} ({}): manager at {}, heartbeat every {}",
        rt.identity.computer,
        rt.direction().name(),
        rt.identity.manager,
        crate::model::format_duration(interval)
    );
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        heard(rt, &mut plan);
        // An upgrade staged, or a trial given up: the binary to run next takes over now.
        rt.upgrades
            .check_trial(rt.clock.now(), interval, rt.spool, rt.clock)?;
        if let Some(start) = rt.upgrades.restart() {
            return Ok(Stopped::Restart(start));
        }
        let dials = rt.direction().agent_dials();
        let due = plan.poll_timeout(dials, rt.announce_pending());
        let trial = rt.upgrades.trial_deadline(interval);
        let sleep = rt.clock.sleep_until(match (due, trial) {
            (Some(due), Some(trial)) => Some(due.min(trial)),
            (due, trial) => due.or(trial),
        });
        let woke = smol::future::or(
            async {
                shutdown.as_mut().await;
                Wake::Stop
            },
            smol::future::or(
                async {
                    rt.heartbeat_wake.wait().await;
                    Wake::Changed
                },
                async {
                    sleep.await;
                    Wake::Due
                },
            ),
        )
        .await;
        match woke {
            Wake::Stop => break,
            Wake::Changed => {
                interval = rt
                    .spool
                    .config()?
                    .map_or(DEFAULT_INTERVAL, |(c, _)| c.interval);
                plan.handle_changed(rt.clock.now(), interval, rt.announce_pending());
            }
            Wake::Due => {
                // The manager may have dialed in while the loop slept.
                heard(rt, &mut plan);
                let now = rt.clock.now();
                let (dials, announce) = (rt.direction().agent_dials(), rt.announce_pending());
                if plan.poll(now, dials, announce) == Next::Heartbeat {
                    // Neither its direction nor an announcement: the silence is why.
                    if !dials && !announce {
                        log::info!(
                            "nothing heard from the manager for {SILENT_INTERVALS} intervals: \
                             dialing it once ({}), in case a rule keeps it out",
                            rt.direction().name()
                        );
                    }
                    rt.take_announce();
                    heartbeat(rt, tls, &mut plan).await;
                }
            }
        }
    }
    stop(rt, tls).await?;
    Ok(Stopped::Shutdown)
}

/// Sessions the manager dialed count as contact, like the loop's own.
fn heard(rt: &Runtime<'_>, plan: &mut Heartbeats) {
    if let Some(at) = rt.take_heard() {
        plan.handle_heard(at);
    }
}

enum Wake {
    Stop,
    Changed,
    Due,
}

/// One heartbeat session; its outcome goes to the plan.
async fn heartbeat(rt: &Runtime<'_>, tls: &Arc<rustls::ClientConfig>, plan: &mut Heartbeats) {
    let result = async {
        let mut stream = session::connect(&rt.identity.manager, tls.clone(), rt.clock).await?;
        rt.session(&mut stream, Purpose::Heartbeat).await
    }
    .await;
    match result {
        Ok(ended) => {
            rt.counters
                .heartbeats_ok
                .set(rt.counters.heartbeats_ok.get() + 1);
            plan.handle_success(
                rt.clock.now(),
                Some(ended.next),
                ended.new_interval,
                super::unit(),
            );
        }
        Err(e) => {
            rt.counters
                .heartbeats_failed
                .set(rt.counters.heartbeats_failed.get() + 1);
            let wait = plan.handle_failure(rt.clock.now(), super::unit());
            log::warn!(
                "heartbeat failed ({e}); retrying in {:.1}s",
                wait.as_secs_f64()
            );
        }
    }
}

/// Spools the stop event; says goodbye unless the direction forbids the agent to dial.
async fn stop(rt: &Runtime<'_>, tls: &Arc<rustls::ClientConfig>) -> Result<(), AgentError> {
    rt.spool.append(
        events::AGENT_STOPPED.id,
        rt.clock.wall(),
        vec![("version".into(), release::version().into())],
    )?;
    if !rt.direction().agent_dials() {
        log::info!("manager-initiated: the stop event goes with the manager's next contact");
        return Ok(());
    }
    // A goodbye delivers the stop event and tells the manager this is no outage. If the manager
    // is unreachable, the event stays spooled and goes with the next start's first heartbeat.
    let goodbye = async {
        let mut stream = session::connect(&rt.identity.manager, tls.clone(), rt.clock).await?;
        rt.session(&mut stream, Purpose::Goodbye).await
    };
    if let Err(e) = goodbye.await {
        log::warn!("could not say goodbye to the manager: {e}");
    }
    Ok(())
}
