//! The packets the agent's firewall logs, and the agent-port rule's refusals, as events: a
//! `NETLINK_NETFILTER` socket bound to the ruleset's NFLOG group (`firewall::nft::LOG_GROUP`) in
//! the agent's own network namespace, read as the firewall's rules log; each packet passes the
//! per-rule limit (`firewall::log_limit`) and becomes a spooled `firewall-packet-logged` event,
//! and a window's count of the rest a `firewall-log-suppressed` one. The bytes are parsed by
//! `firewall::nflog`; this module only opens, reads and spools.
//!
//! The socket is nonblocking and read through `smol::Async` on the agent's one thread, beside
//! the heartbeat loop and the listener, rather than by a thread of its own feeding a channel:
//! a read never blocks (the reactor says when a datagram waits), parsing a datagram is
//! microseconds, and the limit keeps spool writes to sixty a minute for all rules together (each
//! window's counts go in one transaction), so nothing here holds the thread for long; a thread
//! would add a channel, a second owner of the limiter and a shutdown to arrange. While the spool
//! holds [`MAX_PENDING`] events (the manager unreachable for long), packets are only counted. A flood is read in batches that yield between them, and what the kernel
//! could not queue meanwhile is counted (`ENOBUFS`), not waited for.
//!
//! Opened once the firewall is on and closed when it is off (a host without it keeps the group
//! free for others), retried at each firewall check while it cannot be opened or after a read
//! failed; why is logged once and said in the `firewall` component's reason. Only the kernel's
//! messages are read (a sender's netlink port other than 0 is another process). The agent runs
//! on without it.

use super::runtime::{Runtime, Wake};
use crate::clock::Instant;
use crate::firewall::log_limit::{self, Limiter, Suppressed, Verdict};
use crate::firewall::nflog::{self, Logged, Message};
use crate::firewall::nft::{LOG_GROUP, implicit_name};
use crate::model::{MacAddr, RuleId, TrafficDirection};
use rustix::io::Errno;
use rustix::net::netlink::{NETFILTER, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use smol::Async;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// The biggest datagram read at once: the kernel batches messages up to a page or two.
const RECV_BUFFER: usize = 64 * 1024;
/// The socket's queue in the kernel: a burst of about 4000 packets of 128 bytes waits there
/// while the agent is busy (the kernel may cap it lower: `net.core.rmem_max`).
const SOCKET_QUEUE: usize = 1024 * 1024;
/// Datagrams read in one turn before the other tasks of the thread get theirs.
const BATCH: usize = 64;
/// How long the kernel may take to answer the bind request.
const BIND_ANSWER: Duration = Duration::from_secs(1);
/// The sequence number of the bind request, to recognise its answer.
const BIND_SEQ: u32 = 1;
/// The limiter's key for the agent-port rule's refusals.
const REFUSAL_KEY: &str = "agent-port-refused";
/// Events waiting in the spool beyond which packets and refusals are counted, not spooled: the
/// manager has been unreachable for long, and the disk matters more than the tenth thousand.
pub const MAX_PENDING: u64 = 10_000;

/// Why the socket could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum PacketLogError {
    /// A system call failed: which, and how.
    Socket { step: &'static str, source: Errno },
    /// The kernel refused to bind the group.
    Refused { errno: i32 },
    /// The kernel did not answer the bind request in time.
    NoAnswer,
}

impl fmt::Display for PacketLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketLogError::Socket { step, source } => {
                write!(f, "cannot {step} the NFLOG socket: {source}")?;
                if matches!(*source, Errno::PERM | Errno::ACCESS) {
                    write!(f, " (the agent needs root or CAP_NET_ADMIN)")?;
                }
                Ok(())
            }
            PacketLogError::Refused { errno } => {
                let text = std::io::Error::from_raw_os_error(*errno);
                write!(
                    f,
                    "the kernel refused to bind NFLOG group {LOG_GROUP}: {text}"
                )?;
                // Another socket (ulogd, another agent) holding the group is EPERM (EBUSY on
                // older kernels); EPERM is also nfnetlink's answer without CAP_NET_ADMIN.
                match errno {
                    1 => write!(
                        f,
                        " (another program holds the group, or the agent lacks CAP_NET_ADMIN)"
                    ),
                    16 => write!(f, " (another program holds the group)"),
                    _ => Ok(()),
                }
            }
            PacketLogError::NoAnswer => write!(
                f,
                "the kernel did not answer the NFLOG bind request within {} s",
                BIND_ANSWER.as_secs()
            ),
        }
    }
}

impl std::error::Error for PacketLogError {}

