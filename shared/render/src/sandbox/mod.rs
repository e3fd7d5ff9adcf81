//! Rendering in supervised child processes, so that a hostile template is *stopped*, not
//! abandoned.
//!
//! A [`Sandbox`] keeps a small pool of rendering processes: the function's own binary started
//! again with [`CHILD_ARG`] (every binary that renders calls [`serve_if_child`] first thing in
//! `main`). A child runs with an OS memory limit (`RLIMIT_DATA`: its private writable memory)
//! and a cleared environment, reads one render job at a time from its stdin and answers on its
//! stdout. The parent waits for the answer at most the time budget:
//!
//! - on time, the child goes back to the pool and stays warm (fonts and the Typst library
//!   loaded), so a warm render costs what it costs in-process plus a pipe round trip;
//! - past the budget, the child is killed (`SIGKILL`) and reaped: its CPU stops and its memory
//!   is returned at once; the next render starts a fresh child;
//! - when an allocation fails at the memory limit, or the stack overflows, the child aborts
//!   and says why on stderr; a panic is reported by a hook before the child exits. Either way
//!   that one render fails and every other request and message goes on.
//!
//! A child that kept a lot of memory after a render (more than half its budget) is retired
//! rather than reused, so an idle service returns to its idle size.

mod child;
mod process;
mod wire;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Condvar, Mutex, MutexGuard};

use self::process::{resident_bytes, Worker};
use self::wire::{write_frame_parts, AssetHeader, JobRef};
use super::{
    time_budget_exceeded, DocumentFormat, RenderInput, RenderLimits, TemplateError,
    TemplateErrorKind,
};

/// The first argument that makes a binary a rendering process (see [`serve_if_child`]).
pub const CHILD_ARG: &str = "__docbundle-render-sandbox";
/// The child's memory limit in bytes, passed by the parent.
const MEMORY_ENV: &str = "DOCBUNDLE_RENDER_MEMORY_BYTES";
/// Stack of the thread that runs the engines: Typst's layout recurses deeply.
pub const RENDER_STACK_BYTES: usize = 16 * 1024 * 1024;
/// Exit code of a child whose renderer panicked (after reporting it).
const PANIC_EXIT: i32 = 70;
/// Lines of a child's stderr kept to explain its death.
const STDERR_LINES: usize = 16;

/// How the pool is run.
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The binary to start as a rendering process; it must call [`serve_if_child`].
    pub program: PathBuf,
    /// Most rendering processes alive at once (renders beyond that wait for one).
    pub processes: usize,
}

impl SandboxSettings {
    /// This very binary, with `processes` children at most.
    pub fn current_exe(processes: usize) -> std::io::Result<Self> {
        Ok(SandboxSettings {
            program: std::env::current_exe()?,
            processes,
        })
    }
}

/// When this process was started as a rendering process, serves render jobs until its parent
/// closes the pipe, then exits; otherwise returns at once. Call it first thing in `main`,
/// before any runtime or logging starts.
pub fn serve_if_child() {
    if std::env::args_os().nth(1).as_deref() != Some(OsStr::new(CHILD_ARG)) {
        return;
    }
    std::process::exit(child::run());
}

