//! Registration in bulk: the data dir, the manager's PKI and store are prepared before the
//! manager starts, and every simulated agent gets its own key and a certificate issued by the
//! manager's CA, written as a computer and an agent state in a few large transactions.
//!
//! Real activation costs one store commit (an fsync) per agent and scans every computer for its
//! host name, which is what a site pays once per computer, not per heartbeat; a benchmark of
//! heartbeats should not spend minutes on it. The records are the ones `activate` writes.

use super::connect::source_address;
use super::error::BenchError;
use super::options::{Direction, Options, STOPPING_AGENTS};
use crate::activation;
use crate::clock::Stopwatch;
use crate::clock::WallMs;
use crate::model::{
    AgentState, BASE_POLICY_NAME, Computer, ComputerId, ComputerKind, MissedLimit, Policy,
    PolicyId, SettingValue, Settings, Status,
};
use crate::pki::{AgentKey, ManagerPki, PkiError};
use crate::policy::{Fingerprint, PolicyTree};
use crate::site::{PKI_DIR, STORE_FILE};
use crate::store::Store;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::{CertifiedKey, SigningKey};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

/// Computers written per transaction: large enough that commits do not dominate, small enough
/// that one transaction's dirty pages stay in the tens of megabytes.
const PER_TRANSACTION: usize = 10_000;

/// The name the in-process manager runs under (its certificate also names 127.0.0.1).
pub const MANAGER_HOSTNAME: &str = "localhost";

/// A simulated agent's identity: which computer it is, its key and certificate, where it dials
/// from.
#[derive(Clone)]
pub struct Identity {
    pub computer: ComputerId,
    pub key: Arc<CertifiedKey>,
    pub source: Ipv4Addr,
}

/// What registration produced, and what it cost.
pub struct Enrolled {
    pub pki: ManagerPki,
    /// The heartbeating agents, then the stopping ones.
    pub agents: Vec<Identity>,
    pub stopping: Vec<Identity>,
    /// Every agent state written, for the floor's certificate registry.
    pub states: Vec<AgentState>,
    pub tree: PolicyTree,
    pub main_policy: PolicyId,
    pub stopping_policy: PolicyId,
    pub keys_seconds: f64,
    pub store_seconds: f64,
}

/// Manager-initiated runs: the port every agent listens on (each at its own address), and the
/// manager's agent address, which is part of the configuration the agents already run.
#[derive(Clone, Copy, Debug)]
pub struct Dialing {
    pub listen_port: u16,
    pub manager: SocketAddr,
}

pub fn enroll(
    dir: &Path,
    options: &Options,
    dialing: Option<Dialing>,
) -> Result<Enrolled, BenchError> {
    let (pki, _) = ManagerPki::load_or_create(
        &dir.join(PKI_DIR),
        MANAGER_HOSTNAME,
        crate::clock::real_wall().to_system_time(),
    )?;
    let total = options.agents + STOPPING_AGENTS;
    let started = Stopwatch::now();
    let issued = issue_all(&pki, total)?;
    let keys_seconds = started.elapsed().as_secs_f64();

    let started = Stopwatch::now();
    let store = Store::open(&dir.join(STORE_FILE))?;
    let (tree, main_policy, stopping_policy) = write_policies(&store, options)?;
    // A listening agent that does not run its expected configuration is pushed one by a dial
    // at once, all of them as the manager starts: they run it already, as in a steady state.
    let applied = |policy| dialing.map(|d| fingerprint(&tree, d.manager, policy).0);
    let (main_applied, stopping_applied) = (applied(main_policy), applied(stopping_policy));
    let now = crate::clock::real_wall();
    let mut agents = Vec::with_capacity(issued.len());
    let mut states = Vec::with_capacity(issued.len());
    for (chunk_start, chunk) in (0..)
        .step_by(PER_TRANSACTION)
        .zip(issued.chunks(PER_TRANSACTION))
    {
        let mut txn = store.write()?;
        for (offset, issued) in chunk.iter().enumerate() {
            let index = chunk_start + offset as u64;
            let (policy, applied_fingerprint) = if index < options.agents {
                (main_policy, main_applied)
            } else {
                (stopping_policy, stopping_applied)
            };
            let source = source_address(index);
            let id = txn.next_computer_id()?;
            let (computer, state) = records(
                &tree,
                id,
                &hostname(index, options.agents),
                policy,
                issued.serial,
                now,
            )?;
            // A steady state, not a first activation: the agent has reported where it listens
            // and runs its configuration already.
            let state = AgentState {
                address: dialing.map(|d| SocketAddr::from((source, d.listen_port)).to_string()),
                listen_port: dialing.map(|d| d.listen_port),
                applied_fingerprint,
                ..state
            };
            txn.put_computer(&computer)?;
            txn.put_agent_state(&state)?;
            states.push(state);
            agents.push(Identity {
                computer: id,
                key: Arc::new(CertifiedKey::new(
                    vec![issued.cert.clone()],
                    issued.signing.clone(),
                )),
                source,
            });
        }
        txn.commit()?;
    }
    store.close()?;
    let store_seconds = started.elapsed().as_secs_f64();
    let stopping = agents.split_off(options.agents as usize);
    Ok(Enrolled {
        pki,
        agents,
        stopping,
        states,
        tree,
        main_policy,
        stopping_policy,
        keys_seconds,
        store_seconds,
    })
}

