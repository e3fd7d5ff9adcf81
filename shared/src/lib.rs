//! The library every docbundle function is built from: one name for the layer crates, each of
//! which may import only the layers below it (the compiler keeps that order):
//!
//! - [`domain`] (`docbundle-domain`): the vocabulary and the pure rules, no I/O — identifiers
//!   and states, configurations and the checks that need no engine, seeds, JSON Schema checks,
//!   manifests, events, inbound event signatures, the Merkle tree and checkpoints;
//! - [`render`] (`docbundle-render`, over the domain): documents from templates, in supervised
//!   rendering processes ([`render::sandbox`]), MiniJinja ([`render::text`]) and Typst
//!   (`render::pdf`, behind the `pdf` feature);
//! - [`infra`] (`docbundle-infra`, over the domain): what talks to the outside — PostgreSQL
//!   ([`infra::db`], a repository module per table family), S3 ([`infra::storage`]), SQS
//!   ([`infra::queue`]), Vault ([`infra::secrets`]), Redis ([`infra::cache`]);
//! - [`app`] (`docbundle-app`, over domain, render and infra): the use-cases, free of HTTP,
//!   that own their transactions, the settings ([`config`]) and the [`app::Services`] they use;
//! - [`http`] (`docbundle-http`, over the app): the edge — extractors and the envelope
//!   ([`error`]), authentication ([`http::auth`]), paging ([`http::paging`]), the OpenAPI
//!   description and the [`AppState`] handlers receive;
//! - and, here, what every function's `main` shares: logs ([`telemetry`]) and how a function's
//!   process ends ([`runtime`]).

pub use docbundle_app as app;
pub use docbundle_app::config;
pub use docbundle_domain as domain;
pub use docbundle_http as http;
pub use docbundle_http::{error, state};
pub use docbundle_infra as infra;
pub use docbundle_infra::metrics;
pub use docbundle_render as render;

pub mod runtime;
pub mod telemetry;

pub use config::Settings;
pub use error::{ApiError, DependencyError};
pub use state::AppState;