/// What the runtime keeps of the packet log: the limit shared with the listener's refusals,
/// why the socket is not open, and counters for the heartbeat.
pub(super) struct PacketLog {
    limiter: RefCell<Limiter>,
    problem: RefCell<Option<String>>,
    /// Wakes the reader: the firewall was applied (open the socket) or a count waits.
    pub wake: Wake,
    /// Packets read from the group.
    pub packets: Cell<u64>,
    /// Times the kernel said it dropped messages the agent did not read in time.
    pub lost: Cell<u64>,
    /// Events not spooled because the spool held [`MAX_PENDING`] already.
    pub dropped: Cell<u64>,
}

impl PacketLog {
    pub fn new() -> Self {
        PacketLog {
            limiter: RefCell::new(Limiter::new(log_limit::PER_WINDOW, window())),
            problem: RefCell::new(None),
            wake: Wake::new(),
            packets: Cell::new(0),
            lost: Cell::new(0),
            dropped: Cell::new(0),
        }
    }

    /// Why logged packets are not reported, while they are not.
    pub fn problem(&self) -> Option<String> {
        self.problem.borrow().clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        if problem.is_some() && *self.problem.borrow() != problem {
            log::warn!(
                "logged packets will not be reported: {}; the firewall still enforces",
                problem.as_deref().unwrap_or_default()
            );
        }
        *self.problem.borrow_mut() = problem;
    }
}

/// The limiter's window: a minute, or in debug builds (the tests') what
/// `PICKET_TEST_LOG_WINDOW_MS` says, so that an end-to-end test sees a window end in seconds.
fn window() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("PICKET_TEST_LOG_WINDOW_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return Duration::from_millis(ms);
    }
    log_limit::WINDOW
}

/// Runs for as long as the agent does.
pub(super) async fn run(rt: &Runtime<'_>) {
    let log = &rt.packet_log;
    let mut socket: Option<Async<OwnedFd>> = None;
    let mut buf = vec![0u8; RECV_BUFFER];
    // A read failed: not opened again before the next wake-up (a firewall check), so that a
    // socket that keeps failing is not reopened in a loop.
    let mut failed = false;
    loop {
        if socket.is_some() && !rt.firewall.is_on() {
            log::info!("the firewall is off: NFLOG group {LOG_GROUP} released");
            socket = None;
        }
        if socket.is_none() && !failed && rt.firewall.is_on() {
            match open() {
                Ok(opened) => {
                    log::info!("reading the packets the firewall logs (NFLOG group {LOG_GROUP})");
                    log.set_problem(None);
                    socket = Some(opened);
                }
                Err(e) => log.set_problem(Some(e.to_string())),
            }
        }
        let timeout = log.limiter.borrow().poll_timeout();
        let readable = async {
            match &socket {
                Some(s) => Some(s.readable().await),
                None => std::future::pending().await,
            }
        };
        let timer = async {
            rt.clock.sleep_until(timeout).await;
            None
        };
        let woken = async {
            log.wake.wait().await;
            failed = false;
            None
        };
        let step = smol::future::or(readable, smol::future::or(timer, woken)).await;
        if let (Some(result), Some(s)) = (step, &socket) {
            let read = result.and_then(|()| drain(rt, s, &mut buf));
            if let Err(e) = read {
                log.set_problem(Some(format!("reading the NFLOG socket failed: {e}")));
                socket = None;
                failed = true;
            }
            smol::future::yield_now().await;
        }
        log.limiter.borrow_mut().handle_timeout(rt.clock.now());
        report_suppressed(rt);
    }
}

fn open() -> Result<Async<OwnedFd>, PacketLogError> {
    let fail = |step| move |source| PacketLogError::Socket { step, source };
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(NETFILTER),
    )
    .map_err(fail("open"))?;
    rustix::net::bind(&fd, &SocketAddrNetlink::new(0, 0)).map_err(fail("bind"))?;
    // Best effort: the kernel's cap applies, and a smaller queue only loses more of a flood.
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, SOCKET_QUEUE);
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(BIND_ANSWER),
    )
    .map_err(fail("configure"))?;
    let request = nflog::bind_request(LOG_GROUP, BIND_SEQ);
    rustix::net::send(&fd, &request, SendFlags::empty()).map_err(fail("configure"))?;
    let mut buf = vec![0u8; RECV_BUFFER];
    // The answer comes first, or after a few packets logged since the bind: those are let go.
    for _ in 0..8 {
        let (n, from) = match recv_from(&fd, &mut buf[..], RecvFlags::empty()) {
            Ok(read) => read,
            Err(Errno::AGAIN) => return Err(PacketLogError::NoAnswer),
            Err(source) => {
                return Err(PacketLogError::Socket {
                    step: "read",
                    source,
                });
            }
        };
        if !from_kernel(from) {
            continue;
        }
        for message in nflog::messages(buf.get(..n).unwrap_or_default()) {
            if let Ok(Message::Ack {
                seq: BIND_SEQ,
                errno,
            }) = message
            {
                if errno != 0 {
                    return Err(PacketLogError::Refused { errno });
                }
                return Async::new(fd).map_err(|e| PacketLogError::Socket {
                    step: "watch",
                    source: Errno::from_io_error(&e).unwrap_or(Errno::IO),
                });
            }
        }
    }
    Err(PacketLogError::NoAnswer)
}

