//! The slave host's network policy for its slices (the seed's "Network Address Translation"
//! and its TODO "firewall to close all ports except 22 and 80 (443)"):
//!
//! - slices leave through the host's public interface by NAT (MASQUERADE), when `uplink` is set;
//! - new connections into the slices' bridge are accepted only on the open TCP ports (22, 80
//!   and 443 by default) and ICMP; everything else to them is dropped;
//! - slices may open connections out, but never to the node itself (only the `host_ports`
//!   named, none by default): not the agent's port, not any other service of the node;
//! - slices reach each other only through the host, so the same rules hold between them: on
//!   the open ports (`between_slices = "open_ports"`, the default) or not at all (`"none"`).
//!   Each slice's port on the bridge is isolated (the lxc driver sets it), so two slices never
//!   talk straight over the bridge; the host answers ARP for the subnet on the bridge
//!   (`proxy_arp_pvlan`) and routes between them, and never tells a slice to go around it
//!   (its ICMP redirects to the bridge are dropped).
//!
//! The rules live in the agent's own chains, named after its bridge so two agents on one host
//! keep apart (`SL-BRIDGE-IN`, `SL-BRIDGE-OUT` in `filter`, `SL-BRIDGE-NAT` in `nat`), written
//! whole and atomically by `iptables-restore --noflush` (which replaces those chains and
//! touches nothing else), and reached by one jump each from FORWARD and POSTROUTING, added only
//! when missing. Applying twice changes nothing; [`drift`] says what differs from the policy;
//! [`uninstall`] takes it all away again and puts IPv4 forwarding back as the agent found it.
//! Every value on these command lines is checked first: interface names by [`iface`], the
//! subnet and ports by their types.

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
    /// Ports of the node itself (TCP and UDP) slices may reach, such as 53 when the node
    /// answers DNS for them. None by default: a slice never reaches the agent's port or any
    /// other service of its node.
    #[serde(default)]
    pub host_ports: Vec<u16>,
    /// What slices may reach of each other.
    #[serde(default)]
    pub between_slices: BetweenSlices,
    /// How often the agent checks its rules and puts them back if they changed (a firewall
    /// reload, a rule deleted by hand), in seconds.
    #[serde(default = "default_reassert")]
    pub reassert_secs: u64,
}

fn default_reassert() -> u64 {
    30
}

