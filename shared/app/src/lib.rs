//! Use-cases: what the service does, in named steps over the domain and the infrastructure,
//! free of HTTP. Each entry point owns its transactions; [`Services`] holds the clients they
//! work with, built once from [`config::Settings`].

mod answered;
pub mod assets;
pub mod batches;
pub mod config;
pub mod erasures;
pub mod jobs;
pub mod lanes;
pub mod launch;
pub mod preview;
pub mod retention;
pub mod runs;
pub mod secrets;
mod services;
pub mod signing;
pub mod transparency;
pub mod versions;

pub use answered::Answered;
pub use config::Settings;
pub use services::Services;
