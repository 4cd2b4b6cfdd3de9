//! Test helper: a real mail server, Debian's aiosmtpd in a Python child process, that keeps
//! what it receives for the test to read.

use super::testing::ServerCert;
use serde_json::Value;
use smol::io::{AsyncBufReadExt, BufReader};
use smol::process::{Child, Command, Stdio};
use std::path::PathBuf;

/// Debian's Python, which has python3-aiosmtpd (another `python3` on the PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// Listens on 127.0.0.1 (a free port) as `sys.argv[2]` says: `plain`, `starttls` (required
/// before anything else) or `tls` (implicit). Takes the login picket / pw-123 (over TLS only),
/// refuses recipients starting `refuse@`, appends each message as a JSON line to
/// `sys.argv[1]`, prints its port, and runs until its stdin closes.
const SERVER: &str = r#"
import asyncio, json, ssl, sys, warnings
from aiosmtpd.smtp import SMTP, AuthResult

# aiosmtpd 1.4 warns about its own use of a deprecated attribute on every login.
warnings.simplefilter("ignore", DeprecationWarning)

out, mode, cert, key = sys.argv[1:5]

def login(server, session, envelope, mechanism, auth_data):
    ok = (auth_data.login, auth_data.password) == (b"picket", b"pw-123")
    return AuthResult(success=ok, auth_data=auth_data)

class Keep:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("refuse@"):
            return "550 5.1.1 <%s>: no such user here" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        record = {
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "tls": session.ssl is not None
                   or server.transport.get_extra_info("ssl_object") is not None,
            "login": session.auth_data.login.decode() if session.authenticated else None,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        with open(out, "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 2.0.0 Ok: queued as 1234"

async def main():
    context = None
    if mode != "plain":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    starttls = context if mode == "starttls" else None
    factory = lambda: SMTP(Keep(), hostname="localhost", tls_context=starttls,
                           require_starttls=starttls is not None, authenticator=login)
    server = await asyncio.get_running_loop().create_server(
        factory, "127.0.0.1", 0, ssl=context if mode == "tls" else None)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"#;

pub(super) struct Smtpd {
    pub port: u16,
    received: PathBuf,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Smtpd {
    /// Starts a server in `mode` presenting `cert`; `None`, said on stderr, where aiosmtpd is
    /// not installed (CI installs it: .ci/run).
    pub async fn start(mode: &str, cert: &ServerCert) -> Option<Smtpd> {
        let found = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !found {
            eprintln!(
                "SKIPPED: this email test needs a real SMTP server, and {PYTHON} cannot import \
                 aiosmtpd (apt-get install python3-aiosmtpd)"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let script = file("smtpd.py", SERVER);
        let (cert, key) = (
            file("cert.pem", &cert.cert_pem),
            file("key.pem", &cert.key_pem),
        );
        let received = dir.path().join("received.jsonl");
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .args([&received, &PathBuf::from(mode), &cert, &key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the SMTP server did not start (said {line:?})"));
        Some(Smtpd {
            port,
            received,
            _child: child,
            _dir: dir,
        })
    }

    /// Every message received so far, in order.
    pub fn received(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.received).unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }
}
