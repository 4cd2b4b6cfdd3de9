//! The REST API over HTTPS: the HTTP shell (`server`), routing and authentication (`router`),
//! the handlers per resource, JSON views and input, and the error responses.
//!
//! Handlers are synchronous functions over the store, run on smol's blocking pool; the async
//! part only moves bytes. That keeps each handler testable without a socket.

mod alerts;
mod computers;
mod error;
mod events;
mod input;
mod operations;
mod policies;
mod router;
mod server;
mod tokens;
mod views;

pub use error::ApiError;
pub use router::{ApiRequest, ApiResponse, ApiState, handle, percent_decode};
pub use server::serve;

/// Largest request body accepted; larger ones get 413 before they are read.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
