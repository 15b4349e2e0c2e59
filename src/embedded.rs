//! The embedded agent: `slices serve` with no configuration runs a slave host inside the
//! master, so a newcomer sees the whole flow on one machine. It is a real agent (the same
//! code, the same mutual TLS on loopback, a certificate from the master's CA), registered as
//! node `local`, with the `sim` driver by default (shown as simulated everywhere) or `lxc`
//! (`slices serve --driver lxc`, on a Linux host with LXC and the bridge it names).
//!
//! With the simulator and no template yet, a small placeholder template `demo-simulated` is
//! made and offered, so a request can be made at once.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;

use crate::agent::{Agent, AgentConfig, DriverKind};
use crate::context::Context;
use crate::domain::{NodeAddress, NodeName, Subnet, TemplateName};
use crate::slave_link::{pki, server, ServerOptions};

/// What the embedded agent runs, from `embedded_agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Sim,
    Lxc,
}

impl Mode {
    pub fn parse(s: &str) -> anyhow::Result<Mode> {
        match s {
            "off" => Ok(Mode::Off),
            "sim" => Ok(Mode::Sim),
            "lxc" => Ok(Mode::Lxc),
            other => anyhow::bail!("embedded_agent `{other}`: use off, sim or lxc"),
        }
    }
}

pub const NODE: &str = "local";
pub const DEMO_TEMPLATE: &str = "demo-simulated";

