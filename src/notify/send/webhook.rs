//! Webhook delivery: one HTTPS POST of the caller's JSON body, with the caller's headers (its
//! signature, timestamp and delivery id) and the channel's own; a 2xx status is delivered.

use super::tls::{client_config_off_thread, handshake};
use super::{Answer, SendError, bounded, connect, host_port, resolve};
use crate::clock::Clock;
use crate::notify::Webhook;
use crate::notify::channel::{HttpsUrl, https_url, shown_url};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use smol_hyper::rt::FuturesIo;
use std::sync::Arc;
use std::time::Duration;

/// The most of an error answer's body read: enough for any explanation a receiver gives, and
/// a receiver cannot make the manager hold more.
const MAX_BODY: usize = 64 * 1024;
/// The most of it quoted in the answer (a line in the delivery log, not a page).
const QUOTED: usize = 200;

const USER_AGENT: &str = concat!("picket/", env!("CARGO_PKG_VERSION"));

/// POSTs `body` to the channel's URL within `limit`. `headers` come first, then the channel's
/// own; neither may be one Picket sets (the channel's were checked when it was made).
pub async fn webhook(
    cfg: &Webhook,
    body: &[u8],
    headers: &[(&str, String)],
    clock: &dyn Clock,
    limit: Duration,
) -> Result<Answer, SendError> {
    let url = https_url(&cfg.url).map_err(|e| SendError::Config {
        field: e.field,
        problem: e.problem,
    })?;
    let extra = headers.iter().map(|(name, value)| (*name, value.as_str()));
    let own = cfg.headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    let request = request(&url, body, extra.chain(own))?;
    let shown = shown_url(&cfg.url);
    bounded(clock, limit, &shown, post(cfg, &url, request, &shown)).await
}

fn request<'a>(
    url: &HttpsUrl,
    body: &[u8],
    extra: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<Request<Full<Bytes>>, SendError> {
    let authority = match url.port {
        443 if url.host.contains(':') => format!("[{}]", url.host),
        443 => url.host.clone(),
        port => host_port(&url.host, port),
    };
    let mut builder = Request::post(url.path.as_str())
        .header(header::HOST, authority)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header(header::USER_AGENT, USER_AGENT)
        // One request per connection: notices are minutes apart.
        .header(header::CONNECTION, "close");
    for (name, value) in extra {
        let bad = |what: &str| SendError::config("headers", format!("'{name}': {what}"));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad("not a header name"))?;
        let value = HeaderValue::from_str(value).map_err(|_| bad("the value cannot be sent"))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| SendError::config("url", format!("no request can be made of it: {e}")))
}

/// `target` is the URL as errors may show it (`shown_url`).
async fn post(
    cfg: &Webhook,
    url: &HttpsUrl,
    request: Request<Full<Bytes>>,
    target: &str,
) -> Result<Answer, SendError> {
    let io_error = |e: hyper::Error| SendError::Io {
        target: target.to_string(),
        source: Box::new(e),
    };
    let addrs = resolve(&url.host, url.port, target).await?;
    let mut config = (*client_config_off_thread(cfg.ca_cert.as_deref()).await?).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = connect(&addrs, target).await?;
    let tls = handshake(Arc::new(config), &url.host, tcp, target).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(FuturesIo::new(tls))
        .await
        .map_err(io_error)?;
    let exchange = async {
        let response = sender.send_request(request).await.map_err(io_error)?;
        answer(response, target).await
    };
    // The connection is driven here rather than spawned, so it ends with this call (a timeout
    // included) and needs no executor of its own.
    let drive = async {
        match connection.await {
            Err(e) => Err(io_error(e)),
            Ok(()) => std::future::pending().await,
        }
    };
    smol::future::or(exchange, drive).await
}

