//! `parley-server`: with no arguments, a development backend on 127.0.0.1:8080 with
//! everything under ./parley-data.
#![allow(
    clippy::print_stderr,
    reason = "a person reads start-up errors on stderr"
)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use parley_server::config::Settings;
use parley_server::server::start;

/// Parley's end-to-end encrypted messaging backend.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, env = "PARLEY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the database, signing keys and e-mail outbox.
    #[arg(long, env = "PARLEY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file (domain, PostgreSQL, TLS, SMTP, ...).
    #[arg(long, env = "PARLEY_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        // Colour only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let args = Args::parse();
    let settings = match Settings::resolve(args.config.as_deref(), args.listen, args.data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("parley-server: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let data_dir = settings.data_dir.clone();
        let server = start(settings).await?;
        tracing::info!(
            "parley-server listening on {scheme}://{} (data in {})",
            server.addr,
            data_dir.display()
        );
        let stopper = server.stopper();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("shutting down");
                stopper.stop();
            }
        });
        server.wait().await.context("serving")
    })
}
