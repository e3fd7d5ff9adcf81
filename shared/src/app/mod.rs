//! Use-cases: what the service does, in named steps over the domain and the infrastructure,
//! free of HTTP. Each entry point owns its transactions.

pub mod assets;
pub mod launch;
pub mod preview;
pub mod secrets;
pub mod transparency;
