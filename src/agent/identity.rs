//! The agent's identity in its data dir, written once at activation: its key (0600), its
//! certificate, the manager's CA it pinned, and where the manager is. `manager.json` is written
//! last, so a crash mid-activation leaves an agent that simply activates again.

use super::error::AgentError;
use crate::files::write_atomic;
use crate::pki::AgentKey;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use std::path::Path;

const KEY: &str = "agent.key";
const CERT: &str = "agent-cert.der";
const CA: &str = "ca.der";
const MANAGER: &str = "manager.json";

pub struct Identity {
    /// `host:port` of the manager's agent port.
    pub manager: String,
    pub computer: u64,
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    pub key: AgentKey,
}

impl Identity {
    /// The stored identity, or `None` if this agent never finished activating.
    pub fn load(dir: &Path) -> Result<Option<Identity>, AgentError> {
        let manager_path = dir.join(MANAGER);
        let text = match std::fs::read_to_string(&manager_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AgentError::File {
                    path: manager_path,
                    source,
                });
            }
        };
        let bad = |problem: &str| AgentError::BadFile {
            path: manager_path.clone(),
            problem: problem.to_string(),
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(&format!("not JSON: {e}")))?;
        let manager = value["manager"]
            .as_str()
            .ok_or_else(|| bad("no \"manager\""))?
            .to_string();
        let computer = value["computer"]
            .as_u64()
            .ok_or_else(|| bad("no \"computer\""))?;
        let key_path = dir.join(KEY);
        let key_pem = read(&key_path)?;
        let key = AgentKey::from_pem(&String::from_utf8_lossy(&key_pem))?;
        Ok(Some(Identity {
            manager,
            computer,
            ca: CertificateDer::from(read(&dir.join(CA))?),
            cert: CertificateDer::from(read(&dir.join(CERT))?),
            key,
        }))
    }

    pub fn save(&self, dir: &Path) -> Result<(), AgentError> {
        write(dir, KEY, self.key.to_pem().as_bytes(), 0o600)?;
        write(dir, CERT, &self.cert, 0o600)?;
        write(dir, CA, &self.ca, 0o600)?;
        let manager = json!({"manager": self.manager, "computer": self.computer});
        write(dir, MANAGER, format!("{manager}\n").as_bytes(), 0o600)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(path).map_err(|source| AgentError::File {
        path: path.to_path_buf(),
        source,
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), AgentError> {
    let path = dir.join(name);
    write_atomic(&path, bytes, mode).map_err(|source| AgentError::File { path, source })
}
