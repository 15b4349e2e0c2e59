//! System test: the master's built-in SSH gateway (russh) in front of real LXC slices, driven
//! by the real OpenSSH client, scp and sftp: nothing on the host but the master and LXC.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use slices::accounts::{self, Actor};
use slices::domain::{Role, SshPublicKey};
use slices::jobs::JobKind;
use slices::slices::State;

use crate::fleet::fleet_with;
use crate::lxc_node;
use crate::system::*;

const BRIDGE: &str = "slbr-bsh";
const SUBNET: &str = "10.92.0.0/24";

/// `ssh -p PORT -i KEY [OPTS] USER@127.0.0.1 ARGS...` with `stdin`: (exit code, stdout, stderr).
pub fn ssh(
    port: u16,
    key: &Path,
    opts: &[&str],
    user: &str,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    ssh_within(30, port, key, opts, user, args, stdin)
}

/// [`ssh`], ended after `secs` (exit 124).
fn ssh_within(
    secs: u64,
    port: u16,
    key: &Path,
    opts: &[&str],
    user: &str,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    let mut child = Command::new("timeout")
        .arg(secs.to_string())
        .arg("ssh")
        .args(SSH_OPTS)
        .args(["-p", &port.to_string(), "-i"])
        .arg(key)
        .args(["-o", "IdentitiesOnly=yes"])
        .args(opts)
        .arg(format!("{user}@127.0.0.1"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Retries until the command succeeds (the slice's sshd and keys may still be coming).
fn ssh_ok(port: u16, key: &Path, user: &str, args: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let (code, out, err) = ssh(port, key, &[], user, args, "");
        if code == 0 {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "ssh {user}@gateway {args:?}: exit {code}: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_reach_each_of_their_lxc_slices_through_the_built_in_ssh_gateway() {
    let Some(_alone) = alone("ssh_gateway::built_in").await else {
        return;
    };
    let extra = vec![
        ("ssh_listen", "127.0.0.1:0".to_string()),
        ("domain", "example.test".into()),
        ("slice_nameservers", "10.92.0.1".into()),
    ];
    let f = fleet_with(0, |_| String::new(), 0, &extra).await;
    let gw = slices::ssh_gateway::start(&f.ctx)
        .await
        .unwrap()
        .expect("the built-in gateway is on with the local target");
    let port = gw.addr.port();
    let node = lxc_node::start_with_ca("bs1", BRIDGE, SUBNET, Some(&f.ca)).await;
    f.add_node("bs1", &node.address);
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let bob = f.user("bob", Role::Student);
    let keys = tempfile::tempdir().unwrap();
    let (alice_key, alice_pub) = keypair(keys.path(), "alice");
    let (bob_key, bob_pub) = keypair(keys.path(), "bob");
    let (stranger_key, _) = keypair(keys.path(), "stranger");
    let mut alice_key_id = 0;
    for (u, k) in [(&alice, &alice_pub), (&bob, &bob_pub)] {
        let k = SshPublicKey::parse(k).unwrap();
        let added = f
            .ctx
            .db
            .write(|tx| accounts::keys::add(tx, u.id, &k, &Actor::default()))
            .unwrap();
        if u.id == alice.id {
            alice_key_id = added.id;
        }
    }
    // alice has two slices, each with a name of its own; bob has one.
    let a1 = f.request_and_approve(&alice, &staff);
    let a2 = f.request_and_approve(&alice, &staff);
    let b1 = f.request_and_approve(&bob, &staff);
    assert_eq!(f.slice(a1).subdomain, "alice");
    assert_eq!(f.slice(a2).subdomain, "alice-2");
    assert_eq!(f.slice(b1).subdomain, "bob");
    let jobs = f.run_jobs(|c| {
        c.agent_timeout = Duration::from_secs(180);
        c.reconcile_secs = 0;
    });
    for id in [a1, a2, b1] {
        f.wait_for(id, State::Running, 180).await;
    }

    // Each login name reaches its own slice.
    assert_eq!(ssh_ok(port, &alice_key, "alice", &["hostname"]), "alice\n");
    assert_eq!(
        ssh_ok(port, &alice_key, "alice-2", &["hostname"]),
        "alice-2\n"
    );
    assert_eq!(
        ssh_ok(port, &bob_key, "bob", &["hostname; id -un"]),
        "bob\nbob\n"
    );
    // `true` exits 0; the remote command's exit status comes back.
    assert_eq!(ssh(port, &alice_key, &[], "alice", &["true"], "").0, 0);
    assert_eq!(ssh(port, &alice_key, &[], "alice", &["exit 7"], "").0, 7);
    // Standard input reaches the command; standard error comes back apart.
    let (code, out, err) = ssh(
        port,
        &alice_key,
        &[],
        "alice",
        &["cat; echo oops >&2"],
        "through the gateway\n",
    );
    assert_eq!((code, out.as_str()), (0, "through the gateway\n"), "{err}");
    assert!(err.contains("oops"), "{err}");
    // No command: an interactive shell reads standard input.
    let (code, out, _) = ssh(port, &alice_key, &[], "alice", &[], "echo in-$(hostname)\n");
    assert_eq!(code, 0);
    assert!(out.contains("in-alice"), "{out}");
    // A PTY: `tty` names a terminal, and the window size set by the client is the slice's.
    let (code, out, err) = ssh(port, &alice_key, &["-tt"], "alice", &["tty; stty size"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("/dev/pts/"), "a terminal: {out:?}");

    // scp and sftp put files in.
    let file = keys.path().join("hello.txt");
    std::fs::write(&file, "hello through the built-in gateway\n").unwrap();
    let p = port.to_string();
    let mut scp: Vec<&str> = SSH_OPTS.to_vec();
    let (k, src) = (alice_key.to_str().unwrap(), file.to_str().unwrap());
    scp.extend(["-P", &p, "-i", k, src, "alice@127.0.0.1:hello.txt"]);
    sh("scp", &scp);
    assert_eq!(
        ssh_ok(port, &alice_key, "alice", &["cat hello.txt"]),
        "hello through the built-in gateway\n"
    );
    let batch = keys.path().join("batch");
    std::fs::write(&batch, format!("put {src} via-sftp.txt\n")).unwrap();
    let mut sftp: Vec<&str> = SSH_OPTS.to_vec();
    sftp.extend([
        "-P",
        &p,
        "-i",
        k,
        "-b",
        batch.to_str().unwrap(),
        "alice@127.0.0.1",
    ]);
    sh("sftp", &sftp);
    assert_eq!(
        ssh_ok(port, &alice_key, "alice", &["cat via-sftp.txt"]),
        "hello through the built-in gateway\n"
    );

    // Port forwarding is refused: stdio forwarding to the slice's own sshd gets nothing.
    let ip = f.slice(a1).ip.unwrap();
    let (code, out, err) = ssh(
        port,
        &alice_key,
        &["-W", &format!("{ip}:22")],
        "alice",
        &[],
        "",
    );
    assert_ne!(code, 0);
    assert!(!out.contains("SSH-2.0"), "the slice's sshd answered: {out}");
    assert!(
        err.contains("administratively prohibited") || err.contains("forwarding failed"),
        "{err}"
    );
    // Agent forwarding is refused: the slice sees no agent even when the client offers one.
    let agent_sock = keys.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&agent_sock)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the agent listens", 10, || agent_sock.exists()).await;
    let out = Command::new("ssh")
        .env("SSH_AUTH_SOCK", &agent_sock)
        .args(SSH_OPTS)
        .args([
            "-A",
            "-p",
            &p,
            "-i",
            k,
            "alice@127.0.0.1",
            "echo agent=[$SSH_AUTH_SOCK]",
        ])
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("agent=[]"), "no agent in the slice: {text}");

    // A key nobody registered is refused; bob's key opens none of alice's slices.
    let (code, _, err) = ssh(port, &stranger_key, &[], "alice", &["hostname"], "");
    assert_eq!(code, 255, "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    for name in ["alice", "alice-2", "Alice", "alice;id", "tess"] {
        let (code, out, _) = ssh(port, &bob_key, &[], name, &["hostname"], "");
        assert_eq!(code, 255, "bob reached {name}: {out}");
    }

    // The terminal in the browser: alice opens one on her slice's card and types.
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let web = app.handle();
    tokio::spawn(app.run_until_stopped());
    let driver = crate::webdriver::Driver::start();
    let log_in = |who: &'static str| {
        let (driver, base) = (&driver, base.clone());
        async move {
            let s = driver.session(1200, 900).await;
            s.log_in(&base, who).await;
            s
        }
    };
    let browser = log_in("alice").await;
    browser
        .click(&format!("a[href='/slices/{a1}/terminal']"))
        .await;
    browser
        .wait_text("#terminal-status", 20, |t| t.contains("Connected"))
        .await;
    browser.keys("echo term-$(hostname)\u{E007}").await;
    browser
        .wait_text(".xterm-rows", 20, |t| t.contains("term-alice"))
        .await;
    browser.close().await;
    // Staff may open one on any slice: audited, and the student reads it on their card.
    let tess = log_in("tess").await;
    tess.go(&format!("{base}/slices/{a1}/terminal")).await;
    tess.wait_text("main", 10, |t| t.contains("This is alice's slice"))
        .await;
    tess.wait_text("#terminal-status", 20, |t| t.contains("Connected"))
        .await;
    tess.close().await;
    assert_eq!(
        f.count("SELECT count(*) FROM audit WHERE event = 'terminal_opened' AND detail LIKE '%by tess (staff)'"),
        1
    );
    let told = f.count(&format!(
        "SELECT count(*) FROM slice_events WHERE slice_id = {a1} AND message LIKE 'tess of the lab staff opened a terminal%'"
    ));
    assert_eq!(told, 1, "alice is told");
    // The websocket opens only from the master's own pages, with their token.
    let c = crate::http::browser();
    assert_eq!(crate::http::log_in(&c, &base, "alice").await, 303);
    let home = crate::http::page(&c, &format!("{base}/slices/{a1}/terminal")).await;
    let token = home
        .split("?t=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let upgrade = |origin: &str, token: &str| {
        c.get(format!("{base}/slices/{a1}/terminal/ws?t={token}"))
            .header("Origin", origin)
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
    };
    let evil = upgrade("http://alice.example.test", &token).await.unwrap();
    assert_eq!(
        evil.status(),
        403,
        "a page on a slice's web name cannot open one"
    );
    let tokenless = upgrade(&base, "x").await.unwrap();
    assert_eq!(tokenless.status(), 403);
    let ours = upgrade(&base, &token).await.unwrap();
    assert_eq!(ours.status(), 101, "the page's own request is let through");
    drop(ours);
    // bob cannot open one on alice's slice.
    let cb = crate::http::browser();
    crate::http::log_in(&cb, &base, "bob").await;
    let r = cb
        .get(format!("{base}/slices/{a1}/terminal"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    web.stop(false).await;

    // A stopped slice: one line saying so, exit status 1.
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, a2, JobKind::Stop, ""))
        .unwrap();
    f.wait_for(a2, State::Stopped, 60).await;
    let (code, out, err) = ssh(port, &alice_key, &[], "alice-2", &["hostname"], "");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("alice-2 is stopped"), "{err}");
    assert!(
        err.contains(&format!("Start it at {base}/")),
        "where: {err}"
    );

    // The slice's host key was kept at first sight.
    let kept = f
        .ctx
        .db
        .read(|c| {
            slices::records::gateway::login_target(c, "alice").map(|t| t.and_then(|t| t.host_key))
        })
        .unwrap();
    assert!(kept.is_some_and(|k| k.starts_with("ssh-")), "host key kept");

    // A soak: 50 sessions at once, each running a command in a loop for a minute
    // (TEST_SLICES_SOAK_SECS), half in alice's slice and half in bob's: none loses a line.
    let secs: u64 = std::env::var("TEST_SLICES_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut soak = Vec::new();
    for i in 0..50 {
        let (key, user) = if i % 2 == 0 {
            (alice_key.clone(), "alice")
        } else {
            (bob_key.clone(), "bob")
        };
        let command = format!("for i in $(seq 1 {secs}); do echo line-$i; sleep 1; done");
        soak.push(std::thread::spawn(move || {
            ssh_within(secs + 60, port, &key, &[], user, &[&command], "")
        }));
        // (A slice's sshd drops new connections beyond ten still logging in at once.)
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut lost = Vec::new();
    for (i, t) in soak.into_iter().enumerate() {
        let (code, out, err) = tokio::task::spawn_blocking(move || t.join().unwrap())
            .await
            .unwrap();
        let lines = out.lines().count() as u64;
        if code != 0 || lines != secs || !out.ends_with(&format!("line-{secs}\n")) {
            lost.push(format!("session {i}: exit {code}, {lines} lines, {err}"));
        }
    }
    assert!(lost.is_empty(), "sessions lost: {lost:#?}");

    // A disabled account is refused at its next connection, with nothing to reconcile.
    let admin = f.user("ada", Role::Admin);
    accounts::disable(&f.ctx.db, &admin, "bob", "left the course", "127.0.0.1").unwrap();
    let (code, _, err) = ssh(port, &bob_key, &[], "bob", &["hostname"], "");
    assert_eq!(code, 255, "a disabled account still logs in: {err}");

    // A key removed on the Keys page is refused at the next connection.
    f.ctx
        .db
        .write(|tx| accounts::keys::remove(tx, alice.id, alice_key_id, &Actor::default()))
        .unwrap();
    let (code, _, err) = ssh(port, &alice_key, &[], "alice", &["hostname"], "");
    assert_eq!(code, 255, "a removed key still opens the slice: {err}");

    // Every session that logged in is in the audit log, with its slice and bytes.
    let sessions = f.count("SELECT count(*) FROM audit WHERE event = 'gateway_session'");
    assert!(sessions >= 10, "sessions audited: {sessions}");
    let with_bytes = f.count(
        "SELECT count(*) FROM audit WHERE event = 'gateway_session' AND detail LIKE 'ssh to alice from 127.0.0.1:%bytes in%'",
    );
    assert!(with_bytes > 0);
    gw.stop().await;
    jobs.stop().await;
    drop(node);
}

/// A slice of the simulated node: the gateway answers its login with one line saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_slice_is_said_to_be_simulated_at_the_ssh_gateway() {
    let Some(_alone) = alone("ssh_gateway::simulated").await else {
        return;
    };
    let f = crate::fleet::fleet_with(
        1,
        |_| "10.89.0.0/24".into(),
        0,
        &[("ssh_listen", "127.0.0.1:0".to_string())],
    )
    .await;
    let gw = slices::ssh_gateway::start(&f.ctx).await.unwrap().unwrap();
    let staff = f.user("tess", Role::Staff);
    let sam = f.user("sam", Role::Student);
    let keys = tempfile::tempdir().unwrap();
    let (key, public) = keypair(keys.path(), "sam");
    f.ctx
        .db
        .write(|tx| {
            accounts::keys::add(
                tx,
                sam.id,
                &SshPublicKey::parse(&public).unwrap(),
                &Actor::default(),
            )
        })
        .unwrap();
    let id = f.request_and_approve(&sam, &staff);
    let jobs = f.run_jobs(|_| {});
    f.wait_for(id, State::Running, 30).await;
    let (code, out, err) = ssh(gw.addr.port(), &key, &[], "sam", &["hostname"], "");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("sam is a simulated slice"), "{err}");
    assert!(out.is_empty());
    gw.stop().await;
    jobs.stop().await;
}
