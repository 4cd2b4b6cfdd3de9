//! The console and REST API over HTTPS: the HTTP shell (`server`), routing (`router`), who is
//! calling (`auth`: API key or console session), console login (`login`, `sessions`,
//! `throttle`, `password`), the embedded console files (`assets`), the handlers per resource,
//! JSON views and input, and the error responses.
//!
//! Handlers are synchronous functions over the store, run on smol's blocking pool; the async
//! part only moves bytes. That keeps each handler testable without a socket.

mod alerts;
mod assets;
mod auth;
mod computers;
mod error;
mod events;
mod input;
mod login;
mod operations;
pub mod password;
mod policies;
mod router;
mod server;
mod sessions;
mod throttle;
mod tokens;
mod views;

pub use error::ApiError;
pub use login::Console;
pub use router::{ApiRequest, ApiResponse, ApiState, handle, percent_decode};
pub use server::serve;

/// Largest request body accepted; larger ones get 413 before they are read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
