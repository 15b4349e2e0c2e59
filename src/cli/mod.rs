//! The `slices` command line. `main` parses and sets up logging; each group of commands is a
//! file here, with its clap definition beside the code that runs it.

mod backup;
mod gateway;
mod health;
mod jobs;
mod mail;
mod node;
mod serve;
mod template;
mod user;

pub use gateway::GatewayCommand;
pub use health::http_get;
pub use jobs::JobsCommand;
pub use mail::MailCommand;
pub use node::NodeCommand;
pub use serve::serve;
pub use template::TemplateCommand;
pub use user::UserCommand;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;

#[derive(Parser, Debug)]
#[command(
    name = "slices",
    version,
    about = "Slices master: sign-up, approval and the staff UI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where the configuration comes from (each flag overrides the file and SLICES_* variables).
#[derive(Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// A TOML configuration file (see `slices config defaults`).
    #[arg(long, env = "SLICES_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// The data folder (database, keys).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the master: the web interface and its background work.
    Serve {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Address to listen on, such as 0.0.0.0:8080.
        #[arg(long)]
        listen: Option<String>,
        /// The embedded slave host: sim (the default), lxc (real containers here) or off.
        #[arg(long)]
        driver: Option<String>,
    },
    /// Print configuration.
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
    /// Manage accounts from the shell.
    User {
        #[command(subcommand)]
        what: UserCommand,
    },
    /// Manage slave hosts and their agents.
    Node {
        #[command(subcommand)]
        what: NodeCommand,
    },
    /// Background jobs: list, show (with the agent commands it sent), retry, cancel.
    Jobs {
        #[command(subcommand)]
        what: JobsCommand,
    },
    /// OS templates students can choose (the files live in the os-templates folder).
    Template {
        #[command(subcommand)]
        what: TemplateCommand,
    },
    /// The gateway host: what differs from the database (plan), put it right (apply), the
    /// master's key for it (key), the last runs (runs).
    Gateway {
        #[command(subcommand)]
        what: GatewayCommand,
    },
    /// Mail: send a test message now and say what happened.
    Mail {
        #[command(subcommand)]
        what: MailCommand,
    },
    /// Copy the database to FILE while the master runs (a consistent online snapshot).
    Backup {
        /// The new file (it must not exist).
        file: PathBuf,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Exit 0 when the running server answers /healthz, non-zero otherwise.
    Healthcheck {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// The address to ask instead of the configured one (http://host:port).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Every setting with its default and a comment, as TOML.
    Defaults,
    /// The settings in force, after the file, the environment and flags (secrets masked).
    Show {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

impl ConfigArgs {
    pub fn load(&self, extra: &[(&str, String)]) -> anyhow::Result<Config> {
        let mut flags: Vec<(&str, String)> = Vec::new();
        if let Some(d) = &self.data {
            flags.push(("data", d.display().to_string()));
        }
        flags.extend(extra.iter().cloned());
        // The file named, else the operator's own when there is one.
        let file = self.config.clone().or_else(|| {
            let system = crate::config::system_config_path();
            system.is_file().then_some(system)
        });
        Ok(Config::load(file.as_deref(), std::env::vars(), &flags)?)
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            cfg,
            listen,
            driver,
        } => {
            let mut extra: Vec<(&str, String)> =
                listen.into_iter().map(|l| ("listen", l)).collect();
            extra.extend(driver.map(|d| ("embedded_agent", d)));
            let config = cfg.load(&extra)?;
            serve(config).await
        }
        Command::Config { what } => {
            match what {
                ConfigCommand::Defaults => print!("{}", Config::defaults_toml()),
                ConfigCommand::Show { cfg } => {
                    for (k, v) in cfg.load(&[])?.effective() {
                        println!("{k} = {v}");
                    }
                }
            }
            Ok(())
        }
        Command::User { what } => user::run(what).await,
        Command::Node { what } => node::run(what).await,
        Command::Jobs { what } => jobs::run(what),
        Command::Backup { file, cfg } => backup::run(file, cfg),
        Command::Gateway { what } => {
            tokio::task::spawn_blocking(move || gateway::run(what)).await?
        }
        Command::Template { what } => template::run(what),
        Command::Mail { what } => mail::run(what).await,
        Command::Healthcheck { cfg, url } => health::run(cfg, url).await,
    }
}
