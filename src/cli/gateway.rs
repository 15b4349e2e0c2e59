//! `slices gateway`: plan, apply, keys, helper and Apache lines for the gateway host.

use clap::Subcommand;

use super::ConfigArgs;
use crate::context::Context;

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
    /// Print the helper script the master runs on the gateway, made for the configured users
    /// folder and map file (install it at gateway_helper when the master logs in as an
    /// account other than root); the sudoers line it needs goes to standard error.
    Helper {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Print the routes the gateway needs: each node's slice subnet through that node.
    Routes {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Print the block the helper keeps at the end of the gateway's sshd configuration (no
    /// forwarding of any kind for slice users); gateway applies put it there.
    SshdConfig,
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

pub fn run(what: GatewayCommand) -> anyhow::Result<()> {
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
            let ctx = Context::open_existing(cfg.load(&[])?)?;
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
            let ctx = Context::open_existing(cfg.load(&[])?)?;
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
            let home = match &settings.target {
                crate::gateway::TargetSpec::Ssh { user, .. } if user == "root" => "/root".into(),
                crate::gateway::TargetSpec::Ssh { user, .. } => format!("~{user}"),
                _ => "~ACCOUNT (the account gateway_target logs in as)".into(),
            };
            eprintln!(
                "Put this line in the gateway's {home}/.ssh/authorized_keys (private half: {}).",
                settings.key_file.display()
            );
            Ok(())
        }
        GatewayCommand::Helper { cfg } => {
            let config = cfg.load(&[])?;
            let settings = Settings::from_config(&config)?;
            print!(
                "{}",
                crate::gateway::helper(
                    &settings.users_dir,
                    &settings.map_file,
                    &settings.sshd_config
                )
            );
            let account = match &settings.target {
                crate::gateway::TargetSpec::Ssh { user, .. } if user != "root" => user.clone(),
                _ => "ACCOUNT".to_string(),
            };
            eprintln!(
                "Install it as root at {0} (chmod 755), and let the master's account run it in \
                 /etc/sudoers.d/slices:\n  {1}",
                settings.helper,
                crate::gateway::sudoers_line(&account, &settings.helper)
            );
            Ok(())
        }
        GatewayCommand::Routes { cfg } => {
            let ctx = Context::open_existing(cfg.load(&[])?)?;
            let routes = ctx
                .db
                .read(crate::ops::nodes::routes)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if routes.is_empty() {
                println!("# No node's subnet is known yet (slices node add, or node info).");
            }
            for (node, subnet, host) in routes {
                let net = format!("{}/{}", subnet.network(), subnet.prefix());
                if host.parse::<std::net::Ipv4Addr>().is_ok() {
                    println!("ip route replace {net} via {host}    # node {node}");
                } else {
                    println!("ip route replace {net} via $(getent ahostsv4 {host} | awk 'NR==1 {{print $1}}')    # node {node}");
                }
            }
            Ok(())
        }
        GatewayCommand::SshdConfig => {
            print!("{}", crate::gateway::sshd_block());
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
            let ctx = Context::open_existing(cfg.load(&[])?)?;
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
