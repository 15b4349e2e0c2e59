//! The slave host's network policy for its slices (the seed's "Network Address Translation"
//! and its TODO "firewall to close all ports except 22 and 80 (443)"):
//!
//! - slices leave through the host's public interface by NAT (MASQUERADE), when `uplink` is set;
//! - new connections into the slices' bridge are accepted only on the open TCP ports (22, 80
//!   and 443 by default) and ICMP; everything else to them is dropped;
//! - slices may open connections out.
//!
//! The rules live in the agent's own chains (`SLICES-IN`, `SLICES-OUT` in `filter`,
//! `SLICES-NAT` in `nat`), written whole and atomically by `iptables-restore --noflush` (which
//! replaces those chains and touches nothing else), and reached by one jump each from
//! FORWARD and POSTROUTING, added only when missing. Applying twice changes nothing;
//! [`drift`] says what differs from the policy. Every value on these command lines is checked
//! first: interface names by [`iface`], the subnet and ports by their types.

use serde::{Deserialize, Serialize};

use super::driver::{Change, DResult, DriverError};
use super::run::Runner;
use crate::domain::Subnet;

/// The policy, from `[network]` in agent.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// Whether the agent keeps the rules in place (lxc and vzctl drivers).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The host's public interface for the slices' NAT (empty: no NAT).
    #[serde(default)]
    pub uplink: String,
    /// TCP ports open to slices from outside.
    #[serde(default = "default_ports")]
    pub open_ports: Vec<u16>,
}

fn yes() -> bool {
    true
}

fn default_ports() -> Vec<u16> {
    vec![22, 80, 443]
}

impl Default for NetworkPolicy {
    fn default() -> Self {
        NetworkPolicy {
            enabled: true,
            uplink: String::new(),
            open_ports: default_ports(),
        }
    }
}

impl NetworkPolicy {
    /// For agents that run inside a test or the master process: no rules.
    pub fn off() -> NetworkPolicy {
        NetworkPolicy {
            enabled: false,
            ..NetworkPolicy::default()
        }
    }
}

/// A network interface name as the kernel allows it: 1 to 15 of `[A-Za-z0-9_.-]`, not `.`/`..`.
pub fn iface(name: &str) -> Result<&str, DriverError> {
    let ok = (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(name)
    } else {
        Err(DriverError::msg(format!(
            "`{name}` is not an interface name (1 to 15 letters, digits, `_`, `.` or `-`)"
        )))
    }
}

/// One rule: (table, chain, rule arguments after the chain).
type Rule = (&'static str, &'static str, Vec<String>);

