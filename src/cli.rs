//! The `slices` command line. `main` parses and sets up logging; the work is here.

use std::io::{BufRead, Read, Write};
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};

use crate::accounts::{self, Event, Grant, SignUpForm};
use crate::config::Config;
use crate::context::Context;
use crate::domain::Role;
use crate::web::Application;

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

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account. The password is asked for, or read from standard input.
    Add {
        /// The username (2 to 32 lowercase letters, digits, - or _).
        name: String,
        #[arg(long, default_value = "student")]
        role: Role,
        #[arg(long)]
        email: String,
        /// The person's name (default: the username).
        #[arg(long = "display-name")]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Register a node and write its agent's bundle: CA certificate, agent certificate and
    /// key (0600), and a sample agent.toml. Copy the folder to the host's /etc/slices-agent.
    Add {
        /// The node's name (one word, such as node1); its certificate names it.
        name: String,
        /// Where its agent listens, HOST:PORT.
        #[arg(long)]
        address: String,
        /// Where to write the bundle (default: ./NAME-agent).
        #[arg(long)]
        bundle: Option<PathBuf>,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// List the nodes.
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Measure the round trip to a node's agent: `ping` over one kept connection.
    Ping {
        name: String,
        /// How many pings.
        #[arg(long, short = 'n', default_value_t = 1000)]
        count: u32,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Bring a node's OS templates in step with the master's template folder.
    SyncTemplates {
        name: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Ask a node's agent what it has (node_info), and record the answer.
    Info {
        name: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TemplateCommand {
    /// Offer a template (NAME.tar.gz in the os-templates folder) with a description.
    Add {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// The templates offered, and whether the master has each file.
    List {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum GatewayCommand {
    /// Print what apply would change (for everyone, or one user), changing nothing.
    Plan {
        /// Only this user's account, files and keys (the map is always compared whole).
        #[arg(long)]
        user: Option<String>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Make the gateway match the database, and print what changed.
    Apply {
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Print the master's public key (made on first use), for the gateway's authorized_keys.
    Key {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Print the helper script the master runs on the gateway (install it at gateway_helper
    /// when the master logs in as an account other than root).
    Helper,
    /// Print the Apache lines that serve NAME.<domain> from the map.
    Apache {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// The last applies: when, for whom, what changed or why it failed.
    Runs {
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum MailCommand {
    /// Send a test message to ADDRESS through the configured transport, now.
    Test {
        address: String,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Jobs, failed first, then the newest.
    List {
        /// Only jobs in this state (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// One job, with every agent command it sent and the answers.
    Show {
        id: i64,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Run a failed or cancelled job again, from its last checkpoint.
    Retry {
        id: i64,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Cancel a job that has not finished.
    Cancel {
        id: i64,
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
        Ok(Config::load(
            self.config.as_deref(),
            std::env::vars(),
            &flags,
        )?)
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
        Command::User { what } => match what {
            UserCommand::Add {
                name,
                role,
                email,
                display_name,
                password_stdin,
                cfg,
            } => {
                let ctx = Context::open(cfg.load(&[])?)?;
                let password = read_password(password_stdin)?;
                let form = SignUpForm {
                    display_name: display_name.unwrap_or_else(|| name.clone()),
                    username: name,
                    email,
                    password_confirm: password.clone(),
                    password,
                };
                let ctx2 = ctx.clone();
                let user = tokio::task::spawn_blocking(move || {
                    let account = form.check()?;
                    accounts::create_account(
                        &ctx2.db,
                        &ctx2.policy,
                        account,
                        Grant {
                            role,
                            event: Event::AccountCreated,
                            creator: None,
                            origin: None,
                            invite: None,
                        },
                    )
                })
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .0;
                println!(
                    "Created {} account `{}` <{}>.",
                    user.role, user.username, user.email
                );
                Ok(())
            }
        },
        Command::Node { what } => node_command(what).await,
        Command::Jobs { what } => jobs_command(what),
        Command::Backup { file, cfg } => {
            anyhow::ensure!(
                !file.exists(),
                "{} exists already: choose a new file (a backup never overwrites)",
                file.display()
            );
            let config = cfg.load(&[])?;
            let db = config.data.join("slices.db");
            anyhow::ensure!(db.is_file(), "there is no database at {}", db.display());
            let started = std::time::Instant::now();
            // Its own read-only connection: one read transaction, so the copy is the database
            // at one moment while the master goes on writing.
            let conn = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            conn.busy_timeout(std::time::Duration::from_secs(30))?;
            conn.execute("VACUUM INTO ?1", [file.to_string_lossy()])
                .with_context(|| format!("backup to {}", file.display()))?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            println!(
                "Backed up the database to {} ({} kB, {} ms).",
                file.display(),
                size / 1024,
                started.elapsed().as_millis()
            );
            println!(
                "Keep with it, from {}: ca/ (the agents' certificate authority), secret.key, \
                 gateway/master_ed25519 and os-templates/. They are files, not in the database.",
                config.data.display()
            );
            Ok(())
        }
        Command::Gateway { what } => {
            tokio::task::spawn_blocking(move || gateway_command(what)).await?
        }
        Command::Template { what } => {
            let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
            match what {
                TemplateCommand::Add {
                    name,
                    description,
                    cfg,
                } => {
                    let name = crate::domain::TemplateName::parse(&name)
                        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
                    let description = crate::mail::one_line(&description);
                    let ctx = Context::open(cfg.load(&[])?)?;
                    ctx.db
                        .write(|tx| crate::slices::add_template(tx, &name, &description))
                        .map_err(e)?;
                    let file = ctx.config.os_templates_dir().join(name.file_name());
                    println!("Offering {name}.");
                    if !file.is_file() {
                        println!("Put the file at {} so nodes can be sent it (slices node sync-templates).", file.display());
                    }
                    Ok(())
                }
                TemplateCommand::List { cfg } => {
                    let ctx = Context::open(cfg.load(&[])?)?;
                    let all = ctx.db.read(crate::slices::template_choices).map_err(e)?;
                    if all.is_empty() {
                        println!(
                            "No templates offered yet: slices template add NAME --description TEXT"
                        );
                    }
                    for t in all {
                        let here = ctx
                            .config
                            .os_templates_dir()
                            .join(format!("{}.tar.gz", t.name))
                            .is_file();
                        println!(
                            "{}\t{}\t{}",
                            t.name,
                            if here { "file present" } else { "no file" },
                            t.description
                        );
                    }
                    Ok(())
                }
            }
        }
        Command::Mail {
            what: MailCommand::Test { address, cfg },
        } => {
            let email = crate::domain::Email::parse(&address)
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let ctx = Context::open(cfg.load(&[])?)?;
            let sender = crate::jobs::runner::MailSender::from_context(&ctx)?;
            let id = ctx
                .db
                .write(|tx| {
                    crate::mail::enqueue(
                        tx,
                        crate::mail::Kind::Test,
                        email.as_str(),
                        "",
                        serde_json::json!({}),
                        None,
                        None,
                    )
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            sender.send_now(&ctx.db).await;
            let m = ctx
                .db
                .read(|c| crate::mail::get(c, id))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .ok_or_else(|| anyhow::anyhow!("the test message vanished"))?;
            match m.state.as_str() {
                "sent" if ctx.config.mail_transport == "file" => {
                    println!("Sent: written to {}", ctx.config.data.join("mail").join(format!("{id}.eml")).display());
                    Ok(())
                }
                "sent" => {
                    println!("Sent to {} through {}:{}.", email, ctx.config.smtp_host, ctx.config.smtp_port);
                    Ok(())
                }
                "failed" => bail!("not sent, for good: {}", m.last_error),
                _ => bail!(
                    "not sent yet: {}\nA running master keeps trying; see the outbox in the staff pages.",
                    m.last_error
                ),
            }
        }
        Command::Healthcheck { cfg, url } => {
            let url = match url {
                Some(u) => u,
                None => {
                    let c = cfg.load(&[])?;
                    let mut local = c.clone();
                    if local.listen.ip().is_unspecified() {
                        local.listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    local.public_url.clear();
                    local.base_url()
                }
            };
            let cert = cfg.load(&[]).ok().and_then(|c| c.tls_cert);
            let body =
                tokio::task::spawn_blocking(move || http_get(&format!("{url}/healthz"), cert))
                    .await??;
            println!("{body}");
            Ok(())
        }
    }
}

fn jobs_command(what: JobsCommand) -> anyhow::Result<()> {
    use crate::jobs::queue;
    let e = |e: crate::error::Error| anyhow::anyhow!("{e}");
    match what {
        JobsCommand::List { state, limit, cfg } => {
            const STATES: [&str; 5] = ["queued", "running", "succeeded", "failed", "cancelled"];
            if let Some(s) = &state {
                anyhow::ensure!(
                    STATES.contains(&s.as_str()),
                    "a job state is one of {}",
                    STATES.join(", ")
                );
            }
            let ctx = Context::open(cfg.load(&[])?)?;
            let jobs = ctx
                .db
                .read(|c| queue::list(c, state.as_deref(), limit))
                .map_err(e)?;
            if jobs.is_empty() {
                println!("No jobs.");
            }
            for j in jobs {
                println!(
                    "{}\t{}\t{}\tattempt {}/{}\tslice {}\t{}",
                    j.id,
                    j.kind,
                    j.state,
                    j.attempts,
                    j.max_attempts,
                    j.slice_id
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    j.last_error
                );
            }
            Ok(())
        }
        JobsCommand::Show { id, cfg } => {
            let ctx = Context::open(cfg.load(&[])?)?;
            let (job, log) = ctx
                .db
                .read(|c| {
                    Ok::<_, crate::error::Error>((
                        queue::get(c, id)?,
                        queue::command_log(c, Some(id), None, 200)?,
                    ))
                })
                .map_err(e)?;
            let job = job.ok_or_else(|| anyhow::anyhow!("no job {id}"))?;
            println!("{}", serde_json::to_string_pretty(&job)?);
            println!("\nAgent commands (newest first):");
            for l in log {
                println!(
                    "  {}  {}  {} {}  -> {} {}  ({} ms)",
                    crate::clock::format_time(l.at),
                    l.node.unwrap_or_default(),
                    l.command,
                    l.arguments,
                    l.code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "no answer".into()),
                    l.returned,
                    l.duration_ms
                );
            }
            Ok(())
        }
        JobsCommand::Retry { id, cfg } => {
            let ctx = Context::open(cfg.load(&[])?)?;
            if ctx.db.write(|tx| queue::retry_now(tx, id)).map_err(e)? {
                println!("Job {id} is queued again; the running master picks it up.");
                Ok(())
            } else {
                bail!("job {id} is not failed or cancelled")
            }
        }
        JobsCommand::Cancel { id, cfg } => {
            let ctx = Context::open(cfg.load(&[])?)?;
            if ctx.db.write(|tx| queue::cancel(tx, id)).map_err(e)? {
                println!("Job {id} is cancelled.");
                Ok(())
            } else {
                bail!("job {id} has finished already (or does not exist)")
            }
        }
    }
}

/// The context, a registered node and the master's CA, for the commands that talk to a node.
fn node_and_ca(
    cfg: &ConfigArgs,
    name: &str,
) -> anyhow::Result<(Arc<Context>, crate::nodes::Node, crate::slave_link::pki::Ca)> {
    let ctx = Context::open(cfg.load(&[])?)?;
    let node = ctx
        .db
        .read(|c| crate::nodes::by_name(c, name))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("no node named {name}: slices node list"))?;
    let ca = crate::slave_link::pki::Ca::open_or_create(&ctx.config.data.join("ca"))?;
    Ok((ctx, node, ca))
}

async fn node_command(what: NodeCommand) -> anyhow::Result<()> {
    use crate::domain::{NodeAddress, NodeName};
    use crate::slave_link::pki;
    match what {
        NodeCommand::Add {
            name,
            address,
            bundle,
            cfg,
        } => {
            let name = NodeName::parse(&name).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let address =
                NodeAddress::parse(&address).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let ctx = Context::open(cfg.load(&[])?)?;
            let ca = pki::Ca::open_or_create(&ctx.config.data.join("ca"))?;
            let dir = bundle.unwrap_or_else(|| PathBuf::from(format!("{name}-agent")));
            anyhow::ensure!(
                !dir.join("agent.key").exists(),
                "{} already holds an agent key; choose another --bundle folder",
                dir.display()
            );
            let node = ctx
                .db
                .write(|tx| crate::nodes::add(tx, &name, &address))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = ca.issue_node(&name)?;
            pki::write_bundle(&dir, ca.cert_pem(), &id)?;
            let listen: std::net::SocketAddr = format!(
                "0.0.0.0:{}",
                address.as_str().rsplit(':').next().unwrap_or("7070")
            )
            .parse()?;
            std::fs::write(
                dir.join("agent.toml"),
                crate::agent::AgentConfig::sample(
                    &name,
                    listen,
                    std::path::Path::new("/etc/slices-agent"),
                ),
            )?;
            println!(
                "Registered node {} at {}.\nIts agent bundle is in {}/ (ca.pem, agent.pem, agent.key, agent.toml).\n\n\
                 On the host:\n    install -d -m 700 /etc/slices-agent && cp {}/* /etc/slices-agent/\n    \
                 slices-agent check --config /etc/slices-agent/agent.toml\n    \
                 slices-agent run --config /etc/slices-agent/agent.toml\n\n\
                 Then here: slices node info {}",
                node.name,
                node.address,
                dir.display(),
                dir.display(),
                node.name
            );
            Ok(())
        }
        NodeCommand::List { cfg } => {
            let ctx = Context::open(cfg.load(&[])?)?;
            let nodes = ctx
                .db
                .read(crate::nodes::list)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if nodes.is_empty() {
                println!("No nodes yet: slices node add NAME --address HOST:PORT");
            }
            for n in nodes {
                let seen = n
                    .last_seen_at
                    .map(crate::clock::format_time)
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{}\t{}\tlast seen {}{}",
                    n.name,
                    n.address,
                    seen,
                    n.last_error
                        .map(|e| format!("\tlast error: {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        NodeCommand::Ping { name, count, cfg } => {
            let (_ctx, node, ca) = node_and_ca(&cfg, &name)?;
            let connect = std::time::Instant::now();
            let mut link = crate::nodes::connect(&ca, &node, Duration::from_secs(10)).await?;
            let connect = connect.elapsed();
            let mut times = Vec::with_capacity(count as usize);
            for _ in 0..count.max(1) {
                let t = std::time::Instant::now();
                let r = link.call(&crate::slave_link::Command::Ping).await?;
                times.push(t.elapsed());
                anyhow::ensure!(r.is_ok(), "ping failed: {}", r.text());
            }
            times.sort();
            let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{} pings to {} over one connection (connect + TLS handshake {:.2} ms):\n  \
                 min {:.3} ms, median {:.3} ms, 99th percentile {:.3} ms, max {:.3} ms",
                times.len(),
                node.name,
                ms(connect),
                ms(times[0]),
                ms(pct(0.5)),
                ms(pct(0.99)),
                ms(*times.last().expect("at least one"))
            );
            Ok(())
        }
        NodeCommand::SyncTemplates { name, cfg } => {
            let (ctx, node, ca) = node_and_ca(&cfg, &name)?;
            let dir = Arc::new(crate::templates::TemplateDir::new(
                &ctx.config.os_templates_dir(),
            )?);
            let mut link = crate::nodes::connect(&ca, &node, Duration::from_secs(30)).await?;
            let started = std::time::Instant::now();
            let done = crate::nodes::sync_templates(&mut link, dir.clone())
                .await
                .map_err(|e| anyhow::anyhow!("syncing templates to {name}: {e}"))?;
            if done.is_empty() {
                println!("The master has no templates in {}.", dir.dir().display());
            }
            for s in &done {
                println!("{}\t{}\t{} bytes sent", s.name, s.outcome, s.bytes_sent);
            }
            println!("({:.1} s)", started.elapsed().as_secs_f64());
            Ok(())
        }
        NodeCommand::Info { name, cfg } => {
            let (ctx, node, ca) = node_and_ca(&cfg, &name)?;
            let result = async {
                let mut link = crate::nodes::connect(&ca, &node, Duration::from_secs(10)).await?;
                link.call(&crate::slave_link::Command::NodeInfo).await
            }
            .await;
            let outcome = match &result {
                Ok(r) if r.is_ok() => Ok(r.returned.first().cloned().unwrap_or_default()),
                Ok(r) => Err(r.text()),
                Err(e) => Err(e.to_string()),
            };
            ctx.db
                .write(|tx| {
                    crate::nodes::record_contact(
                        tx,
                        &name,
                        outcome.as_ref().map_err(|e| e.as_str()),
                    )
                })
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match outcome {
                Ok(info) => {
                    println!("{}", serde_json::to_string_pretty(&info)?);
                    Ok(())
                }
                Err(e) => bail!("node {name} did not answer: {e}"),
            }
        }
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let first = rpassword::prompt_password("Password (at least 10 characters): ")?;
    let second = rpassword::prompt_password("Password again: ")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

/// Holds the data folder for this process: two masters on one database would run each
/// other's jobs.
fn lock_data_folder(data: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data.join("master.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another slices master is running on {} (it holds {}); stop it first",
            data.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Runs the master until Ctrl-C or SIGTERM: the web interface and the job loop.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let ctx = Context::open(config)?;
    let _lock = lock_data_folder(&ctx.config.data)?;
    let embedded = crate::embedded::start(&ctx).await?;
    let app = Application::build(ctx.clone())?;
    let runner = crate::jobs::JobRunner::new(
        ctx.clone(),
        crate::jobs::RunnerConfig::from_config(&ctx.config)?,
    )?;
    let (stop_jobs, stopped) = tokio::sync::watch::channel(false);
    let jobs = tokio::spawn(runner.clone().run(stopped));
    let base = app.base_url().to_string();
    tracing::info!(url = %base, data = %ctx.config.data.display(), ms = started.elapsed().as_millis() as u64, "slices is ready");
    println!(
        "Slices is running at {base}/  (data in {})",
        ctx.config.data.display()
    );
    if embedded.is_some() {
        println!(
            "A built-in {} node `local` runs the slices (embedded_agent = \"{}\"; set it to \"off\" once real nodes are enrolled).",
            if ctx.config.embedded_agent == "sim" { "simulated" } else { "LXC" },
            ctx.config.embedded_agent
        );
    }
    announce_first_admin(&ctx, &base).await?;
    spawn_housekeeping(ctx.clone());
    app.run_until_stopped().await?;
    let _ = stop_jobs.send(true);
    let _ = jobs.await;
    tracing::info!("slices stopped");
    Ok(())
}

async fn announce_first_admin(ctx: &Arc<Context>, base: &str) -> anyhow::Result<()> {
    let c = ctx.clone();
    let token = tokio::task::spawn_blocking(move || accounts::first_admin_invite(&c.db))
        .await?
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(token) = token {
        println!(
            "\nThere is no admin account yet. Open this one-time link to create it (valid 7 days):\n\n    {base}/setup/{token}\n\n\
             (or run: slices user add NAME --role admin --email ADDRESS)\n"
        );
        let _ = std::io::stdout().flush();
    }
    Ok(())
}

/// Periodic clean-up: expired sessions.
fn spawn_housekeeping(ctx: Arc<Context>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let c = ctx.clone();
            let result = tokio::task::spawn_blocking(move || {
                c.db.write(|tx| accounts::sessions::purge_expired(tx, c.policy.life))
            })
            .await;
            match result {
                Ok(Ok(n)) if n > 0 => tracing::info!(sessions = n, "purged expired sessions"),
                Ok(Err(e)) => tracing::warn!(error = %e, "purging sessions"),
                _ => {}
            }
        }
    });
}

/// A minimal GET for the health check: plain HTTP, or HTTPS pinned to the configured
/// certificate. Returns the body of a 200 answer; anything else is an error.
pub fn http_get(url: &str, pinned_cert: Option<PathBuf>) -> anyhow::Result<String> {
    let (scheme, rest) = url.split_once("://").context("the URL needs a scheme")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hostport}"))?
        .next()
        .context("no address")?;
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("nothing answers at {hostport}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
    let mut raw = Vec::new();
    match scheme {
        "http" => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes())?;
            tcp.read_to_end(&mut raw)?;
        }
        "https" => {
            let cert =
                pinned_cert.context("HTTPS health checks need tls_cert in the configuration")?;
            let config = crate::web::tls::pinned_client_config(&cert)?;
            let name = rustls::pki_types::ServerName::try_from("slices.invalid")?.to_owned();
            let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(request.as_bytes())?;
            let _ = tls.read_to_end(&mut raw);
        }
        other => bail!("unknown scheme {other}"),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        bail!("unhealthy: {status} {body}");
    }
    Ok(body.trim().to_string())
}

fn gateway_command(what: GatewayCommand) -> anyhow::Result<()> {
    use crate::gateway::{Gateway, Scope, Settings};
    let scope = |user: Option<String>| -> anyhow::Result<Scope> {
        Ok(match user {
            None => Scope::All,
            Some(u) => Scope::User(
                crate::domain::Username::parse(&u).map_err(|e| anyhow::anyhow!("{}", e.message))?,
            ),
        })
    };
    match what {
        GatewayCommand::Plan { user, json, cfg } => {
            let ctx = Context::open(cfg.load(&[])?)?;
            let gw = Gateway::load(&ctx.config, &ctx.db)?;
            let plan = gw.plan(&ctx.db, &scope(user)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                println!("Gateway: {}", gw.settings().describe());
                print!("{plan}");
            }
            Ok(())
        }
        GatewayCommand::Apply { user, cfg } => {
            let ctx = Context::open(cfg.load(&[])?)?;
            let gw = Gateway::load(&ctx.config, &ctx.db)?;
            let report = gw.apply(&ctx.db, &scope(user)?)?;
            println!("Gateway: {}", gw.settings().describe());
            print!("{}", report.plan);
            println!(
                "Applied {} change{} in {} ms.",
                report.plan.changes.len(),
                if report.plan.changes.len() == 1 {
                    ""
                } else {
                    "s"
                },
                report.duration_ms
            );
            if !report.new_hop_keys.is_empty() {
                println!(
                    "New hop keys for {}: their slices are sent the public half by the running master.",
                    report.new_hop_keys.join(", ")
                );
            }
            Ok(())
        }
        GatewayCommand::Key { cfg } => {
            let config = cfg.load(&[])?;
            let settings = Settings::from_config(&config)?;
            let line = crate::gateway::master_key(&settings)?;
            println!("{line}");
            eprintln!(
                "Put this line in the gateway's /root/.ssh/authorized_keys (private half: {}).",
                settings.key_file.display()
            );
            Ok(())
        }
        GatewayCommand::Helper => {
            print!("{}", crate::gateway::helper());
            Ok(())
        }
        GatewayCommand::Apache { cfg } => {
            let config = cfg.load(&[])?;
            let settings = Settings::from_config(&config)?;
            let domain = crate::domain::DnsName::parse(&config.domain)
                .map_err(|e| anyhow::anyhow!("domain: {}", e.message))?;
            print!(
                "{}",
                crate::gateway::apache_config(&domain, &settings.map_file)
            );
            Ok(())
        }
        GatewayCommand::Runs { limit, cfg } => {
            let ctx = Context::open(cfg.load(&[])?)?;
            let runs = ctx
                .db
                .read(|c| crate::gateway::runs(c, limit))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if runs.is_empty() {
                println!("No gateway runs yet: `slices gateway apply` makes one.");
            }
            for r in runs {
                let when = crate::clock::format_time(r.at);
                if r.ok {
                    println!(
                        "{when}  {:<12} ok, {} change(s), {} ms",
                        r.scope, r.changes, r.duration_ms
                    );
                } else {
                    println!("{when}  {:<12} FAILED: {}", r.scope, r.error);
                }
            }
            Ok(())
        }
    }
}
