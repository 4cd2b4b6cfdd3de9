//! Agents installed from the manager (the reference's deployment scripts): the install script
//! (`GET /agent/install.sh?token=...`) and the manager's own binary
//! (`GET /agent/download/picket-VERSION-ARCH?token=...`). No API key: a live activation token
//! authorises both (it is not used up; the activation the script runs uses it), so a stranger
//! can fetch neither. The one line that runs the script pins the manager's key; the script
//! pins its CA and checks the binary's SHA-256.

use super::{ApiError, ApiRequest, ApiResponse, ApiState, Handled};
use crate::activation;
use crate::release;
use crate::store::Reads;
use hyper::StatusCode;
use std::borrow::Cow;

const TEMPLATE: &str = include_str!("../../assets/agent/install.sh");

/// The unit the script installs: the packages' own (`assets/systemd/`), so an agent installed
/// from the manager runs as one installed from a package (`Type=notify`, the watchdog, the
/// hardening); the script puts `PICKET_AGENT_ARGS` in `/etc/default/picket-agent`, where the
/// unit reads it.
const UNIT: &str = include_str!("../../assets/systemd/picket-agent.service");

/// `picket-VERSION-ARCH`: the name of the binary this manager serves.
pub fn binary_name() -> String {
    format!("picket-{}-{}", release::version(), release::arch())
}

/// The running binary's bytes and SHA-256 (hex), read once.
fn binary() -> Result<(&'static [u8], String), ApiError> {
    let own = release::own_binary().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the manager cannot read its own binary",
        )
    })?;
    Ok((&own.bytes, crate::secret::hex(&own.sha256)))
}

/// The token in `X-Picket-Token` or `?token=`, if it is live: known, not expired, not used up.
fn live_token(state: &ApiState, req: &ApiRequest) -> Result<String, ApiError> {
    let refused = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "the activation token is unknown, expired or used up: make one with picket token \
             create",
        )
    };
    let from_query = || {
        req.query
            .iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("token="))
            .map(super::router::percent_decode)
    };
    let secret = req
        .token
        .clone()
        .or_else(from_query)
        .filter(|t| !t.is_empty() && t.len() <= 128)
        .ok_or_else(refused)?;
    let txn = state.store.read()?;
    let token = txn
        .token(&activation::hash_secret(&secret))?
        .ok_or_else(refused)?;
    if activation::is_expired(&token, state.clock.wall()) || token.uses_left == Some(0) {
        return Err(refused());
    }
    Ok(secret)
}

/// Whether the request carries a live activation token (see [`live_token`]).
pub fn holds_live_token(state: &ApiState, req: &ApiRequest) -> bool {
    live_token(state, req).is_ok()
}

/// Single quotes for a shell: the token and addresses go into the script as literals.
fn quoted_ok(value: &str) -> bool {
    !value.contains('\'') && !value.contains('\n')
}

pub fn script(state: &ApiState, req: &ApiRequest) -> Handled {
    let token = live_token(state, req)?;
    let (_, sha) = binary()?;
    let values = [
        ("@MANAGER@", state.manager_name.as_str()),
        ("@MANAGER_URL@", state.console_url.as_str()),
        ("@KEY_PIN@", state.key_pin.as_str()),
        ("@CA_SHA256@", state.ca_sha256.as_str()),
        ("@AGENT_ENDPOINT@", state.agent_endpoint.as_str()),
        ("@TOKEN@", token.as_str()),
        ("@BINARY_SHA256@", sha.as_str()),
        ("@ARCH@", release::arch()),
        ("@VERSION@", release::version()),
        ("@UNIT@", UNIT),
    ];
    let mut text = TEMPLATE.replace("@BINARY@", &binary_name());
    for (name, value) in values {
        if name != "@UNIT@" && !quoted_ok(value) {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{name} cannot be written into a script"),
            ));
        }
        text = text.replace(name, value);
    }
    Ok(ApiResponse {
        raw: Some((
            "text/x-shellscript; charset=utf-8",
            Cow::Owned(text.into_bytes()),
        )),
        ..ApiResponse::ok(serde_json::Value::Null)
    })
}

pub fn download(state: &ApiState, name: &str, req: &ApiRequest) -> Handled {
    if name != binary_name() {
        return Err(ApiError::not_found(format!(
            "agent binary {name} (this manager carries {})",
            binary_name()
        )));
    }
    live_token(state, req)?;
    let (bytes, _) = binary()?;
    Ok(ApiResponse {
        raw: Some(("application/octet-stream", Cow::Borrowed(bytes))),
        ..ApiResponse::ok(serde_json::Value::Null)
    })
}

/// The one line to run on a computer, as root: fetch the script over a connection pinned to
/// the manager's key, and run it.
pub fn install_command(state: &ApiState, token: &str) -> String {
    format!(
        "curl -fsS -k --pinnedpubkey '{}' '{}/agent/install.sh?token={token}' | sh",
        state.key_pin, state.console_url
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::WallMs;
    use crate::model::PolicyId;
    use hyper::Method;

    fn request(path: &str, token: Option<&str>) -> ApiRequest {
        ApiRequest {
            method: Method::GET,
            path: path.into(),
            query: None,
            authorization: None,
            cookies: Vec::new(),
            origin: None,
            host: None,
            peer: None,
            background: false,
            token: token.map(str::to_string),
            body: Vec::new(),
        }
    }

    #[test]
    fn a_live_token_admits_an_installer_as_somebody_and_nothing_else_does() {
        let dir = tempfile::tempdir().unwrap();
        let state = super::super::lockout::tests::state(dir.path());
        let now = state.clock.wall();
        let (live, token) = activation::new_token(PolicyId(1), Some(1), None, now).unwrap();
        let (used, mut spent) = activation::new_token(PolicyId(1), Some(1), None, now).unwrap();
        spent.uses_left = Some(0);
        let minute = Some(std::time::Duration::from_secs(60));
        let (old, expired) = activation::new_token(PolicyId(1), None, minute, WallMs(0)).unwrap();
        let mut txn = state.store.write().unwrap();
        for t in [&token, &spent, &expired] {
            txn.put_token(t).unwrap();
        }
        txn.commit().unwrap();
        let admitted = |path: &str, token: Option<&str>| {
            super::super::router::admit(&state, &request(path, token))
                .unwrap()
                .authenticated
        };
        let download = format!("/agent/download/{}", binary_name());
        assert!(admitted(&download, Some(&live)));
        assert!(admitted("/agent/install.sh", Some(&live)));
        for stranger in [None, Some("00ff"), Some(used.as_str()), Some(old.as_str())] {
            assert!(!admitted(&download, stranger), "{stranger:?}");
        }
        // A token anywhere else is nobody.
        assert!(!admitted("/login", Some(&live)));
    }
}
