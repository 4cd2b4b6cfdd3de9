//! The HTTPS shell: accepts TCP, completes TLS, speaks HTTP/1.1 with hyper, decides from a
//! request's head whether its body may be read at all (see `router::admit`), reads it under a
//! size cap, a deadline and a budget for all bodies in flight, and hands the request to the
//! synchronous router on the blocking pool.
//!
//! A connection counts against the console's budget of unauthenticated connections (handshake
//! and head under a deadline, the oldest evicted when a cap is reached) until one of its
//! requests presents an API key or a live console session.

use super::error::ApiError;
use super::router::{self, handle};
use super::{ApiRequest, ApiResponse, ApiState};
use crate::net::{Budget, Closed, Gate, Ticket};
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
use std::borrow::Cow;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A client must finish its TLS handshake, and then send each request head, within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A request's body must arrive within this time of its head: with the head's 10 s, a request
/// is read whole within 25 s or its connection is closed (a 1 MiB body needs 70 KB/s).
pub const BODY_DEADLINE: Duration = Duration::from_secs(15);

/// Connections the console holds before one of their requests authenticates: 1,024 in all, 64
/// from one source (a browser opens about six), the oldest evicted past that.
pub const PREAUTH_BUDGET: Budget = Budget {
    total: 1024,
    per_source: 64,
};

/// Body bytes held by all requests in flight at once. Past it a request is answered 503 rather
/// than held: with bodies of at most 1 MiB from authenticated callers and 8 KiB from others,
/// this is many requests' worth, and memory stays bounded whatever arrives.
pub const BODIES_IN_FLIGHT: usize = 32 * 1024 * 1024;

/// Serves the API on `listener` until the returned future is dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<ApiState>,
    ex: Spawner,
) {
    let acceptor = TlsAcceptor::from(tls);
    let metrics = state.metrics.clone();
    let gate = Gate::observed(
        "console",
        PREAUTH_BUDGET,
        Box::new(move |why| metrics.unauthenticated_closed("console", why)),
    );
    let bodies = Arc::new(BodyBudget::new(BODIES_IN_FLIGHT));
    let summaries = crate::net::gate::log_summaries(gate.clone(), &*state.clock);
    let serving = crate::net::serve(listener, "console", ex, state.clock.clone(), |tcp, peer| {
        let ticket = Arc::new(gate.admit(peer.ip(), state.clock.now()));
        let (acceptor, state, bodies) = (acceptor.clone(), state.clone(), bodies.clone());
        async move {
            if let Err(e) = connection(acceptor, tcp, peer.ip(), state, ticket, bodies).await {
                log::debug!("console connection from {peer} ended: {e}");
            }
        }
    });
    smol::future::or(serving, summaries).await;
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: IpAddr,
    state: Arc<ApiState>,
    ticket: Arc<Ticket>,
    bodies: Arc<BodyBudget>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let now = || state.clock.now();
    let tls = match ticket
        .guard(&*state.clock, HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let _ = ticket.closed(now(), Closed::HandshakeFailed);
            return Err(e.into());
        }
        Err(why) => return Err(format!("closed before it authenticated: {why:?}").into()),
    };
    let served = {
        let (state, ticket) = (state.clone(), ticket.clone());
        let service = service_fn(move |req| {
            let (state, ticket, bodies) = (state.clone(), ticket.clone(), bodies.clone());
            async move { Ok::<_, Infallible>(respond(state, peer, req, &ticket, &bodies).await) }
        });
        http1::Builder::new()
            .timer(SmolTimer::new())
            .header_read_timeout(HANDSHAKE_TIMEOUT)
            .serve_connection(FuturesIo::new(tls), service)
    };
    match ticket.until_evicted(served).await {
        Ok(result) => Ok(result?),
        Err(why) => Err(format!("closed before it authenticated: {why:?}").into()),
    }
}