/// Simulated agent `index`'s host name; the first `main` heartbeat, the rest stop.
pub fn hostname(index: u64, main: u64) -> String {
    if index < main {
        format!("bench-{index}")
    } else {
        format!("bench-stopping-{}", index - main)
    }
}

/// The computer and agent state an activation of `hostname` in `policy` writes, built by the
/// activation module's own functions (a test compares them with a real grant).
fn records(
    tree: &PolicyTree,
    id: ComputerId,
    hostname: &str,
    policy: PolicyId,
    serial: [u8; 16],
    now: WallMs,
) -> Result<(Computer, AgentState), BenchError> {
    let computer =
        activation::enrolled_computer(tree, id, hostname, policy, now).map_err(|source| {
            BenchError::Enrol {
                hostname: hostname.to_string(),
                source,
            }
        })?;
    let version = (env!("CARGO_PKG_VERSION"), crate::proto::PROTOCOL_VERSION);
    let state = activation::agent_state(id, serial, now, version, None);
    Ok((computer, state))
}

/// The Base Policy with the run's interval, and a sub-policy for the stopping agents: a short
/// interval and an alert at the first miss, so the alert comes within the run.
fn write_policies(
    store: &Store,
    options: &Options,
) -> Result<(PolicyTree, PolicyId, PolicyId), BenchError> {
    let mut txn = store.write()?;
    let mut base = Policy {
        id: txn.next_policy_id()?,
        name: BASE_POLICY_NAME.into(),
        parent: None,
        settings: Settings::default(),
        rules: Vec::new(),
    };
    base.settings.set(SettingValue::Interval(options.interval));
    // Agent-initiated: the simulated agents dial and never listen. Manager-initiated: they
    // listen and the manager dials them at the interval.
    base.settings
        .set(SettingValue::Direction(match options.direction {
            Direction::AgentInitiated => crate::model::Direction::AgentInitiated,
            Direction::ManagerInitiated => crate::model::Direction::ManagerInitiated,
        }));
    let mut stopping = Policy {
        id: txn.next_policy_id()?,
        name: "Bench: stopping agents".into(),
        parent: Some(base.id),
        settings: Settings::default(),
        rules: Vec::new(),
    };
    stopping
        .settings
        .set(SettingValue::Interval(options.stopping_interval()));
    stopping
        .settings
        .set(SettingValue::MissedBeforeAlert(MissedLimit::Count(0)));
    txn.put_policy(&base)?;
    txn.put_policy(&stopping)?;
    txn.commit()?;
    let ids = (base.id, stopping.id);
    Ok((PolicyTree::new([base, stopping]), ids.0, ids.1))
}

