//! Completion webhooks: endpoints (their secrets live in Vault) and deliveries.
//!
//! A delivery is written in the transaction that finishes its run, with an outbox row for its
//! first message, so no event is lost if the process dies after the commit. Each attempt is
//! claimed with a conditional update on the delivery's `dispatch_token` and a lease on
//! `next_attempt_at`: at most one message drives a delivery, a duplicate or stale message is
//! dropped, and an attempt whose dispatcher died is picked up again by [`sweep`].
//!
//! `endpoints` holds the endpoint rows, `deliveries` the delivery rows written when a run
//! finishes or a merchant asks for a redelivery, and `attempts` the dispatcher's side:
//! claiming, recording and sweeping attempts. Their items are re-exported here.

mod attempts;
mod deliveries;
mod endpoints;

pub use attempts::{claim, fail_disabled, record_attempt, sweep, Attempt, Due, Outcome};
pub use deliveries::{list_deliveries, record_event, record_run_event, redeliver, Delivery};
pub use endpoints::{
    count_endpoints, delete_endpoint, find_endpoint, insert_endpoint, list_endpoints,
    update_endpoint, EndpointPatch, NewEndpoint, WebhookEndpoint,
};