async fn answer(response: Response<Incoming>, target: &str) -> Result<Answer, SendError> {
    let status = response.status();
    let line = format!(
        "HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    let line = line.trim_end().to_string();
    if status.is_success() {
        return Ok(Answer(line));
    }
    let body = read_capped(response.into_body()).await;
    let quoted = quote(&body);
    Err(SendError::Refused {
        target: target.to_string(),
        answer: if quoted.is_empty() {
            line
        } else {
            format!("{line}: {quoted}")
        },
        permanent: is_permanent(status),
    })
}

/// A redirect (not followed: the channel's URL should be changed) and a client error other
/// than a timeout or a throttle will be answered the same way next time.
fn is_permanent(status: StatusCode) -> bool {
    status.is_redirection()
        || (status.is_client_error()
            && status != StatusCode::REQUEST_TIMEOUT
            && status != StatusCode::TOO_MANY_REQUESTS)
}

/// Up to [`MAX_BODY`] bytes of the body; a body that breaks off gives what came before.
async fn read_capped(mut body: Incoming) -> Vec<u8> {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BODY {
        let Some(Ok(frame)) = body.frame().await else {
            break;
        };
        if let Ok(data) = frame.into_data() {
            let room = MAX_BODY - bytes.len();
            bytes.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    bytes
}

/// The start of a body as one line of text.
fn quote(body: &[u8]) -> String {
    let start = &body[..body.len().min(QUOTED)];
    let text: String = String::from_utf8_lossy(start)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::RealClock;
    use crate::notify::send::testing::{PATIENCE, TestCa, run};
    use futures_rustls::TlsAcceptor;
    use smol::io::{AsyncReadExt, AsyncWriteExt};
    use smol::net::TcpListener;

    /// What the receiver was sent: the request line, the headers (names in lower case), the body.
    struct Received {
        request_line: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            let mut found = self.headers.iter().filter(|(n, _)| n == name);
            let value = found.next().map(|(_, v)| v.as_str());
            assert!(found.next().is_none(), "two {name} headers");
            value
        }
    }

    /// A one-request HTTPS receiver with a certificate of `ca`, answering `status` and
    /// `reply`; `None` if the handshake failed.
    async fn receiver(
        listener: TcpListener,
        ca: &TestCa,
        status: &str,
        reply: &str,
    ) -> Option<Received> {
        let config = ca.server_cert().server_config(&[b"http/1.1"]);
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(config).accept(tcp).await.ok()?;
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the request ended inside its head");
            bytes.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
        let mut lines = head.trim_end().split("\r\n");
        let request_line = lines.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_ascii_lowercase(), value.trim().to_string())
            })
            .collect();
        let mut received = Received {
            request_line,
            headers,
            body: Vec::new(),
        };
        let length: usize = received.header("content-length").unwrap().parse().unwrap();
        while bytes.len() < head_end + length {
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the request ended inside its body");
            bytes.extend_from_slice(&chunk[..n]);
        }
        received.body = bytes[head_end..].to_vec();
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        );
        tls.write_all(answer.as_bytes()).await.unwrap();
        let _ = tls.close().await;
        Some(received)
    }

    fn channel(url: String, ca: &TestCa) -> Webhook {
        Webhook {
            url,
            secret: "0123456789abcdef".into(),
            headers: vec![("X-Api-Key".into(), "k-123".into())],
            ca_cert: Some(ca.pem.clone()),
        }
    }

    const BODY: &[u8] = br#"{"alert":"offline","computer":"web-1"}"#;

    /// Posts [`BODY`] with a signature header to a receiver of `server_ca`'s answering `status`.
    fn exchange(
        host: &str,
        trusted: &TestCa,
        server_ca: &TestCa,
        status: &str,
        reply: &str,
    ) -> (Result<Answer, SendError>, Option<Received>, u16) {
        run(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let cfg = channel(format!("https://{host}:{port}/hook?x=1"), trusted);
            let ours = [("X-Picket-Signature", "sha256=abcd".to_string())];
            let (answer, received) = smol::future::zip(
                webhook(&cfg, BODY, &ours, &RealClock::new(), PATIENCE),
                receiver(listener, server_ca, status, reply),
            )
            .await;
            (answer, received, port)
        })
    }

    #[test]
    fn posts_the_body_with_every_header_and_reports_the_status() {
        let ca = TestCa::new();
        let (answer, received, port) = exchange("localhost", &ca, &ca, "200 OK", "thanks");
        assert_eq!(answer.unwrap().0, "HTTP 200 OK");
        let received = received.unwrap();
        assert_eq!(received.request_line, "POST /hook?x=1 HTTP/1.1");
        assert_eq!(received.body, BODY);
        let expected = [
            ("host", format!("localhost:{port}")),
            ("content-type", "application/json".into()),
            ("content-length", BODY.len().to_string()),
            (
                "user-agent",
                format!("picket/{}", env!("CARGO_PKG_VERSION")),
            ),
            ("x-picket-signature", "sha256=abcd".into()),
            ("x-api-key", "k-123".into()),
        ];
        for (name, value) in expected {
            assert_eq!(received.header(name), Some(value.as_str()), "{name}");
        }
    }

    #[test]
    fn an_error_status_is_refused_with_the_start_of_the_body() {
        let ca = TestCa::new();
        let long = format!("boom\n{}", "x".repeat(1000));
        let (answer, _, _) = exchange("127.0.0.1", &ca, &ca, "500 Internal Server Error", &long);
        let err = answer.unwrap_err();
        let SendError::Refused {
            answer, permanent, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(
            answer.starts_with("HTTP 500 Internal Server Error: boom xxx"),
            "{answer}"
        );
        assert!(answer.len() < 250, "{answer}");
        assert!(!permanent);
        // The error names the hook, but not its query (it may be the hook's secret).
        assert!(err.to_string().contains("/hook/\u{2026}"), "{err}");
        assert!(!err.to_string().contains("x=1"), "{err}");

        let (answer, _, _) = exchange("127.0.0.1", &ca, &ca, "404 Not Found", "");
        let err = answer.unwrap_err();
        assert!(err.is_permanent(), "{err:?}");
        assert!(err.to_string().ends_with(": HTTP 404 Not Found"), "{err}");
    }

    #[test]
    fn a_receiver_another_ca_signed_is_a_tls_error() {
        let (ours, theirs) = (TestCa::new(), TestCa::new());
        let (answer, received, _) = exchange("127.0.0.1", &ours, &theirs, "200 OK", "");
        let err = answer.unwrap_err();
        assert!(matches!(err, SendError::Tls { .. }), "{err:?}");
        assert!(err.chain().contains("UnknownIssuer"), "{}", err.chain());
        assert!(received.is_none());
    }

    #[test]
    fn a_header_that_cannot_be_sent_is_a_config_error_naming_it() {
        let ca = TestCa::new();
        let cfg = channel("https://127.0.0.1:9/hook".into(), &ca);
        let bad = [("X-Bad", "a\nb".to_string())];
        let err =
            smol::block_on(webhook(&cfg, BODY, &bad, &RealClock::new(), PATIENCE)).unwrap_err();
        assert!(
            matches!(
                err,
                SendError::Config {
                    field: "headers",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("X-Bad"), "{err}");
    }
}
