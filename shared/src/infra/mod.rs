//! Infrastructure: every call that leaves the process, each with a timeout and its failure
//! mapped into [`crate::DependencyError`] with context.

pub mod cache;
pub mod db;
pub mod queue;
pub mod secrets;
pub mod storage;
