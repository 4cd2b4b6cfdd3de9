//! The HTTPS shell: accepts TCP, completes TLS, speaks HTTP/1.1 with hyper, reads bodies with a
//! size cap, and hands each request to the synchronous router on the blocking pool.

use super::MAX_BODY_BYTES;
use super::error::ApiError;
use super::router::{ApiRequest, ApiResponse, ApiState, handle};
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
use std::sync::Arc;
use std::time::Duration;

/// A client must finish its TLS handshake and send its headers within this time, so idle
/// half-open connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// An oversized body is still read (and thrown away) up to this much, so the client sees the
/// 413 instead of a reset connection; beyond it the connection is simply closed.
const DRAIN_LIMIT: usize = 16 * MAX_BODY_BYTES;

/// Serves the API on `listener` until the returned future is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, state: Arc<ApiState>) {
    let acceptor = TlsAcceptor::from(tls);
    crate::net::serve(listener, "console", |tcp, peer| {
        let (acceptor, state) = (acceptor.clone(), state.clone());
        async move {
            if let Err(e) = connection(acceptor, tcp, state).await {
                log::debug!("console connection from {peer} ended: {e}");
            }
        }
    })
    .await
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    state: Arc<ApiState>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let tls = crate::net::within(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .ok_or("TLS handshake timed out")??;
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(respond(state, req).await) }
    });
    http1::Builder::new()
        .timer(SmolTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(FuturesIo::new(tls), service)
        .await?;
    Ok(())
}

async fn respond(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(e) => return to_http(ApiResponse::error(&e)),
    };
    let request = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        authorization: parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
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
    let body = response
        .body
        .map(|v| Bytes::from(format!("{v:#}\n")))
        .unwrap_or_default();
    let mut http = Response::new(Full::new(body));
    *http.status_mut() = response.status;
    let headers = http.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if response.status != StatusCode::NO_CONTENT {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if response.status == StatusCode::UNAUTHORIZED {
        headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(allow) = response.allow {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(location) = response
        .location
        .and_then(|l| HeaderValue::from_str(&l).ok())
    {
        headers.insert(header::LOCATION, location);
    }
    http
}