async fn respond(
    state: Arc<ApiState>,
    peer: IpAddr,
    req: Request<Incoming>,
    ticket: &Ticket,
    bodies: &BodyBudget,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let mut request = request_head(&parts, peer);
    // Who is calling and where to, from the head alone: a stranger's body is never read past
    // what a login needs, and a request that needs credentials and has none is answered now.
    let admitted = match router::admit(&state, &request) {
        Ok(admitted) => admitted,
        Err(refused) => return closing(to_http(ApiResponse::error(&refused))),
    };
    if admitted.authenticated {
        ticket.authenticated();
    }
    let read = read_body(body, admitted.body_limit, bodies);
    let held = match crate::clock::within(&*state.clock, BODY_DEADLINE, read).await {
        Some(Ok(held)) => held,
        Some(Err(e)) => return closing(to_http(ApiResponse::error(&e))),
        None => {
            if !admitted.authenticated {
                let _ = ticket.closed(state.clock.now(), Closed::TimedOut);
            }
            let e = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ),
            );
            return closing(to_http(ApiResponse::error(&e)));
        }
    };
    let (bytes, taken) = held;
    if !bytes.is_empty() && !is_json(&parts.headers) {
        let e = ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type: a request body must be JSON ('Content-Type: application/json')",
        );
        return to_http(ApiResponse::error(&e));
    }
    request.body = bytes;
    let response = smol::unblock(move || handle(&state, &request)).await;
    // The body was held until the handler was done with it.
    drop(taken);
    to_http(response)
}

/// `Content-Type: application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// A response after which the connection closes: its request's body was not read whole, so
/// the connection cannot carry another request.
fn closing(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The request as the router sees it, without its body (read only once it is admitted).
fn request_head(parts: &hyper::http::request::Parts, peer: IpAddr) -> ApiRequest {
    let text = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    ApiRequest {
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
        token: parts
            .headers
            .get("x-picket-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: Vec::new(),
    }
}

/// The bytes held by the bodies of all requests in flight, against a cap.
pub struct BodyBudget {
    held: AtomicUsize,
    limit: usize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        BodyBudget {
            held: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `n` bytes of the budget, or none if that would pass the cap.
    fn take(&self, n: usize) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
    }
}

/// A body's share of the [`BodyBudget`], given back when dropped.
struct Taken<'a> {
    bytes: usize,
    budget: &'a BodyBudget,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

/// Reads the body up to `limit` bytes, each byte taken from `budget` as it arrives; a larger
/// body is 413 without being kept, a full budget 503. The client sees the answer as long as
/// its body was read to the end, which is done up to 16 times the limit.
async fn read_body<'a>(
    mut body: Incoming,
    limit: usize,
    budget: &'a BodyBudget,
) -> Result<(Vec<u8>, Taken<'a>), ApiError> {
    let mut kept = Vec::new();
    let mut taken = Taken { bytes: 0, budget };
    let mut seen = 0usize;
    let drain_limit = limit.saturating_mul(16);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::bad_field("body", format!("could not read the request body: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > drain_limit {
            break;
        }
        if seen <= limit {
            if !budget.take(data.len()) {
                return Err(ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the manager is reading too many request bodies at once; try again",
                    )
                });
            }
            taken.bytes += data.len();
            kept.extend_from_slice(&data);
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over {limit} bytes"),
        ));
    }
    Ok((kept, taken))
}

fn to_http(response: ApiResponse) -> Response<Full<Bytes>> {
    let (content_type, body) = match (response.raw, response.body) {
        // A static body (a console file, the agent binary) is sent without a copy.
        (Some((content_type, Cow::Borrowed(bytes))), _) => {
            (Some(content_type), Bytes::from_static(bytes))
        }
        (Some((content_type, Cow::Owned(bytes))), _) => (Some(content_type), Bytes::from(bytes)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_json_content_type_is_taken_for_a_body() {
        let with = |value: Option<&str>| {
            let mut headers = hyper::HeaderMap::new();
            if let Some(v) = value {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            }
            is_json(&headers)
        };
        assert!(with(Some("application/json")));
        assert!(with(Some("Application/JSON; charset=utf-8")));
        assert!(!with(Some("text/plain")));
        assert!(!with(Some("application/x-www-form-urlencoded")));
        assert!(!with(Some("application/jsonp")));
        assert!(!with(None));
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(10);
        assert!(budget.take(6));
        assert!(!budget.take(5), "over the cap");
        {
            let _taken = Taken {
                bytes: 6,
                budget: &budget,
            };
        }
        assert!(budget.take(10));
    }
}