/// The fingerprint of what the manager sends a computer of `policy`, as it computes it.
pub fn fingerprint(tree: &PolicyTree, manager: SocketAddr, policy: PolicyId) -> Fingerprint {
    let endpoint = crate::manager::dial_address(MANAGER_HOSTNAME, manager);
    let computer = Computer {
        id: ComputerId(0),
        hostname: hostname(0, 1),
        kind: ComputerKind::Server,
        policy,
        settings: Settings::default(),
        status: Status::Online,
        created: WallMs(0),
        vm_power_state: crate::model::PowerState::Running,
        address: None,
    };
    crate::policy::expected_config(tree, &computer, &[endpoint]).fingerprint()
}

/// One agent's signing key and certificate (with its serial, for the agent state).
struct Issued {
    signing: Arc<dyn SigningKey>,
    serial: [u8; 16],
    cert: CertificateDer<'static>,
}

/// Keys and certificates for `total` agents, on every core: this is the slow part of
/// registration (a key generation, an on-curve check and a signature each).
fn issue_all(pki: &ManagerPki, total: u64) -> Result<Vec<Issued>, BenchError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let per_thread = total.div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let range = (t * per_thread)..((t + 1) * per_thread).min(total);
                scope.spawn(move || {
                    range
                        .map(|i| issue_one(pki, i + 1))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(total as usize);
        for worker in workers {
            let part = worker.join().map_err(|_| {
                BenchError::Thread(std::io::Error::other("a certificate thread panicked"))
            })??;
            all.extend(part);
        }
        Ok(all)
    })
}

/// One agent's key, and its certificate as the manager's CA issues it at activation.
/// `computer` only names the certificate; ids are given out in the same order.
fn issue_one(pki: &ManagerPki, computer: u64) -> Result<Issued, BenchError> {
    let key = AgentKey::generate()?;
    let cert = pki.issue_agent_cert(
        computer,
        &key.public_key_der(),
        crate::clock::real_wall().to_system_time(),
    )?;
    Ok(Issued {
        signing: signing_key(&key)?,
        serial: cert.serial,
        cert: cert.der,
    })
}

/// The key as rustls signs with it in the handshake.
pub fn signing_key(key: &AgentKey) -> Result<Arc<dyn SigningKey>, PkiError> {
    let der = PrivateKeyDer::from_pem_slice(key.to_pem().as_bytes()).map_err(|_| {
        PkiError::BadAgentKey {
            problem: "cannot be read back from its PEM",
        }
    })?;
    rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|source| PkiError::Tls {
            what: "a simulated agent's signing key",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ActivationRequest, PROTOCOL_VERSION};
    use crate::store::Reads;

    /// The bench writes its agents' records itself (a commit per agent would take minutes);
    /// they must be the records a real activation writes, or the bench measures another site.
    #[test]
    fn an_enrolled_computer_is_what_a_real_activation_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join(STORE_FILE)).unwrap();
        let (_pki_dir, pki) = crate::pki::testing::manager();
        let now = WallMs(1_700_000_000_000);
        let base = Policy {
            id: PolicyId(1),
            name: BASE_POLICY_NAME.into(),
            parent: None,
            settings: Settings::default(),
            rules: Vec::new(),
        };
        let (secret, token) = activation::new_token(base.id, Some(1), None, now).unwrap();
        let mut txn = store.write().unwrap();
        txn.put_policy(&base).unwrap();
        txn.put_token(&token).unwrap();
        let key = AgentKey::generate().unwrap();
        let request = ActivationRequest {
            protocol: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            token: secret,
            hostname: hostname(0, 1),
            public_key: key.public_key_der(),
        };
        let granted = activation::grant(&mut txn, &pki, &[], &request, "192.0.2.7", now).unwrap();
        let real = txn.agent_state(granted.computer.id).unwrap().unwrap();
        txn.commit().unwrap();

        let tree = PolicyTree::new([base]);
        let (computer, state) = records(
            &tree,
            granted.computer.id,
            &hostname(0, 1),
            PolicyId(1),
            real.cert_serial,
            now,
        )
        .unwrap();
        assert_eq!(computer, granted.computer);
        // The address is where the real agent came from; the bench sets its own.
        assert_eq!(
            state,
            AgentState {
                address: None,
                ..real
            }
        );
    }
}
