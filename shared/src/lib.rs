//! The library every docbundle function is built from.
//!
//! Organised by concern: settings ([`config`]), the error envelope ([`error`]), logs
//! ([`telemetry`]), the HTTP edge ([`http`]), authentication ([`auth`]), persistence ([`db`]),
//! object storage ([`storage`]), the run queue ([`queue`]), Vault ([`secrets`]), Redis
//! ([`cache`]) and the shared application state every handler receives ([`state`]).

pub mod app;
pub mod auth;
pub mod cache;
pub mod config;
pub mod configuration;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod inbound;
pub mod manifest;
pub mod paging;
pub mod queue;
pub mod render;
pub mod schema;
pub mod secrets;
pub mod seed;
pub mod state;
pub mod storage;
pub mod telemetry;

pub use config::Settings;
pub use error::{ApiError, DependencyError};
pub use state::AppState;
