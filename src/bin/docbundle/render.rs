//! `docbundle render`: a configuration folder rendered offline by the very code a run uses —
//! the save-time checks ([`docbundle::render::configuration::validate`], with its trial render
//! of the defaults), the seed's schema check and canonical form, and
//! [`docbundle::render::bundle::render_bundle`] in rendering processes under the same limits
//! (`RENDER_*`). So the artefacts are byte-identical to a run's of the same version and seed,
//! and a template fails here with the message a save or a run would give.
//!
//! `--watch` keeps the rendering processes warm and renders again on every save.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use docbundle::domain::configuration::ConfigurationBody;
use docbundle::domain::retention::RetentionLimits;
use docbundle::domain::seed::CanonicalSeed;
use docbundle::render::bundle::{render_bundle, BundleInput, RenderedArtefact};
use docbundle::render::configuration::{self, Rejection};
use docbundle::render::sandbox::SandboxSettings;
use docbundle::render::{Isolation, Renderer};
use notify::Watcher;
use serde_json::Value;

use crate::folder;

/// Largest seed file read.
const MAX_SEED_BYTES: u64 = 16 << 20;

#[derive(Args)]
pub struct RenderArgs {
    /// The configuration folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The seed (a JSON file); the folder's `defaults` without it.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Where the artefacts are written, under their document names.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// The configuration version the templates see (`configuration.json`); by default the
    /// version in `docbundle.yaml`, or 1 for a folder never pushed.
    #[arg(long)]
    version: Option<i32>,
    /// Render again whenever a file of the folder (or the seed) changes.
    #[arg(long)]
    watch: bool,
}

/// What one render produced.
struct Rendered {
    artefacts: Vec<RenderedArtefact>,
    seed_hash: String,
    version: i32,
    took: Duration,
}

pub async fn run(args: RenderArgs) -> anyhow::Result<()> {
    let (limits, processes) = docbundle::config::render_settings_from_env()?;
    let renderer = Renderer::new(
        limits,
        Isolation::Process(SandboxSettings::current_exe(processes)?),
    );
    if !args.watch {
        let rendered = render_once(&args, &renderer)?;
        report(&args, &rendered, true);
        return Ok(());
    }
    watch(&args, &renderer)
}

fn rejection(folder: &folder::Folder, rejection: Rejection) -> anyhow::Error {
    match rejection {
        Rejection::Invalid(errors) => {
            let mut message = String::from("the configuration is invalid");
            for error in errors {
                let field = match folder.file_of(&error.field) {
                    Some(file) => format!("{} ({file})", error.field),
                    None => error.field,
                };
                message.push_str(&format!("\n  {field}: {}", error.message));
            }
            anyhow::anyhow!(message)
        }
        Rejection::RendererUnavailable(reason) => {
            anyhow::anyhow!("no rendering process could be started: {reason}")
        }
    }
}

