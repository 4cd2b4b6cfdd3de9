//! `/api/v1/notifications/...`: channels (add, list, show, remove, send a test) and the routes
//! that narrow what each receives. A channel's password and webhook secret are written, never
//! read back: views say only whether one is set.

use super::error::ApiError;
use super::input::{
    object, optional_reference, optional_string, refuse_leftovers, required_string,
};
use super::{ApiResponse, ApiState, Handled};
use crate::alerts::{AlertKind, Severity};
use crate::model::{format_duration, parse_duration};
use crate::notify::channel::{self, DEFAULT_GIVE_UP_AFTER, host_port};
use crate::notify::{
    Change, Channel, ChannelError, Email, Notice, Route, SmtpSecurity, Syslog, SyslogFormat,
    SyslogTransport, Target, Webhook, deliver,
};
use crate::policy::PolicyTree;
use crate::store::{EventFeedReads, NotifyReads, Reads};
use hyper::StatusCode;
use serde_json::{Map, Value, json};

impl From<ChannelError> for ApiError {
    fn from(e: ChannelError) -> Self {
        ApiError::bad_field(e.field, e.to_string())
    }
}

pub fn list(state: &ApiState) -> Handled {
    let txn = state.store.read()?;
    let last = txn.last_notice_seq()?;
    let mut all = Vec::new();
    for channel in txn.channels()? {
        let delivery = txn.delivery(&channel.name)?.unwrap_or_default();
        let mut answer = view(&channel, &delivery, last);
        answer["event_delivery"] = event_view(&txn, &channel)?;
        all.push(answer);
    }
    let routes: Vec<Value> = txn.routes()?.iter().map(route_view).collect();
    Ok(ApiResponse::ok(
        json!({ "channels": all, "routes": routes }),
    ))
}

pub fn show(state: &ApiState, name: &str) -> Handled {
    let txn = state.store.read()?;
    let channel = find(&txn, name)?;
    let delivery = txn.delivery(&channel.name)?.unwrap_or_default();
    let mut answer = view(&channel, &delivery, txn.last_notice_seq()?);
    answer["event_delivery"] = event_view(&txn, &channel)?;
    let routes: Vec<Value> = txn
        .routes()?
        .iter()
        .filter(|r| r.channel.eq_ignore_ascii_case(&channel.name))
        .map(route_view)
        .collect();
    answer["routes"] = json!(routes);
    Ok(ApiResponse::ok(answer))
}

pub fn create(state: &ApiState, body: &[u8]) -> Handled {
    let mut map = object(body)?;
    let name = required_string(&mut map, "name")?;
    let kind = required_string(&mut map, "kind")?;
    let give_up_after = match optional_string(&mut map, "give_up_after")? {
        None => DEFAULT_GIVE_UP_AFTER,
        Some(text) => parse_duration(&text)
            .map_err(|e| ApiError::bad_field("give_up_after", format!("'{text}': {e}")))?,
    };
    let mut generated_secret = None;
    let target = match kind.as_str() {
        "email" => Target::Email(email(&mut map)?),
        "syslog" => Target::Syslog(syslog(&mut map)?),
        "webhook" => {
            let hook = webhook(&mut map)?;
            if hook.1 {
                generated_secret = Some(hook.0.secret.clone());
            }
            Target::Webhook(hook.0)
        }
        other => {
            return Err(ApiError::bad_field(
                "kind",
                format!("unknown channel kind '{other}': use email, syslog or webhook"),
            ));
        }
    };
    refuse_leftovers(map)?;
    let channel = Channel::new(&name, target, give_up_after, state.clock.wall())?;
    let mut txn = state.store.write()?;
    if let Some(existing) = txn.channel(&name)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a channel named '{}' exists already", existing.name),
        ));
    }
    txn.put_channel(&channel)?;
    let delivery = txn.delivery(&channel.name)?.unwrap_or_default();
    let last = txn.last_notice_seq()?;
    let events = event_view(&txn, &channel)?;
    txn.commit()?;
    log::info!(
        "notification channel '{}' ({}) added",
        channel.name,
        channel.target.kind()
    );
    let mut answer = view(&channel, &delivery, last);
    answer["event_delivery"] = events;
    if let Some(secret) = generated_secret {
        // Shown once, like a token: the receiver needs it to check signatures.
        answer["secret"] = json!(secret);
    }
    Ok(ApiResponse::created(
        format!("/api/v1/notifications/channels/{}", channel.name),
        answer,
    ))
}

