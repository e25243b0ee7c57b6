//! `oncely`: the payment demo, and the admin commands for an oncely SQLite store (queue stats,
//! dead letters, inbox garbage collection).
//!
//! Every rule (what a mode writes when, retries, leases, dead letters, expiry) lives in the core
//! crate; this binary only parses arguments, calls the core and prints.

mod admin;
mod dashboard;
mod demo;
mod error;
mod fmt;
mod progress;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::CliError;

/// At-most-once, at-least-once and exactly-once delivery: the demo and the store admin commands.
///
/// Exit status: 0 on success; 1 on a failure (a missing file, an unknown id, a storage error, a
/// delivery guarantee broken in the demo); 2 on a usage error or a store that is not a usable
/// oncely store (corrupt_store).
#[derive(Debug, Parser)]
#[command(name = "oncely", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a demo scenario that shows the three delivery guarantees with numbers.
    #[command(subcommand)]
    Demo(demo::Scenario),
    /// Show the outbox queues of a store: ready, scheduled, leased and dead messages.
    Stats(StatsArgs),
    /// List, inspect, replay or purge the dead letters of a store's outbox queues.
    #[command(name = "dead-letters", subcommand)]
    DeadLetters(DeadLetters),
    /// Delete the inbox records whose retention (dedup window) has run out.
    Gc(GcArgs),
    /// Serve the store over HTTP: a dashboard at / and /metrics in the Prometheus text format.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The oncely store: an SQLite file, or a PostgreSQL URL (postgres://user@host/db). It must
    /// exist.
    #[arg(long, value_name = "PATH|URL")]
    db: PathBuf,
    /// The address to listen on. Any address but a loopback one needs a token.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9464")]
    bind: std::net::SocketAddr,
    /// The token every request must carry (`Authorization: Bearer TOKEN`); required when bound
    /// to an address other than loopback. Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, env = "ONCELY_SERVE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Show message payloads and stored inbox results in the dashboard (they may hold personal
    /// data; without this flag only their size is shown).
    #[arg(long)]
    show_payloads: bool,
}

/// The store an admin command works on. It must exist: these commands never create a store.
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// The oncely store: an SQLite file, or a PostgreSQL URL (postgres://user@host/db). It must
    /// exist.
    #[arg(long, value_name = "PATH|URL")]
    db: PathBuf,
    /// Only this outbox queue (default: every queue holding messages).
    #[arg(long, value_name = "Q")]
    queue: Option<String>,
}

#[derive(Debug, Args)]
struct StatsArgs {
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum DeadLetters {
    /// List the dead letters, oldest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Show one dead letter in full: why it died, its last error, headers and payload.
    Show {
        /// The message id.
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Put dead letters back in their queue, attempts reset, deliverable now: the named ones, or
    /// every one with --all (with progress on a terminal, plain lines otherwise).
    Replay {
        /// The message ids.
        ids: Vec<String>,
        /// Every dead letter of the selected queues.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete the named dead letters, or every dead letter when no id is given.
    Purge {
        /// The message ids (none: all dead letters of the selected queues).
        ids: Vec<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Args)]
struct GcArgs {
    /// The oncely store: an SQLite file, or a PostgreSQL URL (postgres://user@host/db). It must
    /// exist.
    #[arg(long, value_name = "PATH|URL")]
    db: PathBuf,
    /// Only this inbox scope. Not supported yet: the core collects the expired records of every
    /// scope at once, so the command refuses this option rather than silently ignore it.
    #[arg(long, value_name = "S")]
    scope: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Demo(scenario) => demo::run(scenario).await,
        Command::Stats(args) => admin::stats(&args.store).await,
        Command::DeadLetters(cmd) => match cmd {
            DeadLetters::List { store } => admin::dead_list(&store).await,
            DeadLetters::Show { id, store } => admin::dead_show(&store, &id).await,
            DeadLetters::Replay { ids, all, store } => admin::dead_replay(&store, ids, all).await,
            DeadLetters::Purge { ids, store } => admin::dead_purge(&store, ids).await,
        },
        Command::Gc(args) => admin::gc(&args.db, args.scope.as_deref()).await,
        Command::Serve(args) => {
            serve::serve(serve::ServeOptions {
                db: args.db,
                bind: args.bind,
                token: args.token,
                show_payloads: args.show_payloads,
            })
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
