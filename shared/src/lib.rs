//! The library every docbundle function is built from, in layers:
//!
//! - [`domain`]: the vocabulary and the pure rules, a crate of its own (`docbundle-domain`) with
//!   no I/O — identifiers and states ([`domain`] itself), configurations and the checks that
//!   need no engine ([`domain::configuration`]), seeds
//!   ([`domain::seed`]), JSON Schema checks ([`domain::schema`]), manifests
//!   ([`domain::manifest`]), events ([`domain::events`]), inbound event signatures
//!   ([`domain::inbound`]);
//! - [`app`]: the use-cases, free of HTTP, that own their transactions — launching runs
//!   ([`app::launch`]);
//! - [`render`]: documents from templates, in supervised rendering processes
//!   ([`render::sandbox`]), MiniJinja ([`render::text`]) and Typst (`render::pdf`);
//! - [`infra`]: what talks to the outside — PostgreSQL ([`infra::db`], a repository module per
//!   table family), S3 ([`infra::storage`]), SQS ([`infra::queue`]), Vault ([`infra::secrets`]),
//!   Redis ([`infra::cache`]);
//! - [`http`]: the edge — extractors and the envelope, authentication ([`http::auth`]),
//!   paging ([`http::paging`]);
//! - and what holds them together: settings ([`config`]), errors ([`error`]), logs
//!   ([`telemetry`]), how a function's process ends ([`runtime`]), metrics as embedded-metric log lines ([`metrics`]) and the state every
//!   handler receives ([`state`]).

pub mod app;
pub mod config;
/// The domain layer, its own crate: it cannot import what stands above it.
pub use docbundle_domain as domain;
pub mod error;
pub mod http;
pub mod infra;
pub mod metrics;
pub mod render;
pub mod runtime;
pub mod state;
pub mod telemetry;

pub use config::Settings;
pub use error::{ApiError, DependencyError};
pub use state::AppState;