pub fn delete(state: &ApiState, name: &str) -> Handled {
    let mut txn = state.store.write()?;
    let channel = find(&txn, name)?;
    txn.delete_channel(&channel.name)?;
    // Its failure alert has nobody left to clear it.
    crate::alerts::record::clear_site(
        &mut txn,
        AlertKind::NotificationFailed,
        &channel.name,
        state.clock.wall(),
        "the channel was removed",
    )?;
    txn.commit()?;
    log::info!("notification channel '{}' removed", channel.name);
    Ok(ApiResponse::no_content())
}

/// Sends a test notice now and answers with what the server said (or why it failed), without
/// touching the outbox.
pub fn test(state: &ApiState, name: &str) -> Handled {
    let channel = find(&state.store.read()?, name)?;
    let notice = Notice::test(state.clock.wall(), &channel.name);
    let site = crate::notify::format::Site {
        manager: state.manager_name.clone(),
        version: crate::release::version(),
    };
    let result = smol::block_on(deliver::deliver(&channel, &notice, &site, &*state.clock));
    match result {
        Ok(answer) => {
            log::info!("notification channel '{}' test: {}", channel.name, answer.0);
            Ok(ApiResponse::ok(json!({
                "channel": channel.name,
                "delivered": true,
                "answer": answer.0,
            })))
        }
        Err(e) => {
            log::warn!(
                "notification channel '{}' test failed: {}",
                channel.name,
                e.chain()
            );
            Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("the test notification was not delivered: {}", e.chain()),
            ))
        }
    }
}

pub fn add_route(state: &ApiState, body: &[u8]) -> Handled {
    let mut map = object(body)?;
    let channel_name = required_string(&mut map, "channel")?;
    let kind = match optional_string(&mut map, "kind")? {
        None => None,
        Some(text) => Some(
            AlertKind::ALL
                .into_iter()
                .find(|k| k.name() == text)
                .ok_or_else(|| {
                    ApiError::bad_field("kind", format!("unknown alert kind '{text}'"))
                })?,
        ),
    };
    let severity = match optional_string(&mut map, "severity")? {
        None => None,
        Some(text) => Some(
            [Severity::Critical, Severity::Warning]
                .into_iter()
                .find(|s| s.name() == text)
                .ok_or_else(|| {
                    ApiError::bad_field(
                        "severity",
                        format!("unknown severity '{text}': use critical or warning"),
                    )
                })?,
        ),
    };
    let policy = optional_reference(&mut map, "policy")?;
    let on = changes(&mut map)?;
    refuse_leftovers(map)?;
    let mut txn = state.store.write()?;
    let channel = txn.channel(&channel_name)?.ok_or_else(|| {
        ApiError::bad_field(
            "channel",
            format!("no notification channel is named '{channel_name}'"),
        )
    })?;
    let policy = match policy {
        None => None,
        Some(reference) => Some(
            PolicyTree::new(txn.policies()?)
                .find(&reference)
                .ok_or_else(|| {
                    ApiError::bad_field("policy", format!("no policy is named '{reference}'"))
                })?
                .id,
        ),
    };
    let route = Route {
        id: txn.next_route_id()?,
        channel: channel.name,
        kind,
        severity,
        policy,
        on,
    };
    txn.put_route(&route)?;
    txn.commit()?;
    log::info!(
        "notification route {} added to '{}'",
        route.id,
        route.channel
    );
    Ok(ApiResponse::created(
        format!("/api/v1/notifications/routes/{}", route.id),
        route_view(&route),
    ))
}