/// Reads what waits, a batch at most: the reactor says again if more does.
fn drain(rt: &Runtime<'_>, socket: &Async<OwnedFd>, buf: &mut [u8]) -> std::io::Result<()> {
    for _ in 0..BATCH {
        match recv_from(socket.get_ref(), &mut *buf, RecvFlags::DONTWAIT) {
            Ok((n, from)) if from_kernel(from) => datagram(rt, buf.get(..n).unwrap_or_default()),
            // Another process (root: the kernel takes unicast to this family from no one else)
            // writing to the agent's socket: not a packet the firewall logged.
            Ok(_) => log::debug!("the NFLOG socket: a message not from the kernel, dropped"),
            Err(Errno::AGAIN) => return Ok(()),
            Err(Errno::INTR) => {}
            // The kernel dropped messages while the queue was full: counted, read on.
            Err(Errno::NOBUFS) => {
                let lost = &rt.packet_log.lost;
                lost.set(lost.get() + 1);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// One datagram and its sender's netlink port, if it said.
fn recv_from(
    fd: &OwnedFd,
    buf: &mut [u8],
    flags: RecvFlags,
) -> Result<(usize, Option<u32>), Errno> {
    let (_, n, from) = rustix::net::recvfrom(fd, &mut *buf, flags)?;
    let port = from
        .and_then(|a| SocketAddrNetlink::try_from(a).ok())
        .map(|a| a.pid());
    Ok((n.min(buf.len()), port))
}

/// The kernel's messages come from netlink port 0.
fn from_kernel(port: Option<u32>) -> bool {
    port == Some(0)
}

fn datagram(rt: &Runtime<'_>, bytes: &[u8]) {
    for message in nflog::messages(bytes) {
        match message {
            Ok(Message::Packet(logged)) => packet(rt, &logged),
            Ok(Message::Ack { errno, .. }) if errno != 0 => {
                log::warn!(
                    "the NFLOG socket: {}",
                    std::io::Error::from_raw_os_error(errno)
                );
            }
            Ok(_) => {}
            // Another program's rule on the group, or bytes that are not what they should be:
            // never an event, and only in the debug log (a flood of them would flood it).
            Err(e) => log::debug!("the NFLOG socket: {e}"),
        }
    }
}

fn packet(rt: &Runtime<'_>, logged: &Logged) {
    let counted = &rt.packet_log.packets;
    counted.set(counted.get() + 1);
    if admit(rt, rt.clock.now(), &logged.rule) == Verdict::Suppress {
        return;
    }
    let rule = describe(rt, &logged.rule);
    let p = &logged.packet;
    let direction = logged.direction().or(rule.direction.map(|d| d.name()));
    // In this order: a forwarded event's CEF and LEEF carry its first six fields as fields of
    // their own (`notify::format::event::MAX_FIELDS`), the rest only in `msg`.
    let mut fields = vec![
        ("rule".to_string(), logged.rule.clone()),
        ("action".into(), rule.action),
        ("protocol".into(), nflog::protocol_name(p.protocol)),
        ("source".into(), p.source.to_string()),
        ("destination".into(), p.destination.to_string()),
    ];
    if let Some((source, destination)) = p.ports {
        fields.push(("destination_port".into(), destination.to_string()));
        fields.push(("source_port".into(), source.to_string()));
    }
    if let Some((kind, code)) = p.icmp {
        fields.push(("icmp_type".into(), kind.to_string()));
        fields.push(("icmp_code".into(), code.to_string()));
    }
    fields.push(("direction".into(), direction.unwrap_or("unknown").into()));
    fields.push(("name".into(), rule.name));
    spool(rt, crate::model::events::FIREWALL_PACKET_LOGGED.id, fields);
}

/// The limit, with the reader woken when a count starts: its timer must end the window.
fn admit(rt: &Runtime<'_>, now: Instant, key: &str) -> Verdict {
    let log = &rt.packet_log;
    let before = log.limiter.borrow().poll_timeout();
    let verdict = log.limiter.borrow_mut().handle(now, key);
    if log.limiter.borrow().poll_timeout() != before {
        log.wake.notify();
    }
    verdict
}

/// The agent-port rule refused `peer` on `port`: an `agent-port-refused` event, under the same
/// limit as logged packets. Whether it was reported.
pub(super) fn refused(
    rt: &Runtime<'_>,
    peer: SocketAddr,
    port: u16,
    mac: Option<MacAddr>,
    rules: &[String],
) -> bool {
    if admit(rt, rt.clock.now(), REFUSAL_KEY) == Verdict::Suppress {
        return false;
    }
    let mut fields = vec![
        ("source".to_string(), peer.ip().to_string()),
        ("source_port".into(), peer.port().to_string()),
        ("port".into(), port.to_string()),
        ("rules".into(), rules.join(", ")),
    ];
    if let Some(mac) = mac {
        fields.push(("mac".into(), mac.to_string()));
    }
    spool(rt, crate::model::events::AGENT_PORT_REFUSED.id, fields);
    true
}

/// The counts of the windows that ended, in one spool transaction: a scan across many rules ends
/// many windows at once.
fn report_suppressed(rt: &Runtime<'_>) {
    let mut counts = Vec::new();
    loop {
        let next = rt.packet_log.limiter.borrow_mut().poll_suppressed();
        let Some(Suppressed {
            key,
            count,
            start,
            end,
        }) = next
        else {
            break;
        };
        let (event, rule) = match key.as_str() {
            REFUSAL_KEY => (crate::model::events::AGENT_PORT_REFUSED.name, "agent-port"),
            _ => (
                crate::model::events::FIREWALL_PACKET_LOGGED.name,
                key.as_str(),
            ),
        };
        let fields = vec![
            ("event".to_string(), event.to_string()),
            ("rule".into(), rule.to_string()),
            ("suppressed".into(), count.to_string()),
            (
                "window_ms".into(),
                end.saturating_since(start).as_millis().to_string(),
            ),
        ];
        counts.push((
            crate::model::events::FIREWALL_LOG_SUPPRESSED.id,
            rt.clock.wall(),
            fields,
        ));
    }
    spool_all(rt, counts);
}

fn spool(rt: &Runtime<'_>, id: u32, fields: Vec<(String, String)>) {
    spool_all(rt, vec![(id, rt.clock.wall(), fields)]);
}

/// Spools `events` unless the spool is full of undelivered ones already ([`MAX_PENDING`]).
fn spool_all(rt: &Runtime<'_>, events: Vec<super::spool::NewEvent>) {
    if events.is_empty() {
        return;
    }
    if rt.spool.pending().is_ok_and(|n| n >= MAX_PENDING) {
        let dropped = &rt.packet_log.dropped;
        if dropped.get() == 0 {
            log::warn!(
                "the spool holds {MAX_PENDING} undelivered events: logged packets are counted \
                 (firewall-log-dropped), not spooled, until the manager takes them"
            );
        }
        dropped.set(dropped.get() + events.len() as u64);
        return;
    }
    if let Err(e) = rt.spool.append_all(events) {
        log::error!("cannot write logged packets to the spool: {e}");
    }
}

/// What the configuration says of a logged rule.
struct RuleWords {
    name: String,
    action: String,
    direction: Option<TrafficDirection>,
}

fn describe(rt: &Runtime<'_>, rule: &str) -> RuleWords {
    for direction in [TrafficDirection::Incoming, TrafficDirection::Outgoing] {
        if rule == implicit_name(direction) {
            return RuleWords {
                name: "Out of Allowed Policy".into(),
                action: "deny".into(),
                direction: Some(direction),
            };
        }
    }
    let id = rule
        .strip_prefix("rule-")
        .and_then(|n| n.parse().ok())
        .map(RuleId);
    let config = rt.spool.config().ok().flatten().map(|(config, _)| config);
    let found = config
        .iter()
        .flat_map(|c| c.firewall_rules.iter())
        .find(|r| Some(r.id) == id);
    match found {
        Some(r) => RuleWords {
            name: r.name.clone(),
            action: r.action.name().into(),
            direction: Some(r.direction),
        },
        // Logged by a table older than the configuration just stored.
        None => RuleWords {
            name: String::new(),
            action: "unknown".into(),
            direction: None,
        },
    }
}
