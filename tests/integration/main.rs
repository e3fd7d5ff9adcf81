//! End-to-end tests against the real local stack (`./dev services`): PostgreSQL, Redis,
//! LocalStack (S3, SQS, Secrets Manager), OpenBao (Vault) and the local OIDC issuer.
//!
//! Each test spawns the real app on its own port with a fresh database and its own queue, so
//! tests run in parallel without seeing each other's data or messages.

mod harness;

mod assets;
mod auth;
mod batches;
mod cli;
mod completion_webhooks;
mod configurations;
mod einvoices;
mod hostile_input;
mod inbound_webhooks;
mod outages;
mod pdf;
mod pipeline;
mod preview;
mod render_limits;
mod request_fuzz;
mod retention;
mod routes;
mod secrets_manager;
mod signatures;
mod stack;
mod transparency;
mod xrechnung;