struct Plan {
    /// The rules of our own chains, in order.
    chains: Vec<Rule>,
    /// The jumps into them from the built-in chains.
    hooks: Vec<Rule>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn plan(policy: &NetworkPolicy, bridge: &str, subnet: &Subnet) -> DResult<Plan> {
    let bridge = iface(bridge)?;
    let net = format!("{}/{}", subnet.network(), subnet.prefix());
    let mut chains: Vec<Rule> = vec![
        (
            "filter",
            "SLICES-IN",
            words("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
        ),
        ("filter", "SLICES-IN", words("-p icmp -j ACCEPT")),
    ];
    let mut ports = policy.open_ports.clone();
    ports.sort_unstable();
    ports.dedup();
    // multiport takes at most 15 ports per rule.
    for group in ports.chunks(15) {
        let list = group
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        chains.push((
            "filter",
            "SLICES-IN",
            words(&format!("-p tcp -m multiport --dports {list} -j ACCEPT")),
        ));
    }
    chains.push(("filter", "SLICES-IN", words("-j DROP")));
    chains.push(("filter", "SLICES-OUT", words("-j ACCEPT")));
    let mut hooks: Vec<Rule> = vec![
        (
            "filter",
            "FORWARD",
            words(&format!("-o {bridge} -j SLICES-IN")),
        ),
        (
            "filter",
            "FORWARD",
            words(&format!("-i {bridge} -j SLICES-OUT")),
        ),
    ];
    if !policy.uplink.is_empty() {
        let uplink = iface(&policy.uplink)?;
        chains.push((
            "nat",
            "SLICES-NAT",
            words(&format!("-s {net} ! -d {net} -o {uplink} -j MASQUERADE")),
        ));
        hooks.push(("nat", "POSTROUTING", words("-j SLICES-NAT")));
    }
    Ok(Plan { chains, hooks })
}

/// The `iptables-restore --noflush` input that replaces our chains whole.
fn restore_text(plan: &Plan) -> String {
    let mut out = String::new();
    for table in ["filter", "nat"] {
        let ours: Vec<&'static str> = match table {
            "filter" => vec!["SLICES-IN", "SLICES-OUT"],
            _ => vec!["SLICES-NAT"],
        };
        out.push_str(&format!("*{table}\n"));
        for chain in &ours {
            out.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for (t, chain, args) in &plan.chains {
            if *t == table {
                out.push_str(&format!("-A {chain} {}\n", args.join(" ")));
            }
        }
        out.push_str("COMMIT\n");
    }
    out
}

fn iptables(table: &str, op: &str, chain: &str, args: &[String]) -> Vec<String> {
    let mut a = vec![
        "-w".to_string(),
        "-t".to_string(),
        table.to_string(),
        op.to_string(),
        chain.to_string(),
    ];
    a.extend(args.iter().cloned());
    a
}

/// Puts the policy in place: our chains replaced whole, the jumps added where missing, and
/// forwarding on. `AlreadySo` when nothing was missing or different.
pub fn apply(
    run: &dyn Runner,
    policy: &NetworkPolicy,
    bridge: &str,
    subnet: &Subnet,
) -> DResult<Change> {
    if !policy.enabled {
        return Ok(Change::AlreadySo);
    }
    let p = plan(policy, bridge, subnet)?;
    let before = drift_of(run, &p)?;
    run.run_with(
        "iptables-restore",
        &["-w".to_string(), "--noflush".to_string()],
        Some(restore_text(&p).as_bytes()),
    )?
    .ok("iptables-restore")?;
    for (table, chain, args) in &p.hooks {
        let present = run
            .run("iptables", &iptables(table, "-C", chain, args))?
            .code
            == 0;
        if !present {
            let mut insert = iptables(table, "-I", chain, &[]);
            insert.push("1".into());
            insert.extend(args.iter().cloned());
            run.run("iptables", &insert)?.ok("iptables -I")?;
        }
    }
    run.run(
        "sysctl",
        &[
            "-q".to_string(),
            "-w".to_string(),
            "net.ipv4.ip_forward=1".to_string(),
        ],
    )?
    .ok("turning on IPv4 forwarding")?;
    Ok(if before.is_empty() {
        Change::AlreadySo
    } else {
        Change::Done
    })
}

/// What differs from the policy, one line each (empty: in place).
pub fn drift(
    run: &dyn Runner,
    policy: &NetworkPolicy,
    bridge: &str,
    subnet: &Subnet,
) -> DResult<Vec<String>> {
    if !policy.enabled {
        return Ok(vec![]);
    }
    drift_of(run, &plan(policy, bridge, subnet)?)
}

fn drift_of(run: &dyn Runner, p: &Plan) -> DResult<Vec<String>> {
    let mut out = Vec::new();
    for (table, chain, args) in p.chains.iter().chain(p.hooks.iter()) {
        if run
            .run("iptables", &iptables(table, "-C", chain, args))?
            .code
            != 0
        {
            out.push(format!("missing: -t {table} -A {chain} {}", args.join(" ")));
        }
    }
    // Rules of ours that the policy does not have (someone added one by hand).
    for (table, chain) in [
        ("filter", "SLICES-IN"),
        ("filter", "SLICES-OUT"),
        ("nat", "SLICES-NAT"),
    ] {
        let listed = run.run("iptables", &iptables(table, "-S", chain, &[]))?;
        if listed.code != 0 {
            continue; // no such chain: the missing rules say it
        }
        let have = listed
            .stdout
            .lines()
            .filter(|l| l.starts_with("-A "))
            .count();
        let want = p
            .chains
            .iter()
            .filter(|(t, c, _)| *t == table && *c == chain)
            .count();
        if have > want {
            out.push(format!(
                "{} extra rule(s) in -t {table} {chain}",
                have - want
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::run::RecordingRunner;

    fn subnet() -> Subnet {
        Subnet::parse("10.88.0.0/24").unwrap()
    }

    #[test]
    fn the_rules_open_only_the_listed_ports_and_nat_through_the_uplink() {
        let policy = NetworkPolicy {
            uplink: "eth0".into(),
            ..NetworkPolicy::default()
        };
        let p = plan(&policy, "slbr0", &subnet()).unwrap();
        let text = restore_text(&p);
        assert!(text.contains(":SLICES-IN - [0:0]\n"));
        assert!(text.contains("-A SLICES-IN -p tcp -m multiport --dports 22,80,443 -j ACCEPT\n"));
        assert!(text.contains("-A SLICES-IN -j DROP\n"));
        assert!(text
            .contains("-A SLICES-NAT -s 10.88.0.0/24 ! -d 10.88.0.0/24 -o eth0 -j MASQUERADE\n"));
        // Nothing but our chains: no built-in chain is declared (that would flush it).
        for builtin in ["FORWARD", "INPUT", "POSTROUTING", "PREROUTING", "OUTPUT"] {
            assert!(!text.contains(&format!(":{builtin}")), "{builtin}");
        }
        let hooks: Vec<String> = p
            .hooks
            .iter()
            .map(|(_, c, a)| format!("{c} {}", a.join(" ")))
            .collect();
        assert_eq!(
            hooks,
            vec![
                "FORWARD -o slbr0 -j SLICES-IN",
                "FORWARD -i slbr0 -j SLICES-OUT",
                "POSTROUTING -j SLICES-NAT"
            ]
        );
    }

    #[test]
    fn bad_interface_names_never_reach_a_command_line() {
        for bad in [
            "",
            "eth0; reboot",
            "-j ACCEPT",
            "averyveryverylongname",
            "a b",
            "..",
        ] {
            let policy = NetworkPolicy {
                uplink: bad.into(),
                ..NetworkPolicy::default()
            };
            let run = RecordingRunner::default();
            let r = apply(&run, &policy, bad, &subnet());
            assert!(r.is_err(), "{bad:?}");
            assert!(run.calls.lock().unwrap().is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn applying_adds_only_missing_jumps() {
        let run = RecordingRunner::default();
        // Every -C succeeds (no answers set): all in place, so no -I.
        let policy = NetworkPolicy::default();
        apply(&run, &policy, "slbr0", &subnet()).unwrap();
        let lines = run.lines();
        assert!(
            lines.iter().any(|l| l == "iptables-restore -w --noflush"),
            "{lines:?}"
        );
        assert!(!lines.iter().any(|l| l.contains(" -I ")), "{lines:?}");
        // With a jump missing (its -C fails), exactly that one is inserted first in its chain.
        let run = RecordingRunner::default();
        run.answer(
            "iptables",
            "-w -t filter -C FORWARD -o slbr0",
            crate::agent::run::Output {
                code: 1,
                stdout: String::new(),
                stderr: String::new(),
            },
        );
        apply(&run, &policy, "slbr0", &subnet()).unwrap();
        let inserts: Vec<String> = run
            .lines()
            .into_iter()
            .filter(|l| l.contains(" -I "))
            .collect();
        assert_eq!(
            inserts,
            vec!["iptables -w -t filter -I FORWARD 1 -o slbr0 -j SLICES-IN"]
        );
    }
}