/// What slices on one node may reach of each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetweenSlices {
    /// The ports open to the outside (`open_ports`), and ICMP.
    #[default]
    OpenPorts,
    /// Nothing.
    None,
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
            host_ports: Vec::new(),
            between_slices: BetweenSlices::OpenPorts,
            reassert_secs: default_reassert(),
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
type Rule = (&'static str, String, Vec<String>);

/// The agent's own chains, named after its bridge (at most 15 characters, so a name is at most
/// 22: iptables allows 28).
struct Chains {
    input: String,
    output: String,
    /// What slices may reach of the node itself (INPUT from the bridge).
    host: String,
    nat: String,
}

fn chains(bridge: &str) -> Chains {
    Chains {
        input: format!("SL-{bridge}-IN"),
        output: format!("SL-{bridge}-OUT"),
        host: format!("SL-{bridge}-HOST"),
        nat: format!("SL-{bridge}-NAT"),
    }
}

/// The chain names of versions before they were named per bridge.
const LEGACY: [(&str, &str); 3] = [
    ("filter", "SLICES-IN"),
    ("filter", "SLICES-OUT"),
    ("nat", "SLICES-NAT"),
];

struct Plan {
    /// The rules of our own chains, in order.
    chains: Vec<Rule>,
    /// The jumps into them from the built-in chains.
    hooks: Vec<Rule>,
    /// Our chains, by table.
    own: Vec<(&'static str, String)>,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Ports for `-m multiport --dports`: sorted, each once, at most 15 to a list (multiport's
/// limit).
fn port_lists(ports: &[u16]) -> Vec<String> {
    let mut ports = ports.to_vec();
    ports.sort_unstable();
    ports.dedup();
    ports
        .chunks(15)
        .map(|group| {
            group
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn plan(policy: &NetworkPolicy, bridge: &str, subnet: &Subnet) -> DResult<Plan> {
    let bridge = iface(bridge)?;
    let c = chains(bridge);
    let net = format!("{}/{}", subnet.network(), subnet.prefix());
    let mut rules: Vec<Rule> = Vec::new();
    if policy.between_slices == BetweenSlices::None {
        // From a slice to a slice: nothing at all.
        rules.push((
            "filter",
            c.input.clone(),
            words(&format!("-i {bridge} -j DROP")),
        ));
    }
    rules.push((
        "filter",
        c.input.clone(),
        words("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    ));
    rules.push(("filter", c.input.clone(), words("-p icmp -j ACCEPT")));
    for list in port_lists(&policy.open_ports) {
        rules.push((
            "filter",
            c.input.clone(),
            words(&format!("-p tcp -m multiport --dports {list} -j ACCEPT")),
        ));
    }
    rules.push(("filter", c.input.clone(), words("-j DROP")));
    // From a slice to a slice (routed by the host between isolated ports): the rules for
    // what comes in, whichever of the two jumps FORWARD takes first.
    rules.push((
        "filter",
        c.output.clone(),
        words(&format!("-o {bridge} -j {}", c.input)),
    ));
    rules.push(("filter", c.output.clone(), words("-j ACCEPT")));
    // The node itself: answers to what it asked, ICMP, and only the ports named for slices.
    rules.push((
        "filter",
        c.host.clone(),
        words("-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    ));
    rules.push(("filter", c.host.clone(), words("-p icmp -j ACCEPT")));
    for list in port_lists(&policy.host_ports) {
        for proto in ["tcp", "udp"] {
            rules.push((
                "filter",
                c.host.clone(),
                words(&format!(
                    "-p {proto} -m multiport --dports {list} -j ACCEPT"
                )),
            ));
        }
    }
    rules.push(("filter", c.host.clone(), words("-j DROP")));
    // The jumps into our chains; the one into NAT only when there is an uplink.
    let mut all_jumps = jumps(bridge, &c);
    let nat_jump = all_jumps.pop().expect("the NAT jump comes last");
    let mut hooks = all_jumps;
    if !policy.uplink.is_empty() {
        let uplink = iface(&policy.uplink)?;
        rules.push((
            "nat",
            c.nat.clone(),
            words(&format!("-s {net} ! -d {net} -o {uplink} -j MASQUERADE")),
        ));
        hooks.push(nat_jump);
    }
    Ok(Plan {
        chains: rules,
        hooks,
        own: vec![
            ("filter", c.input),
            ("filter", c.output),
            ("filter", c.host),
            ("nat", c.nat),
        ],
    })
}

/// The `iptables-restore --noflush` input that replaces our chains whole.
fn restore_text(plan: &Plan) -> String {
    let mut out = String::new();
    for table in ["filter", "nat"] {
        out.push_str(&format!("*{table}\n"));
        for (_, chain) in plan.own.iter().filter(|(t, _)| *t == table) {
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

/// The file in the agent's state folder that holds IPv4 forwarding as the agent first found
/// it (`0` or `1`), so that `uninstall` can put it back.
const FORWARDING_WAS: &str = "ip_forward.before";

/// Removes the jumps into a chain while there are any (at most a few: one is the rule).
fn delete_jump(run: &dyn Runner, table: &str, chain: &str, args: &[String]) -> DResult<bool> {
    let mut removed = false;
    for _ in 0..4 {
        if run
            .run("iptables", &iptables(table, "-C", chain, args))?
            .code
            != 0
        {
            break;
        }
        run.run("iptables", &iptables(table, "-D", chain, args))?
            .ok("iptables -D")?;
        removed = true;
    }
    Ok(removed)
}

/// Empties and removes one of our chains, if it is there.
fn delete_chain(run: &dyn Runner, table: &str, chain: &str) -> DResult<bool> {
    if run
        .run("iptables", &iptables(table, "-S", chain, &[]))?
        .code
        != 0
    {
        return Ok(false);
    }
    run.run("iptables", &iptables(table, "-F", chain, &[]))?
        .ok("iptables -F")?;
    // Still referenced (another agent of an old version): it stays, empty.
    Ok(run
        .run("iptables", &iptables(table, "-X", chain, &[]))?
        .code
        == 0)
}

/// The jumps an agent on `bridge` may have added, whatever its policy said.
fn jumps(bridge: &str, c: &Chains) -> Vec<Rule> {
    vec![
        (
            "filter",
            "FORWARD".into(),
            words(&format!("-o {bridge} -j {}", c.input)),
        ),
        (
            "filter",
            "FORWARD".into(),
            words(&format!("-i {bridge} -j {}", c.output)),
        ),
        (
            "filter",
            "INPUT".into(),
            words(&format!("-i {bridge} -j {}", c.host)),
        ),
        // Routing between isolated ports: never tell a slice to go around the host.
        (
            "filter",
            "OUTPUT".into(),
            words(&format!("-o {bridge} -p icmp --icmp-type redirect -j DROP")),
        ),
        ("nat", "POSTROUTING".into(), words(&format!("-j {}", c.nat))),
    ]
}

/// Takes away what versions before per-bridge names left for this bridge.
fn remove_legacy(run: &dyn Runner, bridge: &str) -> DResult<()> {
    if run
        .run("iptables", &iptables("filter", "-S", LEGACY[0].1, &[]))?
        .code
        != 0
    {
        return Ok(());
    }
    let old = Chains {
        input: LEGACY[0].1.into(),
        output: LEGACY[1].1.into(),
        // Older versions had no such chain; its jump is never there.
        host: "SLICES-HOST".into(),
        nat: LEGACY[2].1.into(),
    };
    for (table, chain, args) in jumps(bridge, &old) {
        delete_jump(run, table, &chain, &args)?;
    }
    for (table, chain) in LEGACY {
        delete_chain(run, table, chain)?;
    }
    Ok(())
}

/// Puts the policy in place: our chains replaced whole, the jumps added where missing, and
/// forwarding on (as it was found is noted first, once). `AlreadySo` when nothing was
/// missing or different.
pub fn apply(
    run: &dyn Runner,
    policy: &NetworkPolicy,
    bridge: &str,
    subnet: &Subnet,
    state: &std::path::Path,
) -> DResult<Change> {
    if !policy.enabled {
        return Ok(Change::AlreadySo);
    }
    let p = plan(policy, bridge, subnet)?;
    remove_legacy(run, bridge)?;
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
    let note = state.join(FORWARDING_WAS);
    if !note.exists() {
        let was = run.run(
            "sysctl",
            &["-n".to_string(), "net.ipv4.ip_forward".to_string()],
        )?;
        let was = was.stdout.trim();
        if was == "0" || was == "1" {
            std::fs::create_dir_all(state).map_err(|e| DriverError::msg(e.to_string()))?;
            std::fs::write(&note, was).map_err(|e| DriverError::msg(e.to_string()))?;
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
    let pvlan = proxy_arp_pvlan(policy);
    run.run("sysctl", &pvlan_arg(bridge, pvlan))?
        .ok("setting proxy_arp_pvlan on the bridge")?;
    Ok(if before.is_empty() {
        Change::AlreadySo
    } else {
        Change::Done
    })
}

/// Takes the policy away: the jumps, our chains, and IPv4 forwarding back as the agent first
/// found it. Says what it did, a line each.
pub fn uninstall(run: &dyn Runner, bridge: &str, state: &std::path::Path) -> DResult<Vec<String>> {
    let bridge = iface(bridge)?;
    let c = chains(bridge);
    let mut done = Vec::new();
    for (table, chain, args) in jumps(bridge, &c) {
        if delete_jump(run, table, &chain, &args)? {
            done.push(format!(
                "removed the jump -t {table} {chain} {}",
                args.join(" ")
            ));
        }
    }
    // OUT first: it jumps to IN, which cannot go while referenced.
    for (table, chain) in [
        ("filter", &c.output),
        ("filter", &c.input),
        ("filter", &c.host),
        ("nat", &c.nat),
    ] {
        if delete_chain(run, table, chain)? {
            done.push(format!("removed the chain -t {table} {chain}"));
        }
    }
    remove_legacy(run, bridge)?;
    if run.run("sysctl", &pvlan_arg(bridge, false))?.code == 0 {
        done.push(format!("proxy ARP between {bridge}'s ports off"));
    }
    let note = state.join(FORWARDING_WAS);
    if let Ok(was) = std::fs::read_to_string(&note) {
        let was = was.trim();
        if was == "0" || was == "1" {
            run.run(
                "sysctl",
                &[
                    "-q".to_string(),
                    "-w".to_string(),
                    format!("net.ipv4.ip_forward={was}"),
                ],
            )?
            .ok("putting IPv4 forwarding back")?;
            done.push(format!("IPv4 forwarding back to {was}, as it was found"));
        }
        let _ = std::fs::remove_file(&note);
    }
    Ok(done)
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
    let mut out = drift_of(run, &plan(policy, bridge, subnet)?)?;
    let key = format!("net/ipv4/conf/{}/proxy_arp_pvlan", iface(bridge)?);
    let now = run.run("sysctl", &["-n".to_string(), key.clone()])?;
    let want = if proxy_arp_pvlan(policy) { "1" } else { "0" };
    if now.code == 0 && now.stdout.trim() != want {
        out.push(format!("{key} is {}, not {want}", now.stdout.trim()));
    }
    Ok(out)
}

/// Whether the host answers ARP between the bridge's isolated ports (so that slices reach each
/// other through it, where the rules decide).
fn proxy_arp_pvlan(policy: &NetworkPolicy) -> bool {
    policy.between_slices == BetweenSlices::OpenPorts
}

/// `sysctl -q -w net/ipv4/conf/BRIDGE/proxy_arp_pvlan=V` (the slash form: a bridge's name
/// may hold a dot).
fn pvlan_arg(bridge: &str, on: bool) -> Vec<String> {
    vec![
        "-q".to_string(),
        "-w".to_string(),
        format!(
            "net/ipv4/conf/{bridge}/proxy_arp_pvlan={}",
            if on { 1 } else { 0 }
        ),
    ]
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
    for (table, chain) in &p.own {
        let (table, chain) = (*table, chain.as_str());
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
            .filter(|(t, c, _)| *t == table && c == chain)
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
        assert!(text.contains(":SL-slbr0-IN - [0:0]\n"));
        assert!(text.contains("-A SL-slbr0-IN -p tcp -m multiport --dports 22,80,443 -j ACCEPT\n"));
        assert!(text.contains("-A SL-slbr0-IN -j DROP\n"));
        assert!(text
            .contains("-A SL-slbr0-NAT -s 10.88.0.0/24 ! -d 10.88.0.0/24 -o eth0 -j MASQUERADE\n"));
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
                "FORWARD -o slbr0 -j SL-slbr0-IN",
                "FORWARD -i slbr0 -j SL-slbr0-OUT",
                "INPUT -i slbr0 -j SL-slbr0-HOST",
                "OUTPUT -o slbr0 -p icmp --icmp-type redirect -j DROP",
                "POSTROUTING -j SL-slbr0-NAT"
            ]
        );
    }

    #[test]
    fn slices_meet_on_the_open_ports_or_not_at_all() {
        let open = restore_text(&plan(&NetworkPolicy::default(), "slbr0", &subnet()).unwrap());
        // Slice to slice goes through the rules for what comes in, which end in DROP.
        assert!(
            open.contains("-A SL-slbr0-OUT -o slbr0 -j SL-slbr0-IN\n-A SL-slbr0-OUT -j ACCEPT\n")
        );
        assert!(!open.contains("-A SL-slbr0-IN -i slbr0 -j DROP"));
        let none = NetworkPolicy {
            between_slices: BetweenSlices::None,
            ..NetworkPolicy::default()
        };
        let walled = restore_text(&plan(&none, "slbr0", &subnet()).unwrap());
        // First in the chain: not even an answer or a ping from one slice to another.
        assert!(walled.contains(":SL-slbr0-IN - [0:0]\n"));
        let first = walled
            .lines()
            .find(|l| l.starts_with("-A SL-slbr0-IN"))
            .unwrap();
        assert_eq!(first, "-A SL-slbr0-IN -i slbr0 -j DROP");
        // And the host does not answer ARP between the ports.
        assert_eq!(
            pvlan_arg("slbr0", proxy_arp_pvlan(&none))[2],
            "net/ipv4/conf/slbr0/proxy_arp_pvlan=0"
        );
        assert_eq!(
            pvlan_arg("slbr0", proxy_arp_pvlan(&NetworkPolicy::default()))[2],
            "net/ipv4/conf/slbr0/proxy_arp_pvlan=1"
        );
        let parsed: NetworkPolicy = toml::from_str("between_slices = \"none\"").unwrap();
        assert_eq!(parsed.between_slices, BetweenSlices::None);
        assert!(toml::from_str::<NetworkPolicy>("between_slices = \"all\"").is_err());
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
            let r = apply(
                &run,
                &policy,
                bad,
                &subnet(),
                std::path::Path::new("/nonexistent"),
            );
            assert!(r.is_err(), "{bad:?}");
            assert!(run.calls.lock().unwrap().is_empty(), "{bad:?}");
        }
    }

    #[test]
    fn applying_adds_only_missing_jumps() {
        let run = RecordingRunner::default();
        // Every -C succeeds (no answers set): all in place, so no -I.
        let policy = NetworkPolicy::default();
        apply(
            &run,
            &policy,
            "slbr0",
            &subnet(),
            std::path::Path::new("/nonexistent/state"),
        )
        .unwrap();
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
        apply(
            &run,
            &policy,
            "slbr0",
            &subnet(),
            std::path::Path::new("/nonexistent/state"),
        )
        .unwrap();
        let inserts: Vec<String> = run
            .lines()
            .into_iter()
            .filter(|l| l.contains(" -I "))
            .collect();
        assert_eq!(
            inserts,
            vec!["iptables -w -t filter -I FORWARD 1 -o slbr0 -j SL-slbr0-IN"]
        );
    }
}
