//! The whole system on one machine, as separate hosts: the master (`slices serve`, the real
//! binary) and a real SMTP server on this host; two slave hosts, each a network namespace with
//! its own `slices-agent` (lxc driver), bridge, NAT and firewall; a gateway with a real sshd
//! and Apache. Everything goes through the master's HTTP interface, as people use it: two
//! students sign up (confirming by the mailed link), add their keys and ask; staff approve;
//! the master is killed and started again while the first slice is being made, and the
//! second slice's agent is killed while it works (the job is retried); both slices run, on
//! different nodes; each student ssh's through the gateway into their own slice and their
//! web page is served by subdomain through Apache; the mails arrive; one slice is destroyed
//! and everything of it is gone; the other is moved to the other node by staff and then
//! reinstalled by its student, and the 20 MB the student wrote in /home is there after each
//! (its SHA-256 read through the gateway). Every namespace, container and process is removed at the
//! end, also when the test fails.
//!
//! The gateway is a namespace of its own too (its accounts and files are this machine's, as
//! the hosts share one file system).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gateway_lab::{free_port, Lab};
use crate::http::{browser, form};
use crate::netns::{HostForwarding, NsHost};
use crate::smtp::Smtp;
use crate::system::*;

const TEMPLATE: &str = "debian-12-ssh_amd64";

/// A slave host: its namespace, agent process and files.
struct Node {
    ns: NsHost,
    dir: PathBuf,
    agent: Option<Child>,
}