/// A pool of rendering processes, started on first use.
#[derive(Debug)]
pub struct Sandbox {
    settings: SandboxSettings,
    slots: Mutex<Slots>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct Slots {
    idle: Vec<Worker>,
    /// Children alive, idle or busy.
    alive: usize,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Sandbox {
    pub fn new(settings: SandboxSettings) -> Self {
        Sandbox {
            settings: SandboxSettings {
                processes: settings.processes.max(1),
                ..settings
            },
            slots: Mutex::new(Slots::default()),
            freed: Condvar::new(),
        }
    }

    /// Process ids of the rendering processes alive and idle (for tests and diagnostics).
    pub fn idle_pids(&self) -> Vec<u32> {
        lock(&self.slots).idle.iter().map(|w| w.pid()).collect()
    }

    /// Renders one document in a rendering process. Blocking.
    pub(super) fn render(
        &self,
        format: DocumentFormat,
        template: &str,
        input: &RenderInput<'_>,
        limits: &RenderLimits,
    ) -> Result<Vec<u8>, TemplateError> {
        let parts: Vec<&[u8]> = input.assets.iter().map(|a| a.bytes.as_ref()).collect();
        let header = job_header(format, template, input, limits, &parts)?;
        let worker = self.send_job(limits, &header, &parts)?;
        self.await_reply(worker, limits)
    }

    /// Writes the job to a child and returns that child. An idle child may have died (killed
    /// from outside, say): every idle one is tried, then a fresh one, before giving up.
    fn send_job(
        &self,
        limits: &RenderLimits,
        header: &[u8],
        parts: &[&[u8]],
    ) -> Result<Worker, TemplateError> {
        let mut tries = self.settings.processes + 1;
        loop {
            let mut worker = self.checkout(limits)?;
            match write_frame_parts(&mut worker.stdin, header, parts) {
                Ok(()) => return Ok(worker),
                Err(e) => {
                    self.retire(worker);
                    tries -= 1;
                    if tries == 0 {
                        return Err(TemplateError::new(
                            TemplateErrorKind::Unavailable,
                            format!("cannot reach the rendering process: {e}"),
                        ));
                    }
                }
            }
        }
    }

    /// Waits for the child's answer within the time budget. On time, the child goes back to
    /// the pool (or is retired when it is spent or kept too much memory); a child that died is
    /// explained by its death; one past the budget is killed.
    fn await_reply(&self, worker: Worker, limits: &RenderLimits) -> Result<Vec<u8>, TemplateError> {
        match worker.replies.recv_timeout(limits.time_budget) {
            Ok(Ok((reply, bytes))) => {
                if reply.fatal || resident_bytes(worker.pid()) > limits.max_memory_bytes / 2 {
                    self.retire(worker);
                } else {
                    self.checkin(worker);
                }
                reply.result.map(|_| bytes)
            }
            Ok(Err(_)) | Err(RecvTimeoutError::Disconnected) => {
                let error = worker.death(limits);
                self.release_slot();
                tracing::warn!(error = %error.message, "rendering process ended");
                Err(error)
            }
            Err(RecvTimeoutError::Timeout) => {
                // Dropping the worker kills and reaps it: its CPU and memory are back now.
                self.retire(worker);
                tracing::warn!(
                    budget_ms = limits.time_budget.as_millis() as u64,
                    "rendering process killed at its time budget"
                );
                Err(time_budget_exceeded(limits))
            }
        }
    }

    /// An idle child, a new one if fewer than `processes` are alive, or the next one freed.
    fn checkout(&self, limits: &RenderLimits) -> Result<Worker, TemplateError> {
        let mut slots = lock(&self.slots);
        loop {
            if let Some(worker) = slots.idle.pop() {
                return Ok(worker);
            }
            if slots.alive < self.settings.processes {
                slots.alive += 1;
                drop(slots);
                return Worker::spawn(&self.settings.program, limits).inspect_err(|_| {
                    lock(&self.slots).alive -= 1;
                    self.freed.notify_one();
                });
            }
            slots = self
                .freed
                .wait(slots)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn checkin(&self, worker: Worker) {
        lock(&self.slots).idle.push(worker);
        self.freed.notify_one();
    }

    fn retire(&self, worker: Worker) {
        drop(worker);
        self.release_slot();
    }

    fn release_slot(&self) {
        let mut slots = lock(&self.slots);
        slots.alive = slots.alive.saturating_sub(1);
        drop(slots);
        self.freed.notify_one();
    }
}

/// The encoded header of a render job, whose asset bytes (`parts`) follow it in the frame;
/// refused when the assets add up to more than a rendering process accepts.
fn job_header(
    format: DocumentFormat,
    template: &str,
    input: &RenderInput<'_>,
    limits: &RenderLimits,
    parts: &[&[u8]],
) -> Result<Vec<u8>, TemplateError> {
    let job = JobRef {
        format,
        template,
        data: input.data,
        seed_hash: input.seed_hash,
        configuration_name: input.configuration_name,
        configuration_version: input.configuration_version,
        pdf_standard: input.pdf_standard,
        assets: input
            .assets
            .iter()
            .map(|a| AssetHeader {
                name: a.name.clone(),
                kind: a.kind,
                size: a.bytes.len(),
            })
            .collect(),
        attachment: input.attachment,
        limits,
    };
    // What a rendering process accepts: more would end it mid-job.
    let body: usize = parts.iter().map(|p| p.len()).sum();
    if body > wire::MAX_JOB_BYTES {
        return Err(TemplateError::new(
            TemplateErrorKind::Limit,
            format!(
                "the assets add up to {body} bytes, over the {} a render may carry",
                wire::MAX_JOB_BYTES
            ),
        ));
    }
    serde_json::to_vec(&job).map_err(|e| {
        TemplateError::new(
            TemplateErrorKind::Crashed,
            format!("cannot encode the render job: {e}"),
        )
    })
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Idle workers are killed and reaped by their own drop.
        lock(&self.slots).idle.clear();
    }
}
