//! A small HTTPS client for the manager's REST API: finds the URL, key and CA from the options
//! or the data dir, sends one request per connection, and turns error bodies into `AdminError`.

use super::error::AdminError;
use crate::pki;
use futures_rustls::TlsConnector;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, header};
use rustls::pki_types::ServerName;
use serde_json::Value;
use smol_hyper::rt::FuturesIo;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use crate::cli::ClientOptions;

const DEFAULT_URL: &str = "https://127.0.0.1:4119";
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct ApiClient {
    url: String,
    host: String,
    port: u16,
    key: String,
    tls: Arc<rustls::ClientConfig>,
}

/// A raw answer: status, headers and body bytes, for callers that check responses themselves.
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl ApiClient {
    pub fn new(options: &ClientOptions) -> Result<Self, AdminError> {
        // `$PICKET_DATA_DIR` stands in for `--data-dir`, as it does for the manager.
        let dir = options.data_dir.clone().or_else(crate::site::env_data_dir);
        let dir = dir.as_deref();
        let url = match (&options.url, dir) {
            (Some(url), _) => url.clone(),
            (None, Some(dir)) => url_from_ports(dir).unwrap_or_else(|| DEFAULT_URL.to_string()),
            (None, None) => DEFAULT_URL.to_string(),
        };
        let (host, port) = parse_url(&url)?;
        let key = match (&options.api_key, std::env::var("PICKET_API_KEY"), dir) {
            (Some(key), _, _) => key.clone(),
            (None, Ok(key), _) if !key.is_empty() => key,
            (None, _, Some(dir)) => read_trimmed(&dir.join(crate::site::ADMIN_KEY_FILE))?,
            (None, _, None) => {
                return Err(AdminError::Config(
                    "no API key: pass --data-dir DIR (or set PICKET_DATA_DIR), --api-key KEY or set \
                     PICKET_API_KEY".into(),
                ));
            }
        };
        let ca = match (&options.ca_cert, dir) {
            (Some(ca), _) => ca.clone(),
            (None, Some(dir)) => dir.join(crate::site::PKI_DIR).join("ca.crt"),
            (None, None) => {
                return Err(AdminError::Config(
                    "cannot trust the manager: pass --data-dir DIR (or set PICKET_DATA_DIR) or \
                     --ca-cert FILE"
                        .into(),
                ));
            }
        };
        let tls = pki::client_config_trusting(&ca).map_err(|e| AdminError::Tls(Box::new(e)))?;
        Ok(ApiClient {
            url,
            host,
            port,
            key,
            tls,
        })
    }

    /// Sends a JSON request and returns the JSON answer; an error status becomes
    /// `AdminError::Refused` with the API's message and field.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminError> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let raw = self.send(method, path, bytes, Some(&self.key))?;
        let parsed: Value = if raw.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&raw.body).map_err(|e| AdminError::Connect {
                url: self.url.clone(),
                source: format!("the manager sent invalid JSON: {e}").into(),
            })?
        };
        if raw.status.is_success() {
            return Ok(parsed);
        }
        let error = &parsed["error"];
        Err(AdminError::Refused {
            status: raw.status.as_u16(),
            message: error["message"]
                .as_str()
                .unwrap_or(raw.status.canonical_reason().unwrap_or("error"))
                .to_string(),
            field: error["field"].as_str().map(str::to_string),
        })
    }

    /// A GET of a text resource (`/metrics`) with the admin key; a refusal as from `call`.
    pub fn get_text(&self, path: &str) -> Result<String, AdminError> {
        let raw = self.send(Method::GET, path, Vec::new(), Some(&self.key))?;
        if !raw.status.is_success() {
            return Err(AdminError::Refused {
                status: raw.status.as_u16(),
                message: String::from_utf8_lossy(&raw.body).into_owned(),
                field: None,
            });
        }
        String::from_utf8(raw.body).map_err(|e| AdminError::Connect {
            url: self.url.clone(),
            source: format!("the manager sent text that is not UTF-8: {e}").into(),
        })
    }

    /// Sends any bytes with any (or no) key: what tests use to check how bad requests are met.
    pub fn send(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        key: Option<&str>,
    ) -> Result<RawResponse, AdminError> {
        self.send_with_headers(method, path, body, key, &[])
    }

    /// [`ApiClient::send`] with extra request headers (a console cookie, an `Origin`).
    pub fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        key: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Result<RawResponse, AdminError> {
        let connect_error =
            |source: Box<dyn std::error::Error + Send + Sync>| AdminError::Connect {
                url: self.url.clone(),
                source,
            };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| connect_error(e.into()))?;
        let exchange = self.exchange(request);
        let timeout = async {
            crate::clock::Clock::sleep(&crate::clock::RealClock::new(), TIMEOUT).await;
            Err("no answer within 30s".into())
        };
        smol::block_on(smol::future::or(exchange, timeout)).map_err(connect_error)
    }

    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<RawResponse, Box<dyn std::error::Error + Send + Sync>> {
        let tcp = smol::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
        let name = ServerName::try_from(self.host.clone())?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(FuturesIo::new(tls)).await?;
        let driver = smol::spawn(connection);
        let response = sender.send_request(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        drop(sender);
        let _ = driver.cancel().await;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

/// `https://HOST:PORT[/]` into host and port. Only HTTPS: the API carries the admin key.
fn parse_url(url: &str) -> Result<(String, u16), AdminError> {
    let bad = |why: &str| AdminError::Usage(format!("--url {url}: {why}"));
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("must start with https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
            host,
            port.parse().map_err(|_| bad("the port is not a number"))?,
        ),
        _ => (authority, 4119),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok((host.to_string(), port))
}

/// The console address from a running manager's `ports.json`; a wildcard address means this
/// machine, so it is reached on loopback.
fn url_from_ports(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(crate::site::PORTS_FILE)).ok()?;
    let ports: Value = serde_json::from_str(&text).ok()?;
    let addr: std::net::SocketAddr = ports["console"].as_str()?.parse().ok()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    Some(format!("https://{host}:{}", addr.port()))
}

fn read_trimmed(path: &Path) -> Result<String, AdminError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| AdminError::File {
            path: path.to_path_buf(),
            source,
        })
}

/// Escapes one path segment (policy names may hold spaces and other characters).
pub fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_https_urls_only() {
        assert_eq!(
            parse_url("https://127.0.0.1:4119").unwrap(),
            ("127.0.0.1".into(), 4119)
        );
        assert_eq!(
            parse_url("https://manager.example/").unwrap(),
            ("manager.example".into(), 4119)
        );
        assert_eq!(parse_url("https://[::1]:9").unwrap(), ("::1".into(), 9));
        assert!(parse_url("http://127.0.0.1:4119").is_err());
        assert!(parse_url("https://host:port").is_err());
    }

    #[test]
    fn encodes_what_a_path_segment_cannot_hold() {
        assert_eq!(percent_encode("Base Policy"), "Base%20Policy");
        assert_eq!(percent_encode("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(
            crate::api::percent_decode(&percent_encode("été 1/2")),
            "été 1/2"
        );
    }
}
