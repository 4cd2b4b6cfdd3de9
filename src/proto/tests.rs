//! Both session machines driven against each other in memory, through real frames: the
//! protocol's exactly-once delivery checked with broken connections at random points.

use super::*;
use crate::clock::{Instant, WallMs};
use crate::policy::Fingerprint;
use message::samples;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

const STEP: Duration = Duration::from_secs(30);

/// One agent's durable state (its spool and configuration) and the manager's store.
#[derive(Default)]
struct World {
    spool: BTreeMap<u64, AgentEvent>,
    agent_fingerprint: Option<Fingerprint>,
    stored: BTreeMap<u64, AgentEvent>,
    /// Events the manager wrote, counting duplicates (there must be none).
    writes: u64,
    /// The manager's store refuses events (a full disk).
    store_full: bool,
    /// The version the agent reports, the binary the manager offers, whether the agent takes
    /// it, and what it received.
    agent_version: String,
    offer: Option<(UpgradeOffer, Vec<u8>)>,
    fetch: bool,
    received: Vec<u8>,
}

impl World {
    fn with_events(n: u64) -> Self {
        let mut world = World::default();
        for seq in 1..=n {
            world.spool.insert(seq, samples::event(seq));
        }
        world
    }

    fn status(&self) -> AgentStatus {
        let first = self.spool.keys().next().copied().unwrap_or(1);
        let last = self.spool.keys().next_back().copied().unwrap_or(0);
        AgentStatus {
            spool: SpoolRange { first, last },
            fingerprint: self.agent_fingerprint,
            ..samples::status()
        }
    }

    fn params(&self, max_batch: u32) -> SessionParams {
        SessionParams {
            authenticated: true,
            expected: samples::config(),
            last_seq: self.stored.keys().next_back().copied().unwrap_or(0),
            next_heartbeat: Duration::from_secs(600),
            step_timeout: STEP,
            max_batch,
            manager_time: WallMs(0),
            upgrade: self.offer.as_ref().map(|(offer, _)| offer.clone()),
        }
    }

    /// Runs one session; `break_after` frames cuts the connection (a crash of either side
    /// between any two frames). Returns the manager's summary and the agent's result.
    fn session(
        &mut self,
        max_batch: u32,
        break_after: Option<usize>,
    ) -> (Option<SessionSummary>, Option<Result<Duration, ProtoError>>) {
        let now = Instant::from_millis(0);
        let mut manager = ManagerSession::new(now, self.params(max_batch));
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: self.agent_version.clone(),
            purpose: Purpose::Heartbeat,
        };
        let mut agent = AgentSession::heartbeat(now, hello, self.status(), STEP);
        let (mut frames, mut summary, mut finished) = (0usize, None, None);
        loop {
            let mut progressed = false;
            while let Some(output) = agent.poll_output() {
                progressed = true;
                match output {
                    AgentOutput::Send(m) => {
                        if break_after == Some(frames) {
                            manager.handle_closed();
                            agent.handle_closed();
                            continue;
                        }
                        frames += 1;
                        let body = encode(&m).unwrap();
                        let m: AgentMsg = decode(&body[HEADER_LEN..]).unwrap();
                        manager.handle_message(now, m);
                    }
                    AgentOutput::ReadEvents { after, max } => {
                        let events: Vec<AgentEvent> = self
                            .spool
                            .range(after + 1..)
                            .take(max as usize)
                            .map(|(_, e)| e.clone())
                            .collect();
                        let more = self.spool.range(after + 1..).nth(max as usize).is_some();
                        agent.provide_events(now, EventBatch { events, more });
                    }
                    AgentOutput::Acked { through } => {
                        self.spool = self.spool.split_off(&(through + 1));
                    }
                    AgentOutput::Apply { fingerprint, .. } => {
                        self.agent_fingerprint = Some(fingerprint);
                        agent.config_result(now, Ok(fingerprint));
                    }
                    AgentOutput::Activated(_) => unreachable!("not an activation"),
                    AgentOutput::UpgradeOffered(_) => agent.upgrade_answer(now, self.fetch),
                    AgentOutput::BinaryChunk(data) => self.received.extend(data),
                    AgentOutput::Finished(result) => finished = Some(result),
                }
            }
            while let Some(output) = manager.poll_output() {
                progressed = true;
                match output {
                    ManagerOutput::Send(m) => {
                        if break_after == Some(frames) {
                            manager.handle_closed();
                            agent.handle_closed();
                            continue;
                        }
                        frames += 1;
                        let body = encode(&m).unwrap();
                        let m: ManagerMsg = decode(&body[HEADER_LEN..]).unwrap();
                        agent.handle_message(now, m);
                    }
                    ManagerOutput::StoreEvents(_) if self.store_full => {
                        manager.handle_store_refused(now);
                    }
                    ManagerOutput::StoreEvents(events) => {
                        for e in events {
                            self.writes += 1;
                            self.stored.insert(e.seq, e);
                        }
                        manager.handle_committed(now);
                    }
                    ManagerOutput::Activate(_) => unreachable!("not an activation"),
                    ManagerOutput::SendBinary(_) => {
                        let binary = self.offer.as_ref().map(|(_, b)| b.clone()).unwrap();
                        // Small pieces, so that a cut can fall between any two.
                        for piece in binary.chunks(3) {
                            if break_after == Some(frames) {
                                manager.handle_closed();
                                agent.handle_closed();
                                break;
                            }
                            frames += 1;
                            let m = ManagerMsg::BinaryChunk {
                                data: piece.to_vec(),
                            };
                            let body = encode(&m).unwrap();
                            agent.handle_message(now, decode(&body[HEADER_LEN..]).unwrap());
                        }
                        manager.handle_binary_sent();
                    }
                    ManagerOutput::Close(s) => summary = Some(s),
                }
            }
            if !progressed {
                return (summary, finished);
            }
        }
    }
}