impl Node {
    fn start_agent(&mut self) {
        let cfg = self.dir.join("agent.toml");
        let child = self
            .ns
            .cmd(
                env!("CARGO_BIN_EXE_slices-agent"),
                &["run", "--config", cfg.to_str().unwrap()],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.agent = Some(child);
        wait_for_port(&format!("{}:7070", self.ns.addr), 20);
    }

    fn kill_agent(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn lxc_path(&self) -> PathBuf {
        self.dir.join("state/lxc")
    }

    /// The containers LXC knows on this node.
    fn containers(&self) -> Vec<String> {
        let out = self
            .ns
            .cmd("lxc-ls", &["-P", self.lxc_path().to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_agent();
        let p = self.lxc_path();
        let p = p.to_str().unwrap();
        for c in self.containers() {
            let _ = self.ns.cmd("lxc-stop", &["-k", "-P", p, "-n", &c]).output();
            let _ = self.ns.cmd("lxc-destroy", &["-P", p, "-n", &c]).output();
        }
        detach_loops_under(&self.dir);
        // The namespace goes with `ns`, after this.
    }
}

struct Master {
    child: Child,
    base: String,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn slices_cmd(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_slices"));
    c.env("SLICES_CONFIG", config);
    c
}

/// Starts the master; returns it and the first-admin link, if it printed one.
fn start_master(config: &Path) -> (Master, Option<String>) {
    let mut child = slices_cmd(config)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let (mut base, mut setup) = (String::new(), None);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
            if !base.is_empty() {
                break; // no admin link comes on a second start
            }
            continue;
        };
        if let Some(rest) = line.strip_prefix("Slices is running at ") {
            base = rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
        }
        if line.contains("/setup/") {
            setup = Some(line.trim().to_string());
            break;
        }
    }
    assert!(!base.is_empty(), "the master did not start");
    (Master { child, base }, setup)
}

/// Reads the master's database (WAL: safe while it runs).
fn query(data: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        data.join("slices.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
        .unwrap()
        .unwrap_or(-1)
}

fn text(data: &Path, sql: &str) -> String {
    let c = rusqlite::Connection::open_with_flags(
        data.join("slices.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(sql, [], |r| r.get::<_, Option<String>>(0))
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_system_across_hosts() {
    let Some(_alone) = alone("the multi-host system test").await else {
        return;
    };
    let work = tempfile::Builder::new()
        .prefix("slices-sys-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let w = work.path();
    // This host routes between the namespaces (gateway -> node subnets): forwarding on for the
    // test, put back as it was found at the end.
    let _forwarding = HostForwarding::on();
    // The gateway: a host of its own, reached at 10.102.3.2; it reaches the slices through
    // this host, which routes each node's subnet to that node.
    let gw_host = NsHost::new("slsys-gw", "slsys-gw", "10.102.3", None);
    let lab = Lab::start_at(&gw_host.addr, Some(&gw_host.name));
    let smtp_port = free_port();
    let smtp = Smtp::start(smtp_port, &w.join("maildir"));
    // The master's configuration: real nodes only, the gateway over SSH, mail over SMTP.
    let data = w.join("data");
    let config = w.join("slices.toml");
    let mut toml = format!(
        "data = \"{}\"\nlisten = \"127.0.0.1:0\"\nembedded_agent = \"off\"\ndomain = \"example.test\"\n\
         gateway_host = \"{}\"\ngateway_port = {}\nmail_transport = \"smtp\"\nsmtp_host = \"127.0.0.1\"\n\
         smtp_port = {smtp_port}\nsmtp_tls = \"none\"\nmail_retry_base_secs = 1\nnode_health_secs = 1\n\
         job_retry_base_secs = 1\njob_lease_secs = 10\ntemplate_sync_minutes = 0\nusage_minutes = 0\n\
         agent_timeout_secs = 120\nnode_subnet_pool = \"10.103.0.0/16\"\nreconcile_seconds = 5\n",
        data.display(),
        lab.ip,
        lab.ssh_port
    );
    for (k, v) in lab.settings() {
        toml.push_str(&format!("{k} = \"{v}\"\n"));
    }
    std::fs::write(&config, toml).unwrap();

    // The master's data, as its first start makes it; then enrol both nodes with the CLI (the
    // bundle, from the master's CA), and offer the template.
    crate::serve::make_data(Some(&config), None);
    // Each node is enrolled first, with no subnet: the master gives each the next free one of
    // its pool (no two overlap); the host is then made with what its bundle says, and its
    // agent runs on the bundle's own agent.toml.
    let mut nodes: Vec<Node> = Vec::new();
    let mut subnets = Vec::new();
    for (i, (name, short)) in [("node-a", "a"), ("node-b", "b")].into_iter().enumerate() {
        let n = i + 1;
        let dir = w.join(name);
        std::fs::create_dir_all(dir.join("templates")).unwrap();
        std::os::unix::fs::symlink(template(), dir.join(format!("templates/{TEMPLATE}.tar.gz")))
            .unwrap();
        let bundle = dir.join("bundle");
        let addr = format!("10.102.{n}.2");
        let bridge = format!("slbr-sys{short}");
        let out = slices_cmd(&config)
            .args(["node", "add", name, "--address", &format!("{addr}:7070")])
            .args(["--bridge", &bridge, "--uplink", "eth0"])
            .args(["--listen", &format!("{addr}:7070"), "--bundle"])
            .arg(&bundle)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let toml = std::fs::read_to_string(bundle.join("agent.toml")).unwrap();
        let subnet = toml
            .lines()
            .find_map(|l| l.strip_prefix("subnet = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("the bundle names the node's subnet")
            .to_string();
        let sub = slices::domain::Subnet::parse(&subnet).unwrap();
        let cidr = format!("{}/{}", sub.gateway(), sub.prefix());
        let ns = NsHost::new(
            &format!("slsys-{short}"),
            &format!("slsys-{short}"),
            &format!("10.102.{n}"),
            Some((&bridge, &cidr, &subnet)),
        );
        std::fs::write(
            dir.join("agent.toml"),
            toml.replace("/etc/slices-agent", bundle.to_str().unwrap())
                .replace(
                    "/var/lib/slices-agent/templates",
                    dir.join("templates").to_str().unwrap(),
                )
                .replace(
                    "\"/var/lib/slices-agent\"",
                    &format!("\"{}\"", dir.join("state").display()),
                )
                .replace("[network]", "command_timeout_secs = 120\n\n[network]"),
        )
        .unwrap();
        subnets.push(subnet);
        nodes.push(Node {
            ns,
            dir,
            agent: None,
        });
    }
    assert_eq!(
        subnets,
        ["10.103.0.0/24", "10.103.1.0/24"],
        "each node its own subnet"
    );
    // The routes the gateway needs, as the master prints them.
    let out = slices_cmd(&config)
        .args(["gateway", "routes"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&out.stdout);
    assert!(
        routes.contains("ip route replace 10.103.0.0/24 via 10.102.1.2")
            && routes.contains("ip route replace 10.103.1.0/24 via 10.102.2.2"),
        "{routes}"
    );
    let out = slices_cmd(&config)
        .args([
            "template",
            "add",
            TEMPLATE,
            "--description",
            "Debian 12 with sshd",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = slices_cmd(&config)
        .args(["gateway", "key"])
        .output()
        .unwrap();
    lab.authorize(&lab.admin, String::from_utf8_lossy(&out.stdout).trim());
    for node in &mut nodes {
        node.start_agent();
    }

    let (master, setup) = start_master(&config);
    let mut master = Some(master);
    let base = master.as_ref().unwrap().base.clone();
    let setup = setup.expect("the first-admin link");
    let admin = browser();
    let path = setup.strip_prefix(&base).unwrap().to_string();
    assert_eq!(
        form(
            &admin,
            &base,
            &path,
            &path,
            &[
                ("username", "ada"),
                ("email", "ada@example.edu"),
                ("display_name", "Ada"),
                ("password", "correct horse battery"),
                ("password_confirm", "correct horse battery")
            ]
        )
        .await,
        303
    );

    // Two students sign up, confirm by the mailed link, add their keys and ask for a slice.
    let mut students = Vec::new();
    for name in ["slsys-alice", "slsys-bob"] {
        let c = browser();
        let email = format!("{name}@example.edu");
        assert_eq!(
            form(
                &c,
                &base,
                "/signup",
                "/signup",
                &[
                    ("username", name),
                    ("email", &email),
                    ("display_name", name),
                    ("password", "correct horse battery"),
                    ("password_confirm", "correct horse battery")
                ]
            )
            .await,
            303
        );
        let mut link = String::new();
        wait_until("the confirmation mail", 20, || {
            link = smtp
                .messages()
                .iter()
                .filter(|m| m.contains(&format!("To: {name} <{email}>")) && m.contains("/verify/"))
                .find_map(|m| {
                    m.lines()
                        .find(|l| l.contains("/verify/"))
                        .map(|l| l.trim().to_string())
                })
                .unwrap_or_default();
            !link.is_empty()
        })
        .await;
        let page = c.get(&link).send().await.unwrap();
        assert!(page.status().is_success() || page.status().is_redirection());
        let form_page = link.strip_prefix(&base).unwrap().to_string();
        let _ = form(&c, &base, &form_page, &form_page, &[]).await;
        let (key, public) = keypair(w, name);
        assert_eq!(
            form(&c, &base, "/keys", "/keys", &[("key", &public)]).await,
            303
        );
        assert_eq!(
            form(
                &c,
                &base,
                "/request",
                "/request",
                &[("template", TEMPLATE), ("course", "CS 3650")]
            )
            .await,
            303,
            "{name} asks"
        );
        students.push((name, c, key));
    }
    assert_eq!(query(&data, "SELECT count(*) FROM users WHERE email_verified_at IS NOT NULL AND username LIKE 'slsys-%'"), 2);
    let id_of = |name: &str| {
        query(&data, &format!("SELECT s.id FROM slices s JOIN users u ON u.id = s.user_id WHERE u.username = '{name}'"))
    };
    let (alice, bob) = (id_of("slsys-alice"), id_of("slsys-bob"));

    // Staff approve alice; the master is killed while her container is being made, and
    // started again: it resumes, and nothing is done twice.
    assert_eq!(
        form(
            &admin,
            &base,
            "/staff/requests",
            &format!("/staff/requests/{alice}/approve"),
            &[]
        )
        .await,
        303
    );
    wait_until("alice's slice being made", 60, || {
        let step = text(
            &data,
            &format!("SELECT step FROM slices WHERE id = {alice}"),
        );
        step == "creating the container" || step == "starting"
    })
    .await;
    drop(master.take()); // SIGKILL
    let (m, _) = start_master(&config);
    let base = m.base.clone();
    master = Some(m);
    // A new master has a new address: sessions stay (they are in the database).
    let admin_base = base.clone();

    // Bob's request: his node's agent is killed while it works, and started again.
    assert_eq!(
        form(
            &admin,
            &admin_base,
            "/staff/requests",
            &format!("/staff/requests/{bob}/approve"),
            &[]
        )
        .await,
        303
    );
    wait_until("bob's slice placed", 60, || {
        query(
            &data,
            &format!("SELECT node_id FROM slices WHERE id = {bob}"),
        ) > 0
    })
    .await;
    let bob_node = (query(
        &data,
        &format!("SELECT node_id FROM slices WHERE id = {bob}"),
    ) - 1) as usize;
    wait_until("bob's container being made", 60, || {
        text(&data, &format!("SELECT step FROM slices WHERE id = {bob}"))
            == "creating the container"
    })
    .await;
    nodes[bob_node].kill_agent();
    // The job notices: an attempt cut short (the call in flight broke), or, when the kill fell
    // between two calls, "waiting for the node to answer" with no attempt spent.
    wait_until("the job noticing the node is gone", 60, || {
        query(&data, &format!("SELECT count(*) FROM jobs WHERE kind = 'provision' AND slice_id = {bob} AND last_error <> ''")) >= 1
    })
    .await;
    nodes[bob_node].start_agent();

    for (who, id) in [("alice", alice), ("bob", bob)] {
        wait_until(&format!("{who} running"), 180, || {
            text(&data, &format!("SELECT state FROM slices WHERE id = {id}")) == "running"
        })
        .await;
    }
    let (na, nb) = (
        query(
            &data,
            &format!("SELECT node_id FROM slices WHERE id = {alice}"),
        ),
        query(
            &data,
            &format!("SELECT node_id FROM slices WHERE id = {bob}"),
        ),
    );
    assert_ne!(na, nb, "on different nodes");
    assert_eq!(query(&data, &format!("SELECT count(*) FROM jobs WHERE kind = 'provision' AND slice_id = {alice} AND state = 'succeeded'")), 1);
    assert_eq!(
        nodes[(na - 1) as usize].containers().len(),
        1,
        "one container for alice, not two"
    );
    // Bob's job waited for his node and went on: the outage spent at most the attempt it cut
    // short, however long it lasted.
    assert_eq!(
        query(&data, &format!("SELECT count(*) FROM jobs WHERE kind = 'provision' AND slice_id = {bob} AND state = 'succeeded' AND attempts <= 2")),
        1,
        "bob's job went on after the agent was back"
    );

    // Each student lands in their own slice through the gateway.
    for (name, _, key) in &students {
        let start = Instant::now();
        loop {
            let (code, out, err) = lab.ssh(key, name, &["hostname"], "");
            if code == 0 {
                assert_eq!(out.trim(), *name);
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "ssh {name}: {code} {err}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // Each slice's web page, by subdomain, through Apache.
    let domain = slices::domain::DnsName::parse("example.test").unwrap();
    let map = slices::gateway::RemotePath::parse(lab.map().to_str().unwrap()).unwrap();
    lab.start_apache(&slices::gateway::apache_config(&domain, &map));
    for (id, name) in [(alice, "slsys-alice"), (bob, "slsys-bob")] {
        let node = &nodes[(query(
            &data,
            &format!("SELECT node_id FROM slices WHERE id = {id}"),
        ) - 1) as usize];
        let veid = query(&data, &format!("SELECT veid FROM slices WHERE id = {id}"));
        let script = format!(
            "use IO::Socket::INET; my $s = IO::Socket::INET->new(LocalPort => 80, Listen => 5, ReuseAddr => 1) or die $!; \
             while (my $c = $s->accept) {{ while (my $l = <$c>) {{ last if $l =~ /^\\r?\\n$/ }} print $c \"HTTP/1.0 200 OK\\r\\n\\r\\nhello from {name}\\n\"; close $c }}"
        );
        node.ns.run(
            "lxc-attach",
            &[
                "-P",
                node.lxc_path().to_str().unwrap(),
                "-n",
                &format!("ve{veid}"),
                "--",
                "sh",
                "-c",
                "nohup perl -e \"$1\" >/dev/null 2>&1 &",
                "sh",
                &script,
            ],
        );
        let ip = text(&data, &format!("SELECT ip FROM slices WHERE id = {id}"));
        wait_for_port(&format!("{ip}:80"), 20);
        let body = reqwest::Client::new()
            .get(format!("http://{}:{}/", lab.ip, lab.web_port))
            .header(reqwest::header::HOST, format!("{name}.example.test"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, format!("hello from {name}\n"));
    }

    // The "ready" mails arrived.
    for (name, _, _) in &students {
        wait_until("the ready mail", 30, || {
            smtp.messages().iter().any(|m| {
                m.contains(&format!("To: {name} <")) && m.contains("Subject: Your slice is ready")
            })
        })
        .await;
    }

    // Alice's container is stopped behind the agent's back (as a crash or a person at the
    // node would): the master finds it, starts it again, and she gets in again.
    let alice_node = &nodes[(query(
        &data,
        &format!("SELECT node_id FROM slices WHERE id = {alice}"),
    ) - 1) as usize];
    let alice_ve = format!(
        "ve{}",
        query(
            &data,
            &format!("SELECT veid FROM slices WHERE id = {alice}")
        )
    );
    alice_node.ns.run(
        "lxc-stop",
        &[
            "-k",
            "-P",
            alice_node.lxc_path().to_str().unwrap(),
            "-n",
            &alice_ve,
        ],
    );
    wait_until("alice's slice found stopped and started again", 90, || {
        query(
            &data,
            &format!("SELECT count(*) FROM slice_events WHERE slice_id = {alice} AND message LIKE 'Found stopped on %'"),
        ) >= 1
            && query(
                &data,
                &format!("SELECT count(*) FROM jobs WHERE kind = 'start' AND slice_id = {alice} AND state = 'succeeded'"),
            ) >= 1
    })
    .await;
    let (_, _, alice_key) = &students[0];
    let start = Instant::now();
    loop {
        let (code, out, err) = lab.ssh(alice_key, "slsys-alice", &["hostname"], "");
        if code == 0 {
            assert_eq!(out.trim(), "slsys-alice");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "alice after the restart: {code} {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Bob destroys his slice: his account, files, map line and container go.
    let (_, bob_client, _) = &students[1];
    assert_eq!(
        form(
            bob_client,
            &base,
            "/",
            &format!("/slices/{bob}/destroy"),
            &[("confirm", "slsys-bob")]
        )
        .await,
        303
    );
    wait_until("bob destroyed", 60, || {
        text(&data, &format!("SELECT state FROM slices WHERE id = {bob}")) == "destroyed"
    })
    .await;
    // (The account goes first, then its files, in the same apply.)
    wait_until("bob's account and files gone", 30, || {
        !Command::new("getent")
            .args(["passwd", "slsys-bob"])
            .output()
            .unwrap()
            .status
            .success()
            && !lab.users().join("slsys-bob").exists()
            && !lab.users().join("slsys-bob.sh").exists()
    })
    .await;
    assert!(!std::fs::read_to_string(lab.map())
        .unwrap()
        .contains("slsys-bob"));
    assert!(
        nodes[bob_node].containers().is_empty(),
        "bob's container is gone"
    );
    let status = reqwest::Client::new()
        .get(format!("http://{}:{}/", lab.ip, lab.web_port))
        .header(reqwest::header::HOST, "slsys-bob.example.test")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);

    // Alice writes her work in /home; staff move her slice to the other node, and she finds
    // it there byte for byte (the old container gone); then she reinstalls it, keeping /home.
    // The SHA-256 of her work and her slice's name, through the gateway, once it answers.
    let sha_of_work = |when: &str| {
        let start = Instant::now();
        loop {
            let (code, out, err) = lab.ssh(
                alice_key,
                "slsys-alice",
                &["sha256sum ~/work.bin && hostname"],
                "",
            );
            if code == 0 {
                return out;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{when}: {code} {err}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    let (code, _, err) = lab.ssh(
        alice_key,
        "slsys-alice",
        &["head -c 20000000 /dev/urandom > ~/work.bin"],
        "",
    );
    assert_eq!(code, 0, "{err}");
    let before = sha_of_work("before the move");
    let from = query(
        &data,
        &format!("SELECT node_id FROM slices WHERE id = {alice}"),
    );
    let to_name = if from == 1 { "node-b" } else { "node-a" };
    let detail = format!("/staff/slices/{alice}");
    assert_eq!(
        form(
            &admin,
            &base,
            &detail,
            &format!("{detail}/move"),
            &[("node", to_name), ("confirm", "slsys-alice")]
        )
        .await,
        303
    );
    let settled = |data: &Path| {
        text(
            data,
            &format!("SELECT state FROM slices WHERE id = {alice}"),
        ) == "running"
            && query(
                data,
                &format!("SELECT count(*) FROM moves WHERE slice_id = {alice}"),
            ) == 0
    };
    wait_until("alice's slice moved", 240, || settled(&data)).await;
    let now_on = query(
        &data,
        &format!("SELECT node_id FROM slices WHERE id = {alice}"),
    );
    assert_ne!(now_on, from, "on the other node");
    assert!(
        nodes[(from - 1) as usize].containers().is_empty(),
        "the old container is removed"
    );
    // Through the gateway (which learnt the new address and host key), the same file.
    assert_eq!(
        sha_of_work("after the move"),
        before,
        "her /home came along"
    );
    let (_, alice_client, _) = &students[0];
    let reinstall = format!("/slices/{alice}/reinstall");
    let old_veid = query(
        &data,
        &format!("SELECT veid FROM slices WHERE id = {alice}"),
    );
    assert_eq!(
        form(
            alice_client,
            &base,
            &reinstall,
            &reinstall,
            &[
                ("template", TEMPLATE),
                ("keep_home", "on"),
                ("confirm", "slsys-alice")
            ]
        )
        .await,
        303
    );
    wait_until("alice's slice reinstalled", 240, || {
        settled(&data)
            && query(
                &data,
                &format!("SELECT veid FROM slices WHERE id = {alice}"),
            ) != old_veid
    })
    .await;
    assert_eq!(
        nodes[(now_on - 1) as usize].containers().len(),
        1,
        "the old container is removed"
    );
    assert_eq!(
        sha_of_work("after the reinstall"),
        before,
        "her /home is kept"
    );
    wait_until("the moved mail", 30, || {
        smtp.messages().iter().any(|m| {
            m.contains("To: slsys-alice <") && m.contains("Subject: Your slice is reinstalled")
        })
    })
    .await;
    drop(master);
    drop(nodes);
    drop(smtp);
    drop(lab);
    drop(gw_host);
}
