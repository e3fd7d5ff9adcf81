//! `docbundle`: the command line of the docbundle API. Log in once (client credentials, the
//! token cached and renewed), keep a configuration as a folder of templates (`init`, `push`,
//! `pull`), render it offline with the worker's own code (`render`, `--watch`), launch runs and
//! wait for them (`launch --wait`), download a bundle with every hash checked (`download`) and
//! verify it offline (`verify`).
//!
//! Exit codes: 0 done; 1 an error (the API's message and request id are printed); 2 a usage
//! error; 3 the run failed; 4 verification failed (the first mismatch is named); 5 gave up
//! waiting for a run; 6 the run expired (its artefacts were deleted).

mod api;
mod batch;
mod bundle;
mod check;
mod configurations;
mod download;
mod einvoice;
mod folder;
mod monitor;
mod profile;
mod pull;
mod push;
mod render;
mod runs;
mod scaffold;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use docbundle::http::answers::TrustRoots;
use uuid::Uuid;

/// An error that ends the command with its own exit code.
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

pub const RUN_FAILED: u8 = 3;
pub const VERIFICATION_FAILED: u8 = 4;
pub const TIMED_OUT: u8 = 5;
pub const RUN_EXPIRED: u8 = 6;

pub fn exit(code: u8, message: impl Into<String>) -> anyhow::Error {
    Exit {
        code,
        message: message.into(),
    }
    .into()
}

