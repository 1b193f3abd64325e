//! The `dspex` command: `setup`, `doctor`, `run`, `status`, `cache prune`.

mod doctor;
mod run;
mod setup;
mod signature;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Typed DSPy from Rust: set up, check and try an installation.
#[derive(Debug, Parser)]
#[command(name = "dspex", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision the managed Python environment now (for container builds), with progress.
    Setup {
        /// Also install Ray (`requirements-ray.lock`), for workers on a Ray cluster.
        #[arg(long)]
        ray: bool,
    },
    /// Check this installation and say how to fix what is wrong (exit status 1 if anything is).
    Doctor {
        /// Skip starting a real worker (the slowest check, a few seconds).
        #[arg(long)]
        no_worker: bool,
    },
    /// Run a signature in DSPy's string syntax with the configured LM (DSPEX_LM, dspex.toml).
    Run(run::RunArgs),
    /// List this user's live runs and their workers.
    Status,
    /// The cache of managed environments.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Remove the environments earlier locks left behind, and unfinished ones.
    Prune,
}

/// What a command failed with: printed as `error: ...`, exit status 1 (2 for bad arguments).
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    usage: bool,
}

impl Failure {
    /// A failure of the command itself.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            usage: false,
        }
    }

    /// A mistake in the arguments.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            usage: true,
        }
    }
}

impl From<dspex::Error> for Failure {
    fn from(error: dspex::Error) -> Self {
        Failure::new(dspex::error_chain(&error))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Setup { ray } => setup::setup(ray),
            Command::Doctor { no_worker } => doctor::doctor(!no_worker).await,
            Command::Run(args) => run::run(args).await,
            Command::Status => status::status(),
            Command::Cache {
                command: CacheCommand::Prune,
            } => setup::prune(),
        }
    });
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(if failure.usage { 2 } else { 1 })
        }
    }
}
