//! API errors and their JSON form: `{"error":{"message","field"}}` with the matching status.

use crate::activation::ActivationError;
use crate::policy::PolicyError;
use crate::store::StoreError;
use hyper::StatusCode;
use serde_json::{Value, json};
use std::fmt;

/// A refused or failed request. `field` names what the caller should fix, when there is one.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    /// For 429 and 503: seconds before trying again is worth it.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
            retry_after: None,
        }
    }

    pub fn not_found(what: impl fmt::Display) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} not found"))
    }

    pub fn unauthorized(message: &str) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: &str) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    /// A refused login: the same words for an unknown user and a wrong password.
    pub fn bad_credentials() -> Self {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            field: Some("password".into()),
            ..ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password")
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "field": self.field}})
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.status, self.message),
            None => write!(f, "{}: {}", self.status, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        let status = if e.is_conflict() {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError {
            status,
            message: e.to_string(),
            field: Some(e.field()),
            retry_after: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_temporary() {
            // Said in the log once when it began, by the store; the caller may retry.
            let reason = match &e {
                StoreError::Unavailable(reason) => reason.clone(),
                other => other.chain(),
            };
            let mut error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the manager cannot write its store for now ({reason}); try again later"),
            );
            error.retry_after = Some(5);
            return error;
        }
        // The details go to the manager's log; the caller learns only that it was our fault.
        log::error!("store error while serving a request: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the manager could not read or write its store; see the manager's log",
        )
    }
}

impl From<crate::password::PasswordError> for ApiError {
    fn from(e: crate::password::PasswordError) -> Self {
        log::error!("password hashing failed while serving a request: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the manager could not check the password; see the manager's log",
        )
    }
}

impl From<ActivationError> for ApiError {
    fn from(e: ActivationError) -> Self {
        let status = match &e {
            ActivationError::UnknownToken => StatusCode::NOT_FOUND,
            ActivationError::Random(source) => {
                log::error!("cannot make an activation token: {source}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError {
            status,
            message: e.to_string(),
            field: e.field().map(str::to_string),
            retry_after: None,
        }
    }
}