#[test]
fn a_full_session_delivers_events_in_batches_and_pushes_the_config() {
    let mut world = World::with_events(7);
    let (summary, finished) = world.session(3, None);
    let summary = summary.unwrap();
    assert_eq!(summary.result, Ok(()));
    assert_eq!(summary.events_stored, 7);
    assert_eq!(summary.last_seq, 7);
    assert_eq!(summary.applied, Some(samples::config().fingerprint()));
    assert_eq!(finished, Some(Ok(Duration::from_secs(600))));
    assert!(
        world.spool.is_empty(),
        "acknowledged events leave the spool"
    );
    assert_eq!(world.stored.len(), 7);

    // Nothing new: the next session stores nothing and sends no configuration.
    let (summary, _) = world.session(3, None);
    let summary = summary.unwrap();
    assert_eq!((summary.events_stored, summary.result), (0, Ok(())));
}

#[test]
fn events_the_store_refuses_stay_with_the_agent_and_the_session_still_ends_well() {
    let mut world = World::with_events(5);
    world.store_full = true;
    let (summary, finished) = world.session(3, None);
    let summary = summary.unwrap();
    assert_eq!(summary.result, Ok(()), "the heartbeat itself went through");
    assert_eq!((summary.events_stored, summary.last_seq), (0, 0));
    assert_eq!(
        summary.applied,
        Some(samples::config().fingerprint()),
        "the configuration is still delivered"
    );
    assert_eq!(finished, Some(Ok(Duration::from_secs(600))));
    assert_eq!(
        world.spool.len(),
        5,
        "nothing acknowledged, nothing forgotten"
    );

    world.store_full = false;
    let (summary, _) = world.session(3, None);
    assert_eq!(summary.unwrap().events_stored, 5);
    assert!(world.spool.is_empty());
    assert_eq!((world.stored.len(), world.writes), (5, 5));
}

proptest! {
    /// Whatever frame the connection breaks after, and however often, every event ends up
    /// stored exactly once and leaves the spool only once stored.
    #[test]
    fn events_are_delivered_exactly_once_across_broken_sessions(
        events in 0u64..40,
        max_batch in 1u32..8,
        breaks in prop::collection::vec(0usize..60, 0..6),
    ) {
        let mut world = World::with_events(events);
        for cut in breaks {
            world.session(max_batch, Some(cut));
            // The spool only ever loses what the manager stored.
            for seq in 1..=events {
                prop_assert!(world.spool.contains_key(&seq) || world.stored.contains_key(&seq));
            }
        }
        let (summary, _) = world.session(max_batch, None);
        prop_assert_eq!(summary.map(|s| s.result), Some(Ok(())));
        prop_assert_eq!(world.stored.len() as u64, events);
        prop_assert_eq!(world.writes, events, "an event was written twice");
        prop_assert!(world.spool.is_empty());
    }
}

#[test]
fn silence_times_out_on_both_sides() {
    let world = World::default();
    let mut manager = ManagerSession::new(Instant::from_millis(0), world.params(10));
    assert_eq!(manager.poll_timeout(), Some(Instant::from_millis(30_000)));
    manager.handle_timeout(Instant::from_millis(29_999));
    assert!(!manager.is_closed());
    manager.handle_timeout(Instant::from_millis(30_000));
    let Some(ManagerOutput::Close(summary)) = manager.poll_output() else {
        panic!("expected close");
    };
    assert!(matches!(summary.result, Err(ProtoError::Timeout { .. })));
}

