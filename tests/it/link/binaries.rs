//! The two real binaries, as an operator uses them: `slices node add` writes the agent's
//! bundle, `slices-agent run` serves with it, `slices node info|ping|list` talk to it.

use std::process::{Child, Command, Stdio};

fn slices(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_slices"))
        .args(args)
        .arg("--data")
        .arg(data)
        .env_remove("SLICES_CONFIG")
        .output()
        .unwrap()
}

pub struct Kill(pub Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent's configuration as `slices node add` wrote it, pointed at this test's folders
/// and the simulator.
fn for_the_simulator(dir: &std::path::Path, bundle: &std::path::Path) -> std::path::PathBuf {
    let toml = std::fs::read_to_string(bundle.join("agent.toml"))
        .unwrap()
        .replace("/etc/slices-agent", bundle.to_str().unwrap())
        .replace("0.0.0.0", "127.0.0.1")
        .replace("driver = \"lxc\"", "driver = \"sim\"")
        .replace("/var/lib/slices-agent", dir.join("agent").to_str().unwrap());
    std::fs::write(bundle.join("agent.toml"), toml).unwrap();
    std::fs::create_dir_all(dir.join("agent/templates")).unwrap();
    std::fs::write(dir.join("agent/templates/tiny.tar.gz"), b"x").unwrap();
    bundle.join("agent.toml")
}

/// A master's data folder with node `name` enrolled on a free local port, and its agent's
/// configuration for the simulator.
pub struct Enrolled {
    pub data: std::path::PathBuf,
    pub address: String,
    pub config: std::path::PathBuf,
}

pub fn enrol(dir: &std::path::Path, name: &str) -> Enrolled {
    let data = dir.join("data");
    let bundle = dir.join("bundle");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    crate::serve::make_data(None, Some(&data));
    let out = slices(
        &data,
        &[
            "node",
            "add",
            name,
            "--address",
            &address,
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    let config = for_the_simulator(dir, &bundle);
    Enrolled {
        data,
        address,
        config,
    }
}

impl Enrolled {
    /// Runs `slices-agent run` (under `prefix`, such as `prlimit --nofile=...`) until it
    /// listens.
    pub fn start_agent(&self, prefix: &[&str]) -> Kill {
        let agent = env!("CARGO_BIN_EXE_slices-agent");
        let mut argv: Vec<&str> = prefix.to_vec();
        argv.extend([agent, "run", "--config", self.config.to_str().unwrap()]);
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(&self.address).is_err() {
            assert!(start.elapsed().as_secs() < 10, "the agent did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Kill(child)
    }
}

#[test]
fn enroll_a_node_run_its_agent_and_reach_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bundle = dir.path().join("bundle");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}");

    crate::serve::make_data(None, Some(&data));
    let out = slices(
        &data,
        &[
            "node",
            "add",
            "node9",
            "--address",
            &address,
            "--bundle",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("slices-agent run"));
    for f in ["ca.pem", "agent.pem", "agent.key", "agent.toml"] {
        assert!(bundle.join(f).is_file(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(bundle.join("agent.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let mode = std::fs::metadata(data.join("ca/ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the CA key is private");
    // A second node with the same name is refused.
    let again = slices(
        &data,
        &[
            "node",
            "add",
            "node9",
            "--address",
            &address,
            "--bundle",
            dir.path().join("b2").to_str().unwrap(),
        ],
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    // Bad names and addresses are refused with the rule.
    let bad = slices(&data, &["node", "add", "Node 9;", "--address", &address]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("node name"));
    let bad = slices(
        &data,
        &["node", "add", "node10", "--address", "$(reboot):22"],
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HOST:PORT"));

    let config = for_the_simulator(dir.path(), &bundle);

    let check = Command::new(env!("CARGO_BIN_EXE_slices-agent"))
        .args(["check", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let agent = Kill(
        Command::new(env!("CARGO_BIN_EXE_slices-agent"))
            .args(["run", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(start.elapsed().as_secs() < 10, "the agent did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    let info = slices(&data, &["node", "info", "node9"]);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(json["simulated"], true);
    assert_eq!(json["templates"][0]["name"], "tiny");
    let ping = slices(&data, &["node", "ping", "node9", "-n", "50"]);
    assert!(String::from_utf8_lossy(&ping.stdout).contains("50 pings to node9"));
    let list = slices(&data, &["node", "list"]);
    assert!(!String::from_utf8_lossy(&list.stdout).contains("never"));

    drop(agent);
    let info = slices(&data, &["node", "info", "node9"]);
    assert!(!info.status.success());
    assert!(String::from_utf8_lossy(&info.stderr).contains("did not answer"));
    let list = slices(&data, &["node", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("last error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_to_a_restarted_agent_is_replaced_without_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let node5 = enrol(dir.path(), "node5");
    let data = node5.data.clone();
    let start_agent = || node5.start_agent(&[]);

    let ctx = slices::context::Context::open(
        slices::config::Config::load(
            None,
            Vec::<(String, String)>::new(),
            &[("data", data.display().to_string())],
        )
        .unwrap(),
    )
    .unwrap();
    let node = ctx
        .db
        .read(|c| slices::nodes::by_name(c, "node5"))
        .unwrap()
        .unwrap();
    let ca = slices::slave_link::pki::Ca::open_or_create(&data.join("ca")).unwrap();
    let links = slices::jobs::Links::new(
        ctx.db.clone(),
        ca.client_config().unwrap(),
        std::time::Duration::from_secs(5),
    );
    let ping = slices::slave_link::Command::Ping;

    let agent = start_agent();
    assert_eq!(links.call(&node, None, None, &ping).await.unwrap().code, 0);
    drop(agent); // the kept connection dies with it
    let _agent = start_agent();
    let r = links.call(&node, None, None, &ping).await;
    assert_eq!(r.expect("the stale connection is replaced").code, 0);
    let logged: i64 = ctx
        .db
        .read(|c| {
            Ok::<_, slices::error::Error>(c.query_row(
                "SELECT count(*) FROM agent_log WHERE code = 0",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(logged, 2, "each call is logged once, with its answer");
}

/// The seed's own messages, in the seed's own form, over real mutual TLS to the real agent
/// binary (simulator driver): each answers code 0 and does what the seed's table says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_messages_in_the_seeds_form() {
    let dir = tempfile::tempdir().unwrap();
    let node = enrol(dir.path(), "node6");
    std::fs::write(dir.path().join("agent/templates/demo.tar.gz"), b"d").unwrap();
    let _agent = node.start_agent(&[]);
    let ca = slices::slave_link::pki::Ca::open_or_create(&node.data.join("ca")).unwrap();
    let mut link = slices::slave_link::AgentClient::connect(
        &node.address,
        &slices::domain::NodeName::parse("node6").unwrap(),
        ca.client_config().unwrap(),
        std::time::Duration::from_secs(10),
    )
    .await
    .unwrap();
    let toml = std::fs::read_to_string(&node.config).unwrap();
    let subnet = toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("subnet = \""))
        .and_then(|s| s.split('/').next())
        .unwrap();
    let prefix = subnet.rsplit_once('.').unwrap().0.to_string() + ".";
    crate::seed::conformance(&mut link, 101, "demo", "alice", &prefix).await;

    // With the master's manifest sent once (its own form), the seed's form checks against it.
    let manifest = serde_json::json!([
        {"name": "demo", "sha256": "00".repeat(32), "size": 1},
    ]);
    let r = link
        .send_bytes(
            serde_json::json!({"command": "sync_templates", "arguments": [manifest]})
                .to_string()
                .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    let r = link
        .send_bytes(br#"{"command": "sync_templates", "arguments": []}"#)
        .await
        .unwrap();
    assert_eq!(r.code, 0);
    assert_eq!(r.returned[0]["name"], "demo");
    assert_eq!(
        r.returned[0]["state"], "needed",
        "another version than the master's"
    );
}