/// Starts the embedded agent (unless off) and registers it as node `local` at its address.
pub async fn start(ctx: &Arc<Context>) -> anyhow::Result<Option<String>> {
    let mode = Mode::parse(&ctx.config.embedded_agent)?;
    let driver = match mode {
        Mode::Off => return Ok(None),
        Mode::Sim => DriverKind::Sim,
        Mode::Lxc => DriverKind::Lxc,
    };
    // A master that already has real nodes (and never had the built-in one) is a production
    // master: it does not grow a simulated node on upgrade.
    let nodes = ctx
        .db
        .read(crate::nodes::list)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !nodes.is_empty() && !nodes.iter().any(|n| n.name == NODE) {
        tracing::info!(
            "real nodes are enrolled: no built-in node (set embedded_agent = \"off\" to say so)"
        );
        return Ok(None);
    }
    let data = &ctx.config.data;
    let root = match mode {
        Mode::Lxc => {
            let root = lxc_state_root(data)?;
            tracing::info!(folder = %root.display(), "the built-in lxc node keeps its containers here");
            root
        }
        _ => data.join("local-agent"),
    };
    let name = NodeName::parse(NODE).expect("a valid node name");
    let subnet = Subnet::parse(&ctx.config.embedded_subnet)
        .map_err(|e| anyhow::anyhow!("embedded_subnet: {}", e.message))?;
    let templates = ctx.config.os_templates_dir();
    std::fs::create_dir_all(&templates)
        .with_context(|| format!("cannot create {}", templates.display()))?;
    if mode == Mode::Sim {
        demo_template(ctx, &templates)?;
    }
    let run = crate::agent::run::SystemRunner {
        timeout: std::time::Duration::from_secs(30),
    };
    let mut network = crate::agent::netpolicy::NetworkPolicy::off();
    if mode == Mode::Lxc {
        // A newcomer's real slices on this machine: the bridge and NAT for the subnet are
        // set up here (as `slices-agent` does on a slave host), and taken away by
        // `slices-agent uninstall` with the same bridge.
        match crate::agent::lxc::ensure_bridge(&run, &ctx.config.embedded_bridge, &subnet) {
            Ok(true) => {
                tracing::info!(bridge = %ctx.config.embedded_bridge, %subnet, "made the slices' bridge")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(
                "cannot make the slices' bridge {}: {e}",
                ctx.config.embedded_bridge
            ),
        }
        network = crate::agent::netpolicy::NetworkPolicy {
            uplink: default_uplink(&run).unwrap_or_default(),
            ..Default::default()
        };
    }
    let ca = pki::Ca::open_or_create(&data.join("ca"))?;
    let id = ca.issue_node(&name)?;
    let fp = id.fingerprint()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    let unused = root.join("unused"); // in-process: the certificate is handed over in memory
    let cfg = AgentConfig {
        name: name.clone(),
        listen: listener.local_addr()?,
        ca: unused.clone(),
        cert: unused.clone(),
        key: unused,
        driver,
        // The master's own folder: the agent has every template at once, nothing to send.
        templates,
        state: root.join("state"),
        bridge: ctx.config.embedded_bridge.clone(),
        subnet,
        sim_op_ms: 300,
        command_timeout_secs: 300,
        // On a machine Slices is tried on, it leaves iptables alone; a slave host's own
        // slices-agent keeps NAT and the firewall ([network] in agent.toml).
        network,
        slice_ids: Default::default(),
    };
    let agent = Arc::new(Agent::from_config(cfg)?);
    if mode == Mode::Lxc {
        prepare_lxc(ctx, &agent);
    }
    let tls = pki::server_config(ca.cert_pem(), &id)?;
    // Served for as long as the master runs: were it ever to stop (a panic), it is started
    // again on the same socket.
    let socket = listener.into_std()?;
    tokio::spawn(async move {
        loop {
            let listener = match socket
                .try_clone()
                .and_then(tokio::net::TcpListener::from_std)
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "the built-in agent's socket");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let served = tokio::spawn(server::serve(
                listener,
                tls.clone(),
                agent.clone(),
                ServerOptions::default(),
            ))
            .await;
            tracing::error!(?served, "the built-in agent stopped; starting it again");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    let addr = NodeAddress::parse(&address).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    ctx.db
        .write(|tx| {
            let node = match crate::nodes::by_name(tx, NODE)? {
                Some(n) => {
                    crate::nodes::set_address(tx, &name, &addr)?;
                    n
                }
                None => crate::nodes::add(tx, &name, &addr)?,
            };
            // A new certificate at each start: the pin follows it.
            crate::records::nodes::set_cert(tx, node.id, &fp)?;
            Ok::<_, crate::error::Error>(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(node = NODE, %address, driver = ?driver, "embedded agent started");
    Ok(Some(address))
}

/// With the simulator: a tiny placeholder template, offered if no template is.
/// Where the built-in lxc node keeps its containers: outside the data folder, which stays
/// private (0700), because an unprivileged container's root (a mapped uid) must pass through
/// every folder above its files. One folder per data folder (a hash of its path), under
/// `/var/lib/slices-lxc`, which others may pass but not list.
pub fn lxc_state_root(data: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::PermissionsExt;
    let full = std::fs::canonicalize(data)
        .with_context(|| format!("cannot resolve {}", data.display()))?;
    let digest = Sha256::digest(full.as_os_str().as_encoded_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    // (Not /var/lib/slices: that is where a master's own data folder goes.)
    let base = std::path::Path::new("/var/lib/slices-lxc");
    let root = base.join(format!("local-{tag}"));
    for dir in [base, root.as_path()] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    }
    std::fs::write(root.join("data-folder"), format!("{}\n", full.display()))?;
    Ok(root)
}

/// The host's interface towards the default route (the slices' NAT goes out there).
fn default_uplink(run: &dyn crate::agent::run::Runner) -> Option<String> {
    let out = run
        .run("ip", &crate::argv!["-o", "-4", "route", "show", "default"])
        .ok()?;
    let mut words = out.stdout.split_whitespace();
    words.find(|w| *w == "dev")?;
    let dev = words.next()?;
    crate::agent::netpolicy::iface(dev).ok().map(str::to_string)
}

/// The OS template `serve --driver lxc` builds when it has none: Debian 12 with sshd and sudo,
/// from Debian's packages (`scripts/lab/os-template.sh`, compiled in).
pub const LXC_TEMPLATE: &str = "debian-12-ssh-sudo_amd64";
const OS_TEMPLATE_SCRIPT: &str = include_str!("../scripts/lab/os-template.sh");

/// Puts the host in order for the built-in lxc node and says, one line each, what it cannot:
/// the network policy (forwarding, NAT, firewall), what `slices-agent check` finds missing
/// (less the certificate files this in-process agent does not use), and an OS template,
/// built in the background from Debian's packages when there is none.
fn prepare_lxc(ctx: &Arc<Context>, agent: &Arc<Agent>) {
    if let Err(e) = agent.apply_network() {
        tracing::warn!("the slices' NAT and firewall: {e:#}");
    }
    let in_memory = [
        "CA certificate",
        "agent certificate",
        "agent key",
        "templates",
    ];
    for item in agent.check() {
        if !item.ok && !in_memory.contains(&item.what.as_str()) {
            tracing::warn!("built-in lxc node: {}: {}", item.what, item.detail);
        }
    }
    let have = agent.templates().map(|t| !t.is_empty()).unwrap_or(false);
    if have {
        return;
    }
    let ctx = ctx.clone();
    let file = ctx
        .config
        .os_templates_dir()
        .join(format!("{LXC_TEMPLATE}.tar.gz"));
    tracing::info!(
        "no OS template yet: building {LXC_TEMPLATE} from Debian's packages (about a minute; slices can be asked for meanwhile)"
    );
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(OS_TEMPLATE_SCRIPT)
            .arg("os-template")
            .arg(&file)
            .stdin(std::process::Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let name = TemplateName::parse(LXC_TEMPLATE).expect("a valid template name");
                let offered = ctx.db.write(|tx| {
                    crate::ops::slices::add_template(tx, &name, "Debian 12 with sshd and sudo")
                });
                match offered {
                    Ok(()) => tracing::info!(
                        secs = started.elapsed().as_secs(),
                        "OS template {LXC_TEMPLATE} built and offered"
                    ),
                    Err(e) => tracing::warn!("OS template {LXC_TEMPLATE} built, not offered: {e}"),
                }
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").to_string();
                tracing::warn!("could not build an OS template: {last} (scripts/lab/os-template.sh builds one by hand)");
            }
            Err(e) => tracing::warn!("could not build an OS template: bash: {e}"),
        }
    });
}

fn demo_template(ctx: &Context, dir: &std::path::Path) -> anyhow::Result<()> {
    let name = TemplateName::parse(DEMO_TEMPLATE).expect("a valid template name");
    let offered = ctx
        .db
        .read(crate::ops::slices::template_choices)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if !offered.is_empty() {
        return Ok(());
    }
    let file = dir.join(name.file_name());
    if !file.exists() {
        // An empty tar archive, gzipped: a valid template file with nothing in it.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[0u8; 1024])?;
        std::fs::write(&file, enc.finish()?)?;
    }
    ctx.db
        .write(|tx| {
            crate::ops::slices::add_template(
                tx,
                &name,
                "Simulated Debian (the built-in demo node makes no real container)",
            )
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_placeholder_is_a_valid_gzipped_empty_tar() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::Config::load(
            None,
            Vec::<(String, String)>::new(),
            &[("data", dir.path().display().to_string())],
        )
        .unwrap();
        let ctx = crate::context::Context::open(cfg).unwrap();
        super::demo_template(&ctx, dir.path()).unwrap();
        let file = dir.path().join("demo-simulated.tar.gz");
        let out = std::process::Command::new("tar")
            .args(["-tzf", file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty());
        let offered = ctx.db.read(crate::ops::slices::template_choices).unwrap();
        assert_eq!(offered[0].name, "demo-simulated");
    }
}
