//! `slices node`: register slave hosts, ask their agents, sync their templates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;

use super::ConfigArgs;
use crate::context::Context;

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
        /// The node's slice subnet (default: the next free /24 of node_subnet_pool; one that
        /// overlaps another node's is refused).
        #[arg(long)]
        subnet: Option<String>,
        /// The slices' bridge on the host.
        #[arg(long, default_value = "slbr0")]
        bridge: String,
        /// The host's public interface, for the slices' NAT (empty: none).
        #[arg(long, default_value = "eth0")]
        uplink: String,
        /// Where the agent listens (default: every address, the port of --address).
        #[arg(long)]
        listen: Option<String>,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Retire a node: refused while live slices are on it, unless --force (they are left
    /// failed). Stop its agent and run `slices-agent uninstall` on the host.
    Remove {
        name: String,
        /// Remove it with its live slices (asks for the node's name to be typed).
        #[arg(long)]
        force: bool,
        /// First move its slices to other nodes (it drains meanwhile); run remove again
        /// once they run there.
        #[arg(long = "move", conflicts_with = "force")]
        move_slices: bool,
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

/// The context, a registered node and the master's CA, for the commands that talk to a node.
fn node_and_ca(
    cfg: &ConfigArgs,
    name: &str,
) -> anyhow::Result<(Arc<Context>, crate::nodes::Node, crate::slave_link::pki::Ca)> {
    let ctx = Context::open_existing(cfg.load(&[])?)?;
    let node = ctx
        .db
        .read(|c| crate::nodes::by_name(c, name))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .ok_or_else(|| anyhow::anyhow!("no node named {name}: slices node list"))?;
    let ca = crate::slave_link::pki::Ca::open_or_create(&ctx.config.data.join("ca"))?;
    Ok((ctx, node, ca))
}

pub async fn run(what: NodeCommand) -> anyhow::Result<()> {
    use crate::domain::{NodeAddress, NodeName};
    use crate::slave_link::pki;
    match what {
        NodeCommand::Add {
            name,
            address,
            bundle,
            subnet,
            bridge,
            uplink,
            listen,
            cfg,
        } => {
            let name = NodeName::parse(&name).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let address =
                NodeAddress::parse(&address).map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let subnet = subnet
                .map(|s| {
                    crate::domain::Subnet::parse(&s).map_err(|e| anyhow::anyhow!("{}", e.message))
                })
                .transpose()?;
            let listen: std::net::SocketAddr = match listen {
                Some(l) => l.parse().map_err(|_| {
                    anyhow::anyhow!("--listen `{l}` is not an address such as 10.0.0.5:7070")
                })?,
                None => format!(
                    "0.0.0.0:{}",
                    address.as_str().rsplit(':').next().unwrap_or("7070")
                )
                .parse()?,
            };
            // The names are checked before anything is written.
            let net = crate::agent::NodeIfaces::new(&bridge, &uplink)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            let pool = crate::domain::Subnet::parse(&ctx.config.node_subnet_pool)
                .map_err(|e| anyhow::anyhow!("node_subnet_pool: {}", e.message))?;
            let ca = pki::Ca::open_or_create(&ctx.config.data.join("ca"))?;
            let dir = bundle.unwrap_or_else(|| PathBuf::from(format!("{name}-agent")));
            anyhow::ensure!(
                !dir.join("agent.key").exists(),
                "{} already holds an agent key; choose another --bundle folder",
                dir.display()
            );
            let (node, given) = ctx
                .db
                .write(|tx| crate::ops::nodes::enrol(tx, &name, &address, subnet, &pool))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = ca.issue_node(&name)?;
            let fp = id.fingerprint()?;
            ctx.db
                .write(|tx| crate::records::nodes::set_cert(tx, node.id, &fp))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            pki::write_bundle(&dir, ca.cert_pem(), &id)?;
            std::fs::write(
                dir.join("agent.toml"),
                crate::agent::AgentConfig::sample(
                    &name,
                    listen,
                    std::path::Path::new("/etc/slices-agent"),
                    &given,
                    &net,
                ),
            )?;
            println!(
                "Its slices get {}/{} on bridge {} (the gateway needs a route to it: slices \
                 gateway routes).",
                given.network(),
                given.prefix(),
                net.bridge
            );
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
        NodeCommand::Remove {
            name,
            force,
            move_slices,
            cfg,
        } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            if move_slices {
                let (moved, left) = ctx
                    .db
                    .write(|tx| crate::ops::nodes::move_off(tx, &name))
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!(
                    "Node {name} is draining; {moved} slice(s) are being moved to other nodes{}. \
                     Run `slices node remove {name}` again once they run there.",
                    if left > 0 {
                        format!(" ({left} still being set up or destroyed: move them when done)")
                    } else {
                        String::new()
                    }
                );
                return Ok(());
            }
            if force {
                use std::io::BufRead;
                eprint!("Type the node's name, {name}, to remove it with its live slices: ");
                let mut typed = String::new();
                std::io::stdin().lock().read_line(&mut typed)?;
                anyhow::ensure!(
                    typed.trim() == name,
                    "not removed: the name typed was not {name}"
                );
            }
            let (node, live) = ctx
                .db
                .write(|tx| crate::ops::nodes::remove(tx, &name, force))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "Removed node {}{}.",
                node.name,
                if live > 0 {
                    format!(" ({live} live slice(s) left failed)")
                } else {
                    String::new()
                }
            );
            // The agent is told to take its network policy away (its certificate, pinned to
            // the removed node, is refused from now on).
            let ca = crate::slave_link::pki::Ca::open_or_create(&ctx.config.data.join("ca"))?;
            let told = async {
                let mut link = crate::nodes::connect(&ca, &node, Duration::from_secs(10)).await?;
                link.call(&crate::slave_link::Command::Retire).await
            }
            .await;
            match told {
                Ok(r) if r.code == 0 => {
                    for line in &r.returned {
                        println!("  agent: {}", line.as_str().unwrap_or_default());
                    }
                    println!("On the host: stop and disable slices-agent.");
                }
                Ok(r) => println!(
                    "The agent refused to retire ({}): on the host, stop slices-agent, then \
                     `slices-agent uninstall`.",
                    r.text()
                ),
                Err(e) => println!(
                    "The agent could not be reached ({e}): on the host, stop slices-agent, \
                     then `slices-agent uninstall`."
                ),
            }
            Ok(())
        }
        NodeCommand::List { cfg } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
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
