//! Two lanes through one worker instance: interactive runs first, batch runs behind them.
//!
//! On AWS an instance hears one queue per invocation, so the lanes rarely meet; where one
//! process hears both (the local API, a worker fed by both event sources between invocations)
//! a month-end batch must not slow an interactive run down. A batch run starts only when no
//! interactive run is in flight in this process (or after waiting [`MAX_YIELD`], so batches
//! are never starved), pauses the same way between its steps, and at most
//! `BATCH_RUN_CONCURRENCY` batch runs work at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Longest a batch run waits for interactive runs to clear.
pub const MAX_YIELD: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct Lanes {
    interactive: AtomicUsize,
    cleared: Notify,
    batch: Arc<Semaphore>,
}

/// Held while an interactive run is processed.
#[derive(Debug)]
pub struct Interactive<'a>(&'a Lanes);

impl Drop for Interactive<'_> {
    fn drop(&mut self) {
        if self.0.interactive.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.cleared.notify_waiters();
        }
    }
}

impl Lanes {
    /// Lanes letting `batch_concurrency` batch runs work at once.
    pub fn new(batch_concurrency: usize) -> Self {
        Lanes {
            interactive: AtomicUsize::new(0),
            cleared: Notify::new(),
            batch: Arc::new(Semaphore::new(batch_concurrency.max(1))),
        }
    }

    /// Marks an interactive run in flight until the guard drops.
    pub fn interactive(&self) -> Interactive<'_> {
        self.interactive.fetch_add(1, Ordering::AcqRel);
        Interactive(self)
    }

    /// Interactive runs in flight.
    pub fn interactive_in_flight(&self) -> usize {
        self.interactive.load(Ordering::Acquire)
    }

    /// Waits while an interactive run is in flight in this process (at most [`MAX_YIELD`]):
    /// a batch run calls it before its starts and again between its steps (before its
    /// uploads, before its manifest is signed), so that the storage, Vault and the rendering
    /// processes serve the interactive run first instead of queueing it behind batch work.
    pub async fn yield_to_interactive(&self) {
        let _ = tokio::time::timeout(MAX_YIELD, async {
            loop {
                let cleared = self.cleared.notified();
                if self.interactive.load(Ordering::Acquire) == 0 {
                    return;
                }
                cleared.await;
            }
        })
        .await;
    }

    /// Waits for a batch run's turn: no interactive run in flight (or [`MAX_YIELD`] spent),
    /// then one of the batch permits.
    pub async fn batch(&self) -> OwnedSemaphorePermit {
        self.yield_to_interactive().await;
        self.batch
            .clone()
            .acquire_owned()
            .await
            .expect("the batch lane's semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn batch_runs_wait_for_interactive_runs_and_their_permits() {
        let lanes = Arc::new(Lanes::new(1));
        let guard = lanes.interactive();
        let waiting = {
            let lanes = lanes.clone();
            tokio::spawn(async move { lanes.batch().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "an interactive run is in flight");
        drop(guard);
        let permit = waiting.await.unwrap();
        // One permit: the next batch run waits for it, even with no interactive run.
        let next = {
            let lanes = lanes.clone();
            tokio::spawn(async move { lanes.batch().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!next.is_finished());
        drop(permit);
        let _permit = next.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_run_between_steps_waits_for_an_interactive_run() {
        let lanes = Arc::new(Lanes::new(1));
        // Nothing interactive: no wait at all.
        let started = tokio::time::Instant::now();
        lanes.yield_to_interactive().await;
        assert_eq!(started.elapsed(), Duration::ZERO);

        let guard = lanes.interactive();
        let waiting = {
            let lanes = lanes.clone();
            tokio::spawn(async move { lanes.yield_to_interactive().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "an interactive run is in flight");
        drop(guard);
        waiting.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(1));

        // Never longer than MAX_YIELD, however long the interactive run takes.
        let _busy = lanes.interactive();
        let started = tokio::time::Instant::now();
        lanes.yield_to_interactive().await;
        assert_eq!(started.elapsed(), MAX_YIELD);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_run_is_never_starved() {
        let lanes = Lanes::new(1);
        let _busy = lanes.interactive();
        let started = tokio::time::Instant::now();
        let _permit = lanes.batch().await;
        assert_eq!(started.elapsed(), MAX_YIELD);
    }
}
