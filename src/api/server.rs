//! The HTTPS shell: accepts TCP, completes TLS, speaks HTTP/1.1 with hyper, reads bodies with a
//! size cap, and hands each request to the synchronous router on the blocking pool.

use super::MAX_BODY_BYTES;
use super::error::ApiError;
use super::router::{ApiRequest, ApiResponse, ApiState, handle};
use crate::tasks::Spawner;
use futures_rustls::TlsAcceptor;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use smol::net::{TcpListener, TcpStream};
use smol_hyper::rt::{FuturesIo, SmolTimer};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// A client must finish its TLS handshake and send its headers within this time, so idle
/// half-open connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An oversized body is still read (and thrown away) up to this much, so the client sees the
/// 413 instead of a reset connection; beyond it the connection is simply closed.
const DRAIN_LIMIT: usize = 16 * MAX_BODY_BYTES;

/// Serves the API on `listener` until the returned future is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ApiState>,
    ex: Spawner,
) {
    let acceptor = TlsAcceptor::from(tls);
    crate::net::serve(listener, "console", ex, |tcp, peer| {
        let (acceptor, state) = (acceptor.clone(), state.clone());
        async move {
            if let Err(e) = connection(acceptor, tcp, peer.ip(), state).await {
                log::debug!("console connection from {peer} ended: {e}");
            }
        }
    })
    .await
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: IpAddr,
    state: Arc<ApiState>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tls = crate::net::within(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .ok_or("TLS handshake timed out")??;
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(state, peer, req).await) }
    });
    http1::Builder::new()
        .timer(SmolTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(FuturesIo::new(tls), service)
        .await?;
    Ok(())
}

async fn respond(
    state: Arc<ApiState>,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(e) => return to_http(ApiResponse::error(&e)),
    };
    let text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let request = ApiRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        authorization: text(header::AUTHORIZATION),
        cookies: parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect(),
        origin: text(header::ORIGIN),
        host: text(header::HOST),
        peer: Some(peer),
        background: parts.headers.contains_key("x-picket-background"),
        body,
    };
    let response = smol::unblock(move || handle(&state, &request)).await;
    to_http(response)
}

/// Reads the body up to [`MAX_BODY_BYTES`]; a larger one is 413 without being kept in memory.
async fn read_body(mut body: Incoming) -> Result<Vec<u8>, ApiError> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_field("body", format!("could not read the request body: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT {
            break;
        }
        if seen <= MAX_BODY_BYTES {
            kept.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(kept)
}

fn to_http(response: ApiResponse) -> Response<Full<Bytes>> {
    let (content_type, body) = match (response.raw, response.body) {
        (Some((content_type, bytes)), _) => (Some(content_type), Bytes::from(bytes.into_owned())),
        (None, Some(v)) => (Some("application/json"), Bytes::from(format!("{v:#}\n"))),
        (None, None) => (None, Bytes::new()),
    };
    let mut http = Response::new(Full::new(body));
    *http.status_mut() = response.status;
    let headers = http.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name.clone(), HeaderValue::from_static(value));
    }
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    if response.status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(allow) = response.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    let dynamic = [
        (header::LOCATION, response.location),
        (header::SET_COOKIE, response.set_cookie),
        (
            header::RETRY_AFTER,
            response.retry_after.map(|s| s.to_string()),
        ),
    ];
    for (name, value) in dynamic {
        if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert(name, value);
        }
    }
    http
}

/// On every answer: the console runs only its own files (no inline script, nothing from
/// elsewhere), cannot be framed by another site, and types are never sniffed.
const SECURITY_HEADERS: &[(header::HeaderName, &str)] = &[
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
];
