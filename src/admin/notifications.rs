//! `picket notifications ...` and `picket maintenance ...`: clients of
//! `/api/v1/notifications` and `/api/v1/maintenance`.

use super::output;
use super::{AdminError, ApiClient, percent_encode};
use crate::cli::notifications::{AddKind, MaintenanceVerb, NotificationsVerb, RouteVerb};
use hyper::Method;
use serde_json::{Map, Value, json};
use std::path::Path;

pub fn notifications(verb: NotificationsVerb) -> Result<(), AdminError> {
    let channel_path =
        |name: &str| format!("/api/v1/notifications/channels/{}", percent_encode(name));
    match verb {
        NotificationsVerb::Add(add) => {
            let (options, body) = match add.kind {
                AddKind::Email(a) => {
                    let password = a.password_file.as_deref().map(first_line).transpose()?;
                    let body = json!({
                        "name": a.name, "kind": "email", "smtp": a.smtp, "security": a.security,
                        "from": a.from, "to": a.to, "username": a.username, "password": password,
                        "ca_cert": a.ca_cert.as_deref().map(whole).transpose()?,
                        "give_up_after": a.give_up_after,
                    });
                    (a.client(), body)
                }
                AddKind::Syslog(a) => {
                    // An id goes as a number, a name as it was typed: the API checks both.
                    let events: Vec<Value> = a
                        .event
                        .iter()
                        .map(|e| e.parse::<u32>().map_or_else(|_| json!(e), |id| json!(id)))
                        .collect();
                    let body = json!({
                        "name": a.name, "kind": "syslog", "address": a.address,
                        "transport": a.transport, "format": a.format,
                        "ca_cert": a.ca_cert.as_deref().map(whole).transpose()?,
                        "give_up_after": a.give_up_after,
                        "events": (!events.is_empty()).then_some(events),
                    });
                    (a.client(), body)
                }
                AddKind::Webhook(a) => {
                    let mut headers = Map::new();
                    for pair in &a.header {
                        let (k, v) = pair.split_once('=').ok_or_else(|| {
                            AdminError::Usage(format!("--header '{pair}' is not NAME=VALUE"))
                        })?;
                        headers.insert(k.to_string(), Value::String(v.to_string()));
                    }
                    let body = json!({
                        "name": a.name, "kind": "webhook", "url": a.url,
                        "secret": a.secret_file.as_deref().map(first_line).transpose()?,
                        "headers": headers,
                        "ca_cert": a.ca_cert.as_deref().map(whole).transpose()?,
                        "give_up_after": a.give_up_after,
                    });
                    (a.client(), body)
                }
            };
            let answer = ApiClient::new(&options)?.call(
                Method::POST,
                "/api/v1/notifications/channels",
                Some(&strip_nulls(body)),
            )?;
            output::channel(&options, &answer);
        }
        NotificationsVerb::List(a) => {
            let answer = ApiClient::new(&a.client())?.call(
                Method::GET,
                "/api/v1/notifications/channels",
                None,
            )?;
            output::channel_list(&a.client(), &answer);
        }
        NotificationsVerb::Show(a) => {
            let answer =
                ApiClient::new(&a.client())?.call(Method::GET, &channel_path(&a.name), None)?;
            output::channel(&a.client(), &answer);
        }
        NotificationsVerb::Remove(a) => {
            ApiClient::new(&a.client())?.call(Method::DELETE, &channel_path(&a.name), None)?;
            output::deleted(&a.client(), "notification channel", &a.name);
        }
        NotificationsVerb::Test(a) => {
            let path = format!("{}/test", channel_path(&a.name));
            let answer = ApiClient::new(&a.client())?.call(Method::POST, &path, None)?;
            output::channel_test(&a.client(), &answer);
        }
        NotificationsVerb::Route(route) => match route.verb {
            RouteVerb::Add(a) => {
                let on: Option<Vec<&str>> =
                    a.on.as_deref()
                        .map(|on| on.split(',').map(str::trim).collect());
                let body = strip_nulls(json!({
                    "channel": a.name, "kind": a.kind, "severity": a.severity,
                    "policy": a.policy, "on": on,
                }));
                let answer = ApiClient::new(&a.client())?.call(
                    Method::POST,
                    "/api/v1/notifications/routes",
                    Some(&body),
                )?;
                output::route(&a.client(), &answer);
            }
            RouteVerb::Remove(a) => {
                let path = format!("/api/v1/notifications/routes/{}", a.id);
                ApiClient::new(&a.client())?.call(Method::DELETE, &path, None)?;
                output::deleted(&a.client(), "route", &a.id.to_string());
            }
        },
    }
    Ok(())
}

pub fn maintenance(verb: MaintenanceVerb) -> Result<(), AdminError> {
    match verb {
        MaintenanceVerb::Add(a) => {
            if a.computer.is_some() == a.policy.is_some() {
                return Err(AdminError::Usage(
                    "give either --computer ID or --policy NAME".into(),
                ));
            }
            let body = strip_nulls(json!({
                "computer": a.computer, "policy": a.policy,
                "duration": a.duration, "reason": a.reason,
            }));
            let answer = ApiClient::new(&a.client())?.call(
                Method::POST,
                "/api/v1/maintenance",
                Some(&body),
            )?;
            output::window_list(&a.client(), &json!({"windows": [answer]}));
        }
        MaintenanceVerb::List(a) => {
            let answer =
                ApiClient::new(&a.client())?.call(Method::GET, "/api/v1/maintenance", None)?;
            output::window_list(&a.client(), &answer);
        }
        MaintenanceVerb::Remove(a) => {
            let path = format!("/api/v1/maintenance/{}", a.id);
            ApiClient::new(&a.client())?.call(Method::DELETE, &path, None)?;
            // An open window ends (and stays listed); a planned or ended one goes.
            output::ended(&a.client(), "maintenance window", &a.id.to_string());
        }
    }
    Ok(())
}

/// Absent options are left out, so the manager applies its defaults.
fn strip_nulls(mut body: Value) -> Value {
    if let Value::Object(map) = &mut body {
        map.retain(|_, v| !v.is_null());
    }
    body
}

/// The first line of a secret's file: a trailing newline is not part of the secret.
fn first_line(path: &Path) -> Result<String, AdminError> {
    let text = whole(path)?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn whole(path: &Path) -> Result<String, AdminError> {
    std::fs::read_to_string(path).map_err(|source| AdminError::File {
        path: path.to_path_buf(),
        source,
    })
}
