//! The `roost` binary: parse args, load config, init tracing, run, drain.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use roost::auth::HttpFetcher;
use roost::config::{Config, LogFormat};

/// Exit code for an invalid configuration (EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(version, about = "Per-user workspace containers behind a stock Traefik")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve forwardAuth and the route table.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and report every bad key.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// GET /healthz on the internal listener: exit 0 on 200, 1 otherwise.
    Healthcheck {
        /// Read `internal_listen` from this file.
        #[arg(long, short, default_value = roost::healthcheck::DEFAULT_CONFIG)]
        config: PathBuf,
        /// Check this URL instead (e.g. http://127.0.0.1:8081/healthz).
        #[arg(long, conflicts_with = "config")]
        url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = match &cli.command {
        Command::Serve { config } | Command::CheckConfig { config } => config,
        Command::Healthcheck { config, url } => return roost::healthcheck::run(config, url.as_deref()),
    };
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("roost: {}: {e}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::CheckConfig { .. } = cli.command {
        for warning in config.warnings() {
            eprintln!("roost: {}: warning: {warning}", path.display());
        }
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    init_tracing(config.server.log_format);
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "roost stopped");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn serve(config: Config) -> anyhow::Result<()> {
    let (listen, internal_listen) = (config.listen, config.internal_listen);
    let fetcher = Arc::new(HttpFetcher::new(config.oidc.http_timeout));
    let runtime = roost::workspace::runtime_for(&config);
    // Shared state first: a wrong ROOST_REDIS_URL or an unwritable
    // revocation file stops roost before any port is bound.
    let store = roost::store::open(&config).await?;
    tracing::info!(store = store.kind(), "shared state");
    let app = roost::app::App::new(config, fetcher, runtime, store);
    app.load().await?;
    let bind = |addr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))
    };
    let listeners = roost::server::Listeners {
        public: bind(listen).await?,
        internal: bind(internal_listen).await?,
    };
    tracing::info!(
        address = %listeners.public.local_addr()?,
        internal = %listeners.internal.local_addr()?,
        "roost listening"
    );
    roost::server::run(app, listeners, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
