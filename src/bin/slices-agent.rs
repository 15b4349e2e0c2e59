//! `slices-agent`: the daemon on each slave host. See `slices-agent --help`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use slices::agent::{Agent, AgentConfig};
use slices::slave_link::{pki, server, ServerOptions};

#[derive(Parser)]
#[command(
    name = "slices-agent",
    version,
    about = "Slices agent: answers the master's commands on a slave host"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the master's commands.
    Run {
        #[arg(long, default_value = "/etc/slices-agent/agent.toml")]
        config: PathBuf,
    },
    /// Say whether this host has what the driver needs, and what is missing.
    Check {
        #[arg(long, default_value = "/etc/slices-agent/agent.toml")]
        config: PathBuf,
    },
    /// Take away what the agent put on this host (its firewall and NAT chains and jumps, IPv4
    /// forwarding back as it was found) and say what it left (containers). Stop the agent first.
    Uninstall {
        #[arg(long, default_value = "/etc/slices-agent/agent.toml")]
        config: PathBuf,
    },
}

async fn run(config: PathBuf) -> anyhow::Result<()> {
    let cfg = AgentConfig::load(&config)?;
    let ca = std::fs::read_to_string(&cfg.ca)
        .map_err(|e| anyhow::anyhow!("cannot read the CA certificate {}: {e}", cfg.ca.display()))?;
    let id = pki::load_identity(&cfg.cert, &cfg.key)?;
    let tls = pki::server_config(&ca, &id)?;
    let listen = cfg.listen;
    let opts = ServerOptions {
        command_timeout: std::time::Duration::from_secs(cfg.command_timeout_secs),
        ..ServerOptions::default()
    };
    let agent = Agent::from_config(cfg)?;
    match agent.apply_network()? {
        Some(change) => tracing::info!(?change, "network policy in place"),
        None => tracing::info!("network policy: not kept by this agent"),
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let agent = Arc::new(agent);
    // The slices that should run and do not (after a host reboot) start again, while the
    // agent already answers.
    let back = agent.clone();
    tokio::task::spawn_blocking(move || {
        for line in back.bring_back() {
            tracing::warn!("{line}");
        }
    });
    // The network policy, put back whenever it drifted.
    let every = agent.config.network.reassert_secs.max(1);
    let keeper = agent.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(every));
        tick.tick().await;
        loop {
            tick.tick().await;
            let k = keeper.clone();
            match tokio::task::spawn_blocking(move || k.reassert_network()).await {
                Ok(Ok(drift)) if !drift.is_empty() => {
                    tracing::warn!(drift = %drift.join("; "), "network policy had changed: put back")
                }
                Ok(Err(e)) => tracing::error!("network policy: {e:#}"),
                _ => {}
            }
        }
    });
    tracing::info!(
        %listen,
        node = %agent.config.name,
        driver = agent.driver().kind(),
        "slices-agent is ready"
    );
    tokio::select! {
        r = server::serve(listener, tls, agent, opts) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
    }
    Ok(())
}

fn check(config: PathBuf) -> anyhow::Result<bool> {
    let cfg = AgentConfig::load(&config)?;
    let agent = Agent::from_config(cfg)?;
    let mut all = true;
    println!("slices-agent check: driver {}", agent.driver().kind());
    for item in agent.check() {
        println!(
            "  [{}] {}: {}",
            if item.ok { " ok " } else { "MISS" },
            item.what,
            item.detail
        );
        all &= item.ok;
    }
    Ok(all)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // A log that cannot be written (its disk full) loses lines; it never stops the
        // service (reporting the failure on stderr would panic in the request being served).
        .log_internal_errors(false)
        // Colours only for a person at a terminal: a log file or the journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Cmd::Run { config } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(16)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(config))),
        Cmd::Uninstall { config } => AgentConfig::load(&config)
            .and_then(Agent::from_config)
            .and_then(|agent| agent.uninstall())
            .map(|said| {
                for line in said {
                    println!("{line}");
                }
            }),
        Cmd::Check { config } => match check(config) {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::from(1),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