pub fn delete_route(state: &ApiState, id: &str) -> Handled {
    let not_found = || ApiError::not_found(format!("route '{id}'"));
    let id: u64 = id.parse().map_err(|_| not_found())?;
    let mut txn = state.store.write()?;
    if !txn.delete_route(id)? {
        return Err(not_found());
    }
    txn.commit()?;
    Ok(ApiResponse::no_content())
}

fn find(txn: &impl NotifyReads, name: &str) -> Result<Channel, ApiError> {
    txn.channel(name)?
        .ok_or_else(|| ApiError::not_found(format!("notification channel '{name}'")))
}

/// `"on": ["raised", "repeated", "cleared"]`; absent: raised and cleared.
fn changes(map: &mut Map<String, Value>) -> Result<Vec<Change>, ApiError> {
    let bad = || {
        ApiError::bad_field(
            "on",
            "on is a list of raised, repeated and cleared (absent: raised and cleared)",
        )
    };
    let items = match map.remove("on") {
        None | Some(Value::Null) => return Ok(crate::notify::route::DEFAULT_CHANGES.to_vec()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(bad()),
    };
    let mut on = Vec::new();
    for item in items {
        let change = item
            .as_str()
            .and_then(Change::from_name)
            .filter(|c| *c != Change::Test)
            .ok_or_else(bad)?;
        if !on.contains(&change) {
            on.push(change);
        }
    }
    if on.is_empty() {
        return Err(bad());
    }
    Ok(on)
}

fn email(map: &mut Map<String, Value>) -> Result<Email, ApiError> {
    let (host, port) = host_port("smtp", &required_string(map, "smtp")?)?;
    let security_text = required_string(map, "security")?;
    let security = SmtpSecurity::from_name(&security_text).ok_or_else(|| {
        ApiError::bad_field(
            "security",
            format!("unknown security '{security_text}': use none, starttls or tls"),
        )
    })?;
    let to = match map.remove("to") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::bad_field("to", "to is a list of addresses")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::String(one)) => vec![one],
        _ => return Err(ApiError::bad_field("to", "to is a list of addresses")),
    };
    Ok(Email {
        host,
        port,
        security,
        from: required_string(map, "from")?,
        to,
        username: optional_string(map, "username")?,
        password: optional_string(map, "password")?,
        ca_cert: optional_string(map, "ca_cert")?,
    })
}

fn syslog(map: &mut Map<String, Value>) -> Result<Syslog, ApiError> {
    let (host, port) = host_port("address", &required_string(map, "address")?)?;
    let transport_text = required_string(map, "transport")?;
    let transport = SyslogTransport::from_name(&transport_text).ok_or_else(|| {
        ApiError::bad_field(
            "transport",
            format!("unknown transport '{transport_text}': use udp, tcp or tls"),
        )
    })?;
    let format_text = required_string(map, "format")?;
    let format = SyslogFormat::from_name(&format_text).ok_or_else(|| {
        ApiError::bad_field(
            "format",
            format!("unknown format '{format_text}': use cef, leef or text"),
        )
    })?;
    Ok(Syslog {
        host,
        port,
        transport,
        format,
        ca_cert: optional_string(map, "ca_cert")?,
        events: event_ids(map)?,
    })
}

/// `"events": [1000, "agent-stopped", ...]`: agent events by id or catalogue name; absent:
/// none. `Channel::new` checks the ids against the catalogue.
fn event_ids(map: &mut Map<String, Value>) -> Result<Vec<u32>, ApiError> {
    let bad = |what: &str| {
        ApiError::bad_field(
            "events",
            format!("{what}: events is a list of agent event ids or names (schema/events.md)"),
        )
    };
    let items = match map.remove("events") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(bad(&format!("'{other}' is not a list"))),
    };
    items
        .into_iter()
        .map(|item| match &item {
            Value::Number(n) => n
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| bad(&format!("{n} is not an event id"))),
            Value::String(name) => crate::model::events::CATALOGUE
                .iter()
                .find(|k| k.name == name || k.id.to_string() == *name)
                .map(|k| k.id)
                .ok_or_else(|| bad(&format!("'{name}' is no agent event"))),
            other => Err(bad(&format!("'{other}' is neither an id nor a name"))),
        })
        .collect()
}