#[test]
fn out_of_order_and_unknown_version_close_the_session() {
    let world = World::with_events(2);
    let now = Instant::from_millis(0);

    let mut manager = ManagerSession::new(now, world.params(10));
    manager.handle_message(now, AgentMsg::Status(world.status()));
    let outputs: Vec<_> = std::iter::from_fn(|| manager.poll_output()).collect();
    assert!(matches!(
        outputs.as_slice(),
        [ManagerOutput::Close(SessionSummary {
            result: Err(ProtoError::Unexpected { .. }),
            ..
        })]
    ));

    let mut manager = ManagerSession::new(now, world.params(10));
    manager.handle_message(
        now,
        AgentMsg::Hello(Hello {
            protocol: 99,
            agent_version: "future".into(),
            purpose: Purpose::Heartbeat,
        }),
    );
    let outputs: Vec<_> = std::iter::from_fn(|| manager.poll_output()).collect();
    assert!(matches!(
        outputs[0],
        ManagerOutput::Send(Outgoing::Current(ManagerMsg::Refused(_)))
    ));
    assert!(matches!(
        outputs[1],
        ManagerOutput::Close(SessionSummary {
            result: Err(ProtoError::Version { theirs: 99, .. }),
            ..
        })
    ));
}

#[test]
fn events_must_increase_and_fit_the_batch() {
    let world = World::with_events(3);
    let now = Instant::from_millis(0);
    let hello = AgentMsg::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "t".into(),
        purpose: Purpose::Heartbeat,
    });
    for bad in [
        vec![samples::event(2), samples::event(2)],
        vec![samples::event(0)],
        vec![samples::event(1), samples::event(2), samples::event(3)],
    ] {
        let mut manager = ManagerSession::new(now, world.params(2));
        manager.handle_message(now, hello.clone());
        manager.handle_message(now, AgentMsg::Status(world.status()));
        manager.handle_message(
            now,
            AgentMsg::Events(EventBatch {
                events: bad,
                more: false,
            }),
        );
        let last = std::iter::from_fn(|| manager.poll_output()).last();
        assert!(
            matches!(
                last,
                Some(ManagerOutput::Close(SessionSummary {
                    result: Err(ProtoError::Violation(_)),
                    ..
                }))
            ),
            "{last:?}"
        );
    }
}

#[test]
fn heartbeat_without_certificate_is_refused_and_activation_goes_to_the_shell() {
    let world = World::default();
    let now = Instant::from_millis(0);
    let unauthenticated = SessionParams {
        authenticated: false,
        ..world.params(10)
    };
    let mut manager = ManagerSession::new(now, unauthenticated.clone());
    manager.handle_message(
        now,
        AgentMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "t".into(),
            purpose: Purpose::Heartbeat,
        }),
    );
    assert!(matches!(
        manager.poll_output(),
        Some(ManagerOutput::Send(Outgoing::Current(ManagerMsg::Refused(
            _
        ))))
    ));
    assert!(matches!(
        manager.poll_output(),
        Some(ManagerOutput::Close(SessionSummary {
            result: Err(ProtoError::Violation(_)),
            ..
        }))
    ));

    let request = ActivationRequest {
        protocol: PROTOCOL_VERSION,
        agent_version: "t".into(),
        token: "secret".into(),
        hostname: "web1".into(),
        public_key: vec![1, 2, 3],
    };
    let mut manager = ManagerSession::new(now, unauthenticated);
    let mut agent = AgentSession::activation(now, request.clone(), STEP);
    let Some(AgentOutput::Send(first)) = agent.poll_output() else {
        panic!("agent opens")
    };
    manager.handle_message(now, first);
    assert_eq!(
        manager.poll_output(),
        Some(ManagerOutput::Activate(request))
    );
    assert_eq!(
        manager.poll_timeout(),
        None,
        "waiting on the shell, not the agent"
    );
    manager.handle_activation(Err("token expired".into()));
    let Some(ManagerOutput::Send(Outgoing::Current(answer))) = manager.poll_output() else {
        panic!("manager answers")
    };
    agent.handle_message(now, answer);
    assert_eq!(
        agent.poll_output(),
        Some(AgentOutput::Finished(Err(ProtoError::Refused(
            "token expired".into()
        ))))
    );
}