fn render_once(args: &RenderArgs, renderer: &Renderer) -> anyhow::Result<Rendered> {
    let started = Instant::now();
    let folder = folder::load(&args.dir, renderer.limits().max_template_bytes)?;
    let body: ConfigurationBody = serde_json::from_value(folder.body())
        .with_context(|| format!("{} is invalid", folder::FILE))?;
    let stored = folder.stored_assets();
    // A local render keeps nothing: any well-formed retention passes.
    let spec = configuration::validate(body, &stored, renderer, &RetentionLimits::any())
        .map_err(|r| rejection(&folder, r))?;
    let assets = configuration::render_assets(&spec.assets, &stored).map_err(|errors| {
        let first = errors.first();
        anyhow::anyhow!(
            "{}: {}",
            first.map_or("assets", |e| e.field.as_str()),
            first.map_or("", |e| e.message.as_str())
        )
    })?;
    let seed = match &args.seed {
        Some(path) => {
            let bytes = folder::read_capped(path, MAX_SEED_BYTES, "the seed size limit")?;
            serde_json::from_slice::<Value>(&bytes)
                .with_context(|| format!("{} is not JSON", path.display()))?
        }
        None => Value::Object(spec.defaults.clone().unwrap_or_default()),
    };
    // As a launch checks it.
    if let Some(schema) = &spec.data_schema {
        let validator = docbundle::domain::schema::compile(schema)
            .map_err(|e| anyhow::anyhow!("the schema does not compile: {e}"))?;
        let violations = docbundle::domain::schema::violations(&validator, &seed, "seed");
        if !violations.is_empty() {
            let mut message = String::from("the seed does not satisfy the schema");
            for v in violations {
                message.push_str(&format!("\n  {}: {}", v.field, v.message));
            }
            bail!(message);
        }
    }
    let canonical = CanonicalSeed::of(&seed)
        .map_err(|e| anyhow::anyhow!("the seed cannot be canonicalised: {e}"))?;
    // A run renders the seed as stored: its canonical form, parsed again.
    let data = canonical.value()?;
    let version = args.version.or(folder.file.version).unwrap_or(1);
    let artefacts = render_bundle(
        &BundleInput {
            documents: &spec.documents,
            archive: spec.archive,
            data: &data,
            seed_hash: canonical.hash.as_str(),
            configuration_name: &spec.name,
            configuration_version: version,
            assets: &assets,
        },
        renderer,
    )
    .map_err(|failure| anyhow::anyhow!("{} ({})", &failure.run_error().message, failure.code))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    for artefact in &artefacts {
        let path = args.out.join(&artefact.name);
        std::fs::write(&path, &artefact.bytes)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(Rendered {
        artefacts,
        seed_hash: canonical.hash.as_str().to_owned(),
        version,
        took: started.elapsed(),
    })
}

fn report(args: &RenderArgs, rendered: &Rendered, detailed: bool) {
    if detailed {
        for artefact in &rendered.artefacts {
            println!(
                "{}\t{}\t{}",
                sha256(&artefact.bytes),
                artefact.bytes.len(),
                args.out.join(&artefact.name).display()
            );
        }
        println!(
            "seedHash {} · version {} · bundle digest {}",
            rendered.seed_hash,
            rendered.version,
            digest(&rendered.artefacts)
        );
        println!(
            "(digests of the renders: a run's signed PDF lists the same as its renderSha256; \
             its stored sha256 differs with every signature)"
        );
    }
    println!(
        "rendered {} artefacts in {} ms",
        rendered.artefacts.len(),
        rendered.took.as_millis()
    );
}

fn sha256(bytes: &[u8]) -> String {
    docbundle::domain::digest::sha256_hex(bytes)
}

/// The manifest's bundle digest these artefacts would have.
fn digest(artefacts: &[RenderedArtefact]) -> String {
    let listed: Vec<docbundle::domain::manifest::Artefact> = artefacts
        .iter()
        .map(|a| docbundle::domain::manifest::Artefact {
            name: a.name.clone(),
            format: a.format.clone(),
            content_type: a.content_type.clone(),
            key: String::new(),
            size: a.bytes.len() as u64,
            sha256: sha256(&a.bytes),
            render_sha256: None,
            signature: None,
            einvoice: None,
        })
        .collect();
    docbundle::domain::manifest::bundle_digest(&listed)
}

/// Whether an event concerns the inputs (not only the output folder).
fn concerns_inputs(event: &notify::Event, out: Option<&Path>) -> bool {
    use notify::EventKind;
    if !matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
    ) {
        return false;
    }
    event
        .paths
        .iter()
        .any(|p| out.is_none_or(|out| !p.starts_with(out)))
}

fn watch(args: &RenderArgs, renderer: &Renderer) -> anyhow::Result<()> {
    let (events, received) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = events.send(event);
    })
    .context("cannot watch files")?;
    // Absolute paths, so that events under the output folder are recognised as such.
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", args.dir.display()))?;
    watcher
        .watch(&dir, notify::RecursiveMode::Recursive)
        .with_context(|| format!("cannot watch {}", args.dir.display()))?;
    if let Some(seed) = &args.seed {
        watcher
            .watch(seed, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", seed.display()))?;
    }
    let render = |detailed: bool| match render_once(args, renderer) {
        Ok(rendered) => report(args, &rendered, detailed),
        Err(e) => eprintln!("error: {e:#}"),
    };
    render(true);
    eprintln!("watching {} (Ctrl-C to stop)", args.dir.display());
    loop {
        let out = std::fs::create_dir_all(&args.out)
            .ok()
            .and_then(|_| args.out.canonicalize().ok());
        let event = match received.recv() {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => {
                eprintln!("error: watching: {e}");
                continue;
            }
            Err(_) => bail!("the file watcher stopped"),
        };
        if !concerns_inputs(&event, out.as_deref()) {
            continue;
        }
        // An editor's save is several events: take them all, then render once.
        while received.recv_timeout(Duration::from_millis(30)).is_ok() {}
        render(false);
    }
}