/// The webhook, and whether its secret was generated here (then shown once).
fn webhook(map: &mut Map<String, Value>) -> Result<(Webhook, bool), ApiError> {
    let url = required_string(map, "url")?;
    channel::https_url(&url)?;
    let (secret, generated) = match optional_string(map, "secret")? {
        Some(secret) => (secret, false),
        None => (
            crate::secret::random_secret()
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
            true,
        ),
    };
    let headers = match map.remove("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(entries)) => entries
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                _ => Err(ApiError::bad_field("headers", "header values are strings")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_field(
                "headers",
                "headers is an object of NAME: value",
            ));
        }
    };
    Ok((
        Webhook {
            url,
            secret,
            headers,
            ca_cert: optional_string(map, "ca_cert")?,
        },
        generated,
    ))
}

fn view(channel: &Channel, delivery: &crate::notify::Delivery, last_seq: u64) -> Value {
    let target = match &channel.target {
        Target::Email(e) => json!({
            "smtp": format!("{}:{}", e.host, e.port),
            "security": e.security.name(),
            "from": e.from,
            "to": e.to,
            "username": e.username,
            "has_password": e.password.is_some(),
            "ca_cert": e.ca_cert.is_some(),
        }),
        Target::Syslog(s) => json!({
            "address": format!("{}:{}", s.host, s.port),
            "transport": s.transport.name(),
            "format": s.format.name(),
            "ca_cert": s.ca_cert.is_some(),
            "events": s.events,
        }),
        Target::Webhook(w) => json!({
            "url": crate::notify::channel::shown_url(&w.url),
            "has_secret": true,
            "headers": w.headers.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            "ca_cert": w.ca_cert.is_some(),
        }),
    };
    json!({
        "name": channel.name,
        "kind": channel.target.kind(),
        "settings": target,
        "give_up_after": format_duration(channel.give_up_after),
        "created_ms": channel.created.0,
        "delivery": {
            "pending": last_seq.saturating_sub(delivery.done_through),
            "sent": delivery.sent,
            "failed": delivery.failed,
            "skipped": delivery.skipped,
            "failing": delivery.failing,
            "attempts": delivery.attempts,
            "last_attempt_ms": delivery.last_attempt.map(|t| t.0),
            "last_sent_ms": delivery.last_sent.map(|t| t.0),
            "last_error": delivery.last_error,
        },
    })
}

/// How far a channel that forwards agent events has got through them; `null` for one that
/// forwards none.
fn event_view(txn: &impl EventFeedReads, channel: &Channel) -> Result<Value, ApiError> {
    let Some(cursor) = txn.event_cursor(&channel.name)? else {
        return Ok(Value::Null);
    };
    Ok(json!({
        "pending": txn.events_pending(cursor.done_through)?,
        "sent": cursor.sent,
        "failed": cursor.failed,
        "skipped": cursor.skipped,
        "dropped": cursor.dropped,
        "failing": cursor.failing,
        "attempts": cursor.attempts,
        "last_attempt_ms": cursor.last_attempt.map(|t| t.0),
        "last_sent_ms": cursor.last_sent.map(|t| t.0),
        "last_error": cursor.last_error,
    }))
}

fn route_view(route: &Route) -> Value {
    json!({
        "id": route.id,
        "channel": route.channel,
        "kind": route.kind.map(|k| k.name()),
        "severity": route.severity.map(|s| s.name()),
        "policy": route.policy.map(|p| p.0),
        "on": route.on.iter().map(|c| c.name()).collect::<Vec<_>>(),
    })
}