#[test]
fn agent_refuses_an_ack_for_events_it_did_not_send() {
    let now = Instant::from_millis(0);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "t".into(),
        purpose: Purpose::Heartbeat,
    };
    let mut agent = AgentSession::heartbeat(now, hello, World::default().status(), STEP);
    agent.poll_output();
    agent.handle_message(
        now,
        ManagerMsg::GetStatus {
            protocol: PROTOCOL_VERSION,
            manager_time: WallMs(0),
        },
    );
    agent.poll_output();
    agent.handle_message(now, ManagerMsg::Ack { through: 5 });
    assert!(matches!(
        agent.poll_output(),
        Some(AgentOutput::Finished(Err(ProtoError::Violation(_))))
    ));
}

#[test]
fn goodbye_skips_the_configuration_push() {
    let world = World {
        agent_fingerprint: Some(Fingerprint([1; 32])),
        ..Default::default()
    };
    let now = Instant::from_millis(0);
    let mut manager = ManagerSession::new(now, world.params(10));
    manager.handle_message(
        now,
        AgentMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "t".into(),
            purpose: Purpose::Goodbye,
        }),
    );
    manager.poll_output();
    manager.handle_message(now, AgentMsg::Status(world.status()));
    let outputs: Vec<_> = std::iter::from_fn(|| manager.poll_output()).collect();
    assert!(matches!(
        outputs[0],
        ManagerOutput::Send(Outgoing::Current(ManagerMsg::Done { .. }))
    ));
}

#[test]
fn nothing_is_acknowledged_before_the_commit_is_reported() {
    let world = World::with_events(2);
    let now = Instant::from_millis(0);
    let mut manager = ManagerSession::new(now, world.params(10));
    manager.handle_message(
        now,
        AgentMsg::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: "t".into(),
            purpose: Purpose::Heartbeat,
        }),
    );
    manager.handle_message(now, AgentMsg::Status(world.status()));
    let batch = EventBatch {
        events: vec![samples::event(1), samples::event(2)],
        more: false,
    };
    manager.handle_message(now, AgentMsg::Events(batch));
    let before: Vec<_> = std::iter::from_fn(|| manager.poll_output()).collect();
    assert!(
        !before.iter().any(|o| matches!(
            o,
            ManagerOutput::Send(Outgoing::Current(ManagerMsg::Ack { .. }))
        )),
        "{before:?}"
    );
    assert!(matches!(before.last(), Some(ManagerOutput::StoreEvents(e)) if e.len() == 2));
    manager.handle_committed(now);
    assert_eq!(
        manager.poll_output(),
        Some(ManagerOutput::Send(Outgoing::Current(ManagerMsg::Ack {
            through: 2
        })))
    );
}

fn upgrade_world(agent_version: &str, fetch: bool) -> World {
    let binary: Vec<u8> = (0..20u8).collect();
    World {
        agent_version: agent_version.into(),
        offer: Some((
            UpgradeOffer {
                version: "0.2.0".into(),
                arch: "x86_64".into(),
                size: binary.len() as u64,
                sha256: crate::secret::sha256(&binary),
            },
            binary,
        )),
        fetch,
        ..World::with_events(2)
    }
}

#[test]
fn an_older_agent_is_offered_the_binary_and_receives_all_of_it_after_its_events() {
    let mut world = upgrade_world("0.1.0", true);
    let (summary, finished) = world.session(500, None);
    let summary = summary.unwrap();
    assert_eq!(summary.result, Ok(()));
    assert_eq!(summary.upgrade_offered.as_deref(), Some("0.2.0"));
    assert!(summary.upgrade_fetched);
    assert_eq!(summary.events_stored, 2, "events first");
    assert_eq!(finished, Some(Ok(Duration::from_secs(600))));
    assert_eq!(world.received, world.offer.unwrap().1);
}

#[test]
fn an_agent_that_declines_gets_done_and_no_bytes() {
    let mut world = upgrade_world("0.1.0", false);
    let (summary, finished) = world.session(500, None);
    let summary = summary.unwrap();
    assert_eq!(summary.upgrade_offered.as_deref(), Some("0.2.0"));
    assert!(!summary.upgrade_fetched);
    assert!(matches!(finished, Some(Ok(_))));
    assert!(world.received.is_empty());
}

#[test]
fn no_offer_to_an_agent_as_new_or_newer_or_without_a_version() {
    for version in ["0.2.0", "0.3.0", "test"] {
        let mut world = upgrade_world(version, true);
        let (summary, _) = world.session(500, None);
        let summary = summary.unwrap();
        assert_eq!(summary.upgrade_offered, None, "{version}");
        assert!(world.received.is_empty(), "{version}");
    }
}