#[derive(Parser)]
#[command(
    name = "docbundle",
    version,
    about = "Versioned document templates and JSON seeds in; signed, reproducible document bundles out",
    after_help = "Exit codes: 0 done, 1 error, 2 usage error, 3 the run failed, \
                  4 verification failed, 5 gave up waiting, 6 the run expired."
)]
pub struct Cli {
    /// The saved profile to use (see `docbundle login`).
    #[arg(
        long,
        global = true,
        env = "DOCBUNDLE_PROFILE",
        default_value = "default"
    )]
    profile: String,
    /// The API's base URL (e.g. `https://docs.example.com`): saved by `login`, over the
    /// profile's elsewhere.
    #[arg(long, global = true, env = "DOCBUNDLE_API")]
    api: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Saves a profile: the issuer, a client's credentials and the API; checks them by
    /// getting a token.
    Login(profile::LoginArgs),
    /// Lists the saved profiles.
    Profiles,
    /// Writes a new configuration folder: `docbundle.yaml`, a Typst invoice and a CSV.
    Init {
        /// The folder to create (or an empty one).
        dir: PathBuf,
        /// Overwrite the files if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Saves the folder as a configuration: creates it, or adds a version (If-Match on the
    /// version the folder was pulled or pushed at).
    Push {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Push over a version someone else saved since.
        #[arg(long)]
        force: bool,
    },
    /// Writes a configuration (its current version, or `--version`) out as a folder.
    Pull {
        id: Uuid,
        dir: PathBuf,
        #[arg(long)]
        version: Option<i32>,
        /// Overwrite files in a folder that is not empty.
        #[arg(long)]
        force: bool,
    },
    /// Renders the folder offline, as a run of its version would: same engine, limits and
    /// messages, byte-identical artefacts. No API or account needed.
    Render(render::RenderArgs),
    /// Checks XML files as e-invoices of a profile (its XSD and the official EN 16931 /
    /// Factur-X Schematron rules), offline, exactly as a save and a run do.
    CheckEinvoice(einvoice::CheckArgs),
    /// Launches a run of a configuration (a folder that was pushed, or an id).
    Launch(runs::LaunchArgs),
    /// Downloads a completed run's artefacts and manifest, checking each hash as it lands.
    Download {
        run: Uuid,
        #[arg(short, long)]
        out: PathBuf,
        /// Write into a folder that holds a bundle already.
        #[arg(long)]
        force: bool,
    },
    /// Verifies a downloaded bundle offline: the manifest's signature, every artefact's
    /// SHA-256 and size, the bundle digest.
    Verify {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The signing keys (a JWKS saved from `GET /api/v1/signing-keys`); fetched from the
        /// API once when not given.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// An older checkpoint of the log you kept (a signed note, e.g. an earlier
        /// `transparency.json`'s `checkpoint` or the monitor's state): checks that the log only
        /// grew since (the consistency proof comes from the API).
        #[arg(long)]
        since: Option<PathBuf>,
        /// The roots that validate signed PDFs (a JSON saved from `GET /api/v1/trust-roots`);
        /// fetched from the API when not given, unless `--keys` is (then signed PDFs are listed
        /// but their signatures not checked).
        #[arg(long)]
        trust_roots: Option<PathBuf>,
        /// A witness whose cosignature on the log's checkpoint is required (its verifier key,
        /// `name+hash+key`, as the witness publishes it); repeatable.
        #[arg(long = "witness-key", value_name = "VKEY")]
        witness_keys: Vec<String>,
        /// How many of the `--witness-key` witnesses must have cosigned (default: all).
        #[arg(long, requires = "witness_keys")]
        quorum: Option<usize>,
    },
    /// The transparency log of your merchant.
    #[command(subcommand)]
    Transparency(TransparencyCommand),
    /// Runs: list them, show one.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Batches: start one from an NDJSON of seeds (`--wait` shows progress), its status and
    /// line errors, download every bundle (`verify` checks a downloaded batch).
    #[command(subcommand)]
    Batch(batch::BatchCommand),
    /// Configurations: list them, list one's versions.
    #[command(subcommand)]
    Configurations(ConfigurationsCommand),
    /// Prints a shell completion script (e.g. `docbundle completions bash > /etc/bash_completion.d/docbundle`).
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum ConfigurationsCommand {
    /// Lists the configurations.
    List(ListArgs),
    /// Lists a configuration's versions.
    Versions {
        id: Uuid,
        #[command(flatten)]
        list: ListArgs,
    },
}

#[derive(Args, Clone)]
pub struct ListArgs {
    /// Most items to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Print the items as the API returns them (JSON lines).
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    // Offline renders run in this binary started again as a rendering process.
    docbundle::render::sandbox::serve_if_child();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<Exit>().map_or(1, |exit| exit.code);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let target = profile::Target {
        profile: cli.profile,
        api: cli.api,
    };
    match cli.command {
        Command::Login(args) => profile::login(&target, args).await,
        Command::Profiles => profile::list(),
        Command::Init { dir, force } => scaffold::init(&dir, force),
        Command::Push { dir, force } => push::push(&target.client()?, &dir, force).await,
        Command::Pull {
            id,
            dir,
            version,
            force,
        } => pull::pull(&target.client()?, id, version, &dir, force).await,
        Command::Render(args) => render::run(args).await,
        Command::CheckEinvoice(args) => einvoice::check(args),
        Command::Launch(args) => runs::launch(&target.client()?, args).await,
        Command::Download { run, out, force } => {
            download::download(&target.client()?, run, &out, force).await
        }
        Command::Verify {
            dir,
            keys,
            since,
            trust_roots,
            witness_keys,
            quorum,
        } => {
            let witnesses = check::Witnesses::from_args(&witness_keys, quorum)?;
            let roots: Option<TrustRoots> = match (&trust_roots, &keys) {
                (Some(path), _) => Some(
                    serde_json::from_slice(&folder::read_capped(path, 1 << 20, "the limit")?)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
                ),
                (None, None) => Some(target.client()?.get("/trust-roots").await?),
                (None, Some(_)) => None,
            };
            let keys = match keys {
                Some(path) => bundle::read_keys(&path)?,
                None => target.client()?.get("/signing-keys").await?,
            };
            let keys = check::Trusted {
                keys,
                roots: roots.as_ref(),
                witnesses,
            };
            if batch::is_batch(&dir) {
                return batch::verify(&dir, &keys).await;
            }
            match since {
                None => check::verify(&dir, &keys, check::LogCheck { since: None }).await,
                Some(path) => {
                    let note =
                        String::from_utf8(folder::read_capped(&path, 64 * 1024, "the limit")?)
                            .map_err(|_| {
                                anyhow::anyhow!("{} is not a checkpoint", path.display())
                            })?;
                    let client = target.client()?;
                    check::verify(
                        &dir,
                        &keys,
                        check::LogCheck {
                            since: Some((note, &client)),
                        },
                    )
                    .await
                }
            }
        }
        Command::Transparency(TransparencyCommand::Monitor {
            state,
            keys,
            log_keys,
            tiles,
            witness_keys,
            quorum,
        }) => {
            let args = monitor::Monitor {
                state,
                keys: keys.map(|path| bundle::read_keys(&path)).transpose()?,
                log_keys,
                tiles,
                witnesses: check::Witnesses::from_args(&witness_keys, quorum)?,
            };
            let client = if args.needs_api() {
                Some(target.client()?)
            } else {
                None
            };
            monitor::monitor(client.as_ref(), args).await
        }
        Command::Runs(command) => runs::runs(&target.client()?, command).await,
        Command::Batch(command) => batch::batch(&target.client()?, command).await,
        Command::Configurations(command) => {
            let client = target.client()?;
            match command {
                ConfigurationsCommand::List(list) => configurations::list(&client, &list).await,
                ConfigurationsCommand::Versions { id, list } => {
                    configurations::versions(&client, id, &list).await
                }
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "docbundle",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

#[derive(Debug, Subcommand)]
enum TransparencyCommand {
    /// Fetches the newest checkpoint, verifies its signature and that the log only grew since
    /// the last one seen (kept in --state); a shrink or a fork fails (exit 4) and keeps the
    /// state as it was. Run it on a schedule.
    Monitor {
        /// Where the last checkpoint seen is kept.
        #[arg(long, default_value = "docbundle-checkpoint.txt")]
        state: PathBuf,
        /// The signing keys to trust (a JWKS saved from `GET /api/v1/signing-keys`); without
        /// it (or `--log-key`), the keys the service serves now.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// The log's verifier key to trust (`verifierKeys` of the checkpoint, kept out of
        /// band); repeatable.
        #[arg(long = "log-key", value_name = "VKEY")]
        log_keys: Vec<String>,
        /// Read the log from its C2SP tlog-tiles at this URL (the checkpoint's `tilesUrl`):
        /// the checkpoint, and the tiles its root and the consistency proof are computed
        /// from. With `--log-key` and a public URL, no call to the API at all.
        #[arg(long, value_name = "URL")]
        tiles: Option<String>,
        /// A witness whose cosignature the newest checkpoint must carry (its verifier key);
        /// repeatable.
        #[arg(long = "witness-key", value_name = "VKEY")]
        witness_keys: Vec<String>,
        /// How many of the `--witness-key` witnesses must have cosigned (default: all).
        #[arg(long, requires = "witness_keys")]
        quorum: Option<usize>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
