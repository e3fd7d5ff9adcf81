//! The HTTP edge shared by every API function: request ids, body limits, the JSON/path/query
//! extractors whose rejections become the error envelope, and the fallbacks for unknown routes.

pub mod answers;
pub mod auth;
pub mod error;
mod extract;
mod idempotent;
pub mod openapi;
pub mod paging;
mod refusals;
mod request;
pub mod state;

pub use error::{ApiError, DependencyError};
pub use extract::*;
pub use idempotent::{answer_with_location, idempotency_key, located};
pub use request::*;
pub use state::AppState;

#[cfg(test)]
mod tests;
