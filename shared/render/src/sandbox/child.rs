//! The rendering process: serves render jobs from its stdin, one at a time, under the limits
//! its parent set, until the pipe closes.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::os::fd::FromRawFd;
use std::sync::OnceLock;

use super::wire::{read_exact_vec, read_header, write_frame, Job, Reply, MAX_JOB_BYTES};
use super::{MEMORY_ENV, PANIC_EXIT, RENDER_STACK_BYTES};
use crate::{
    renderer_for, unsupported, RenderAsset, RenderInput, TemplateError, TemplateErrorKind,
};

/// The protocol's output, reachable from the panic hook.
static OUT: OnceLock<File> = OnceLock::new();

pub(super) fn run() -> i32 {
    // SAFETY: plain system calls on this process, before any other thread exists.
    unsafe {
        // Die with the parent, even when busy in a runaway render.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            return 0;
        }
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
    }
    if let Some(bytes) = std::env::var(MEMORY_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: lowers this process's own limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
            eprintln!(
                "cannot set the memory limit: {}",
                std::io::Error::last_os_error()
            );
            return 1;
        }
    }
    // The protocol gets a private copy of stdout; whatever else writes to stdout (an
    // engine's stray print) lands on stderr instead of corrupting a frame.
    // SAFETY: duplicating our own standard descriptors.
    let out = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return 1;
        }
        File::from_raw_fd(fd)
    };
    let _ = OUT.set(out);
    std::panic::set_hook(Box::new(|info| {
        let message = match info.payload().downcast_ref::<&str>() {
            Some(s) => (*s).to_owned(),
            None => match info.payload().downcast_ref::<String>() {
                Some(s) => s.clone(),
                None => "unknown panic".to_owned(),
            },
        };
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("renderer panicked: {message}{location}");
        let reply = Reply {
            result: Err(TemplateError::new(
                TemplateErrorKind::Crashed,
                format!("the renderer failed: {message}"),
            )),
            fatal: true,
        };
        if let (Some(mut out), Ok(header)) = (OUT.get(), serde_json::to_vec(&reply)) {
            let _ = write_frame(&mut out, &header, &[]);
        }
        // SAFETY: ends this process without unwinding through the engine.
        unsafe { libc::_exit(PANIC_EXIT) }
    }));
    let worker = std::thread::Builder::new()
        .name("render".into())
        .stack_size(RENDER_STACK_BYTES)
        .spawn(serve);
    match worker.map(|handle| handle.join()) {
        Ok(Ok(code)) => code,
        _ => 1,
    }
}

fn serve() -> i32 {
    let Some(out) = OUT.get() else { return 1 };
    let mut out = BufWriter::new(out);
    let mut input = BufReader::new(std::io::stdin().lock());
    loop {
        let header = match read_header(&mut input, MAX_JOB_BYTES) {
            Ok(Some(header)) => header,
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("cannot read a render job: {e}");
                return 1;
            }
        };
        let (reply, body) = match serde_json::from_slice::<Job>(&header) {
            Ok(job) => {
                // The assets' bytes follow the header; a job that announces more than a job
                // may hold cannot be read past, so the stream is given up.
                let total = job
                    .assets
                    .iter()
                    .try_fold(0usize, |sum, a| sum.checked_add(a.size))
                    .filter(|total| *total <= MAX_JOB_BYTES);
                let Some(total) = total else {
                    eprintln!("a render job announces too many asset bytes");
                    return 1;
                };
                let body = match read_exact_vec(&mut input, total) {
                    Ok(body) => bytes::Bytes::from(body),
                    Err(e) => {
                        eprintln!("cannot read a render job's assets: {e}");
                        return 1;
                    }
                };
                let mut offset = 0;
                let assets: Vec<RenderAsset> = job
                    .assets
                    .iter()
                    .map(|a| {
                        let bytes = body.slice(offset..offset + a.size);
                        offset += a.size;
                        RenderAsset {
                            name: a.name.clone(),
                            kind: a.kind,
                            bytes,
                        }
                    })
                    .collect();
                answer(&job, &assets)
            }
            Err(e) => (
                Reply {
                    result: Err(TemplateError::new(
                        TemplateErrorKind::Crashed,
                        format!("unreadable render job: {e}"),
                    )),
                    // What follows the header cannot be told apart from the next job.
                    fatal: true,
                },
                Vec::new(),
            ),
        };
        let fatal = reply.fatal;
        let written = serde_json::to_vec(&reply)
            .map_err(std::io::Error::other)
            .and_then(|header| write_frame(&mut out, &header, &body));
        if let Err(e) = written {
            eprintln!("cannot answer a render job: {e}");
            return 1;
        }
        // Large outputs are not kept around between jobs.
        drop(body);
        if fatal {
            return 1;
        }
    }
}

fn answer(job: &Job, assets: &[RenderAsset]) -> (Reply, Vec<u8>) {
    let input = RenderInput {
        data: &job.data,
        seed_hash: &job.seed_hash,
        configuration_name: &job.configuration_name,
        configuration_version: job.configuration_version,
        pdf_standard: job.pdf_standard.as_deref(),
        assets,
        attachment: job.attachment.as_ref(),
    };
    let result = match renderer_for(job.format) {
        Some(engine) => engine.render(&job.template, &input, &job.limits),
        None => Err(unsupported(job.format)),
    };
    match result {
        Ok(bytes) => (
            Reply {
                result: Ok(bytes.len() as u64),
                fatal: false,
            },
            bytes,
        ),
        Err(e) => (
            Reply {
                result: Err(e),
                fatal: false,
            },
            Vec::new(),
        ),
    }
}
