//! Structured logs: one JSON object per line, carrying the current spans' fields (so every line
//! written while serving a request names its `request_id`).

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber; `RUST_LOG` overrides the default `info` level. Safe to call
/// more than once (later calls do nothing), which tests rely on.
pub fn init() {
    // vaultrs and rustify log every non-2xx answer (a 404 for an absent secret included) as an
    // error; our own code logs the failures that matter, with context.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,vaultrs=off,rustify=off"));
    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_ansi(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(format)
        .try_init();
}

pub use crate::domain::trace::TraceHeader;