#[test]
fn an_agent_refuses_more_bytes_than_were_offered_or_pieces_it_did_not_ask_for() {
    // Pieces without an accepted offer.
    let mut early = commanding_agent();
    early.handle_message(
        Instant::from_millis(0),
        ManagerMsg::BinaryChunk { data: vec![1] },
    );
    let last = std::iter::from_fn(|| early.poll_output()).last();
    assert!(
        matches!(
            last,
            Some(AgentOutput::Finished(Err(ProtoError::Unexpected { .. })))
        ),
        "{last:?}"
    );
    // More than the offer's size (4 bytes).
    let mut agent = fetching_agent();
    let now = Instant::from_millis(0);
    agent.handle_message(now, ManagerMsg::BinaryChunk { data: vec![0; 4] });
    agent.handle_message(now, ManagerMsg::BinaryChunk { data: vec![0; 1] });
    let outputs: Vec<_> = std::iter::from_fn(|| agent.poll_output()).collect();
    assert!(
        matches!(
            outputs.last(),
            Some(AgentOutput::Finished(Err(ProtoError::Violation(_))))
        ),
        "{outputs:?}"
    );
}

proptest! {
    /// A connection cut anywhere in an upgrade: the agent has at most what was sent, in order,
    /// and never more than offered; the events are still delivered exactly once.
    #[test]
    fn an_upgrade_cut_anywhere_is_a_prefix_of_the_binary(cut in 0usize..16) {
        let mut world = upgrade_world("0.1.0", true);
        let binary = world.offer.as_ref().unwrap().1.clone();
        let (_, finished) = world.session(500, Some(cut));
        prop_assert!(binary.starts_with(&world.received));
        if matches!(finished, Some(Ok(_))) {
            prop_assert_eq!(&world.received, &binary);
        }
        let (summary, _) = world.session(500, None);
        prop_assert_eq!(summary.unwrap().result, Ok(()));
        prop_assert_eq!(world.writes, 2);
    }
}

/// An agent session of a 0.1.0 agent in its commands step.
fn commanding_agent() -> AgentSession {
    let now = Instant::from_millis(0);
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: "0.1.0".into(),
        purpose: Purpose::Heartbeat,
    };
    let mut agent = AgentSession::heartbeat(now, hello, samples::status(), STEP);
    agent.handle_message(
        now,
        ManagerMsg::GetStatus {
            protocol: PROTOCOL_VERSION,
            manager_time: WallMs(0),
        },
    );
    while agent.poll_output().is_some() {}
    agent
}

/// [`commanding_agent`] after an offer of `samples::offer()` it took.
fn fetching_agent() -> AgentSession {
    let now = Instant::from_millis(0);
    let mut agent = commanding_agent();
    agent.handle_message(now, ManagerMsg::Upgrade(samples::offer()));
    let offered = std::iter::from_fn(|| agent.poll_output()).last();
    assert_eq!(offered, Some(AgentOutput::UpgradeOffered(samples::offer())));
    agent.upgrade_answer(now, true);
    while agent.poll_output().is_some() {}
    agent
}

fn violation(mut agent: AgentSession, message: ManagerMsg) -> Option<AgentOutput> {
    agent.handle_message(Instant::from_millis(0), message);
    std::iter::from_fn(|| agent.poll_output()).last()
}

#[test]
fn while_the_binary_comes_only_its_pieces_and_the_end_are_taken() {
    let ended_badly = |out: Option<AgentOutput>| matches!(out, Some(AgentOutput::Finished(Err(_))));
    assert!(ended_badly(violation(
        fetching_agent(),
        ManagerMsg::GetEvents { after: 0, max: 1 }
    )));
    assert!(ended_badly(violation(
        fetching_agent(),
        ManagerMsg::Upgrade(samples::offer())
    )));
    assert!(ended_badly(violation(
        fetching_agent(),
        ManagerMsg::BinaryChunk {
            data: vec![0; BINARY_CHUNK + 1]
        }
    )));
    let fine = violation(
        fetching_agent(),
        ManagerMsg::BinaryChunk { data: vec![0; 4] },
    );
    assert_eq!(fine, Some(AgentOutput::BinaryChunk(vec![0; 4])));
    let done = violation(
        fetching_agent(),
        ManagerMsg::Done {
            next_heartbeat_ms: 5,
        },
    );
    assert_eq!(
        done,
        Some(AgentOutput::Finished(Ok(Duration::from_millis(5))))
    );
}
