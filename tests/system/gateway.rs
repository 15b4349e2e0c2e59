//! System test: a real sshd on loopback is the gateway, the master reaches it over SSH (ssh2)
//! with its own key and the host key pinned, slices are real LXC containers, and a real
//! Apache serves NAME.example.test from the generated map.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use slices::accounts::{self, Actor};
use slices::domain::{Role, SshPublicKey};
use slices::gateway::{Gateway, Scope, Settings};
use slices::jobs::JobKind;
use slices::slices::State;

use crate::fleet::fleet_with;
use crate::gateway_lab::Lab;
use crate::lxc_node;
use crate::system::*;

const BRIDGE: &str = "slbr-gwt";
const SUBNET: &str = "10.83.0.0/24";

/// Retries an ssh through the gateway until it succeeds (the slice's sshd may still start).
fn ssh_ok(lab: &Lab, key: &Path, user: &str, args: &[&str]) -> String {
    let start = Instant::now();
    loop {
        let (code, out, err) = lab.ssh(key, user, args, "");
        if code == 0 {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "ssh {user}@gateway {args:?}: exit {code}: {err}\nsshd log:\n{}",
            std::fs::read_to_string(lab.dir.join("sshd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `ssh -W TARGET` through the gateway as `user` (stdio forwarding, no login shell), for a
/// few seconds: (exit code, what came back, stderr).
fn forward(lab: &Lab, key: &Path, user: &str, target: &str) -> (i32, String, String) {
    let port = lab.ssh_port.to_string();
    let out = Command::new("timeout")
        .arg("8")
        .arg("ssh")
        .args(SSH_OPTS)
        .args(["-p", &port, "-i"])
        .arg(key)
        .args(["-W", target])
        .arg(format!("{user}@{}", lab.ip))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(port: u16, host: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header(reqwest::header::HOST, host)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn account_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn students_ssh_through_a_real_gateway_into_their_own_lxc_slice_and_serve_the_web() {
    let Some(_alone) = alone("gateway::real").await else {
        return;
    };
    for (name, exists) in [("slgw-alice", false), ("slgw-bob", false)] {
        assert_eq!(account_exists(name), exists, "a stale test account {name}");
    }
    let lab = Lab::start();
    let mut extra = lab.settings();
    extra.push(("domain", "example.test".into()));
    extra.push(("slice_nameservers", "10.83.0.1".into()));
    let f = fleet_with(0, |_| String::new(), 0, &extra).await;
    // The master logs in with its own key as an account that may only run the helper as root.
    let settings = Settings::from_config(&f.ctx.config).unwrap();
    let master_pub = slices::gateway::master_key(&settings).unwrap();
    lab.authorize(&lab.admin, &master_pub);
    // A wrong pinned key is refused before anything is sent.
    let mut wrong = settings.clone();
    wrong.host_key = Some("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into());
    let err = Gateway::new(wrong)
        .plan(&f.ctx.db, &Scope::All)
        .unwrap_err()
        .to_string();
    assert!(err.contains("host key has changed"), "{err}");

    let node = lxc_node::start_with_ca("gw1", BRIDGE, SUBNET, Some(&f.ca)).await;
    f.add_node("gw1", &node.address);
    let staff = f.user("tess", Role::Staff);
    // Usernames unlikely to exist on a test machine.
    let alice = f.user("slgw-alice", Role::Student);
    let bob = f.user("slgw-bob", Role::Student);
    let keys = tempfile::tempdir().unwrap();
    let (alice_key, alice_pub) = keypair(keys.path(), "alice");
    let (bob_key, bob_pub) = keypair(keys.path(), "bob");
    for (u, k) in [(&alice, &alice_pub), (&bob, &bob_pub)] {
        let k = SshPublicKey::parse(k).unwrap();
        f.ctx
            .db
            .write(|tx| accounts::keys::add(tx, u.id, &k, &Actor::default()))
            .unwrap();
    }
    // carol's name is an account on the gateway that Slices did not make (a lab member's,
    // say): she is left out, and said so; the others are served.
    let _carol_account = HostAccount::make("slgw-carol");
    let carol = f.user("slgw-carol", Role::Student);
    let a = f.request_and_approve(&alice, &staff);
    let b = f.request_and_approve(&bob, &staff);
    let c = f.request_and_approve(&carol, &staff);
    let jobs = f.run_jobs(|c| {
        c.agent_timeout = Duration::from_secs(180);
        c.usage_secs = 1;
        // This test stops a container by hand to see what the student is told; the master's
        // reconcile (its own test is the whole-system one) would start it again meanwhile.
        c.reconcile_secs = 0;
    });
    let sa = f.wait_for(a, State::Running, 120).await;
    let sb = f.wait_for(b, State::Running, 120).await;
    f.wait_for(c, State::Running, 120).await;
    let problem = f
        .ctx
        .db
        .read(|conn| slices::records::gateway::problem(conn, carol.id))
        .unwrap()
        .unwrap_or_default();
    assert!(
        problem.contains("An account named slgw-carol exists on the gateway"),
        "staff are told: {problem:?}"
    );
    let passwd = sh("getent", &["passwd", "slgw-carol"]);
    assert!(passwd.trim().ends_with(":/bin/sh"), "left alone: {passwd}");
    // Her "ready" mail says there is no login yet, instead of a command that cannot work.
    let outbox = f
        .ctx
        .db
        .read(|conn| slices::mail::list(conn, None, 100, 0))
        .unwrap()
        .0;
    let ready = outbox
        .iter()
        .find(|m| m.to_addr == "slgw-carol@example.edu" && m.kind == "slice_ready")
        .expect("carol's ready mail");
    let text = slices::mail::render(slices::mail::Kind::SliceReady, &ready.data, &f.ctx.site())
        .unwrap()
        .text;
    assert!(text.contains("no login for you yet"), "{text}");
    assert!(!text.contains("    ssh "), "{text}");
    let runs = f
        .ctx
        .db
        .read(|conn| slices::records::gateway::runs(conn, 50))
        .unwrap();
    assert!(
        runs.iter().all(|r| r.ok),
        "no run failed for everyone: {runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.summary.contains("! slgw-carol: left out")),
        "the run says so"
    );
    // Her slice goes; so does the problem (she is no longer served).
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &carol, c, JobKind::Destroy, ""))
        .unwrap();
    f.wait_for(c, State::Destroyed, 60).await;
    wait_until("carol's problem cleared", 20, || {
        f.ctx
            .db
            .read(|conn| slices::records::gateway::problem(conn, carol.id))
            .unwrap()
            .is_none()
    })
    .await;
    let ip_a = sa.ip.clone().unwrap();

    // The accounts exist with the login shell the seed describes.
    let users = lab.users();
    let passwd = sh("getent", &["passwd", "slgw-alice"]);
    assert!(
        passwd
            .trim()
            .ends_with(&format!(":{}/slgw-alice.sh", users.display())),
        "{passwd}"
    );
    let private = users.join("slgw-alice/.ssh/slice_ed25519");
    let meta = std::fs::metadata(&private).unwrap();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let uid: u32 = sh("id", &["-u", "slgw-alice"]).trim().parse().unwrap();
    assert_eq!(meta.uid(), uid, "the hop key belongs to its user");

    // ssh through the gateway lands in the user's own slice.
    let out = ssh_ok(&lab, &alice_key, "slgw-alice", &["hostname"]);
    assert_eq!(out.trim(), "slgw-alice");
    let out = ssh_ok(&lab, &bob_key, "slgw-bob", &["hostname; id -un"]);
    assert_eq!(out, "slgw-bob\nslgw-bob\n");
    // Nothing else goes through the gateway: the helper keeps sshd's Slices block in place,
    // so stdio and port forwarding into the slice subnet are refused.
    let sshd_config = lab.dir.join("sshd_config");
    let conf = std::fs::read_to_string(&sshd_config).unwrap();
    assert!(
        conf.ends_with(&slices::gateway::sshd_block()),
        "the block is at the end of sshd's configuration:\n{conf}"
    );
    let target = format!("{ip_a}:22");
    let (code, out, err) = forward(&lab, &alice_key, "slgw-alice", &target);
    assert_ne!(code, 0, "forwarding was allowed: {out}");
    assert!(!out.contains("SSH-2.0"), "the slice's sshd answered: {out}");
    assert!(
        err.contains("forwarding failed") || err.contains("administratively prohibited"),
        "{err}"
    );
    // Without the block (an operator's edit, a package upgrade) the hole is real: the slice's
    // own sshd answers through the gateway. The drift check sees it and an apply closes it.
    let without: String = conf.replace(&slices::gateway::sshd_block(), "");
    std::fs::write(&sshd_config, &without).unwrap();
    let pid = std::fs::read_to_string(lab.dir.join("sshd.pid")).unwrap();
    sh("kill", &["-HUP", pid.trim()]);
    wait_until("sshd reads its configuration again", 10, || {
        forward(&lab, &alice_key, "slgw-alice", &target)
            .1
            .contains("SSH-2.0")
    })
    .await;
    let gw = Gateway::new(settings.clone());
    let plan = gw.plan(&f.ctx.db, &Scope::All).unwrap();
    assert!(
        plan.to_string().contains("~ sshd: add the block"),
        "the drift is seen: {plan}"
    );
    gw.apply(&f.ctx.db, &Scope::All).unwrap();
    assert!(std::fs::read_to_string(&sshd_config)
        .unwrap()
        .ends_with(&slices::gateway::sshd_block()));
    wait_until("forwarding refused again", 10, || {
        let (code, out, _) = forward(&lab, &alice_key, "slgw-alice", &target);
        code != 0 && !out.contains("SSH-2.0")
    })
    .await;

    // The remote command's exit code comes back.
    let (code, _, _) = lab.ssh(&alice_key, "slgw-alice", &["exit 7"], "");
    assert_eq!(code, 7);
    // No command: the login shell reads standard input, in the slice.
    let (code, out, err) = lab.ssh(&alice_key, "slgw-alice", &[], "echo in-$(hostname)\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("in-slgw-alice"), "{out}");
    // scp (SFTP through the forwarded subsystem) copies a file into the slice.
    let file = keys.path().join("hello.txt");
    std::fs::write(&file, "hello through the gateway\n").unwrap();
    let port = lab.ssh_port.to_string();
    let mut scp: Vec<&str> = SSH_OPTS.to_vec();
    let (k, src) = (alice_key.to_str().unwrap(), file.to_str().unwrap());
    scp.extend(["-P", &port, "-i", k, src, "slgw-alice@127.0.0.1:hello.txt"]);
    sh("scp", &scp);
    let out = ssh_ok(&lab, &alice_key, "slgw-alice", &["cat hello.txt"]);
    assert_eq!(out, "hello through the gateway\n");
    // A command that looks like an ssh option is only a command in the slice: it never
    // becomes an option of the gateway's ssh (`-E FILE` would make it write FILE there).
    let marker = format!("/tmp/slices-gw-option-{}", std::process::id());
    let (code, _, _) = lab.ssh(
        &alice_key,
        "slgw-alice",
        // (`--` keeps the test's own ssh client from taking it as its option.)
        &["--", &format!("-E{marker}")],
        "",
    );
    assert_ne!(code, 0);
    assert!(
        !Path::new(&marker).exists(),
        "an option reached the gateway's ssh"
    );
    // Bob cannot reach alice's slice: his key is not alice's.
    let (code, out, _) = lab.ssh(&bob_key, "slgw-alice", &["hostname"], "");
    assert_eq!(code, 255, "{out}");
    // Nor can he use alice's hop key: it is hers alone on the gateway.
    let (_, out, _) = lab.ssh(
        &bob_key,
        "slgw-bob",
        &[&format!("ssh -o BatchMode=yes -o StrictHostKeyChecking=no slgw-alice@{ip_a} hostname || echo refused")],
        "",
    );
    assert!(out.contains("refused"), "{out}");

    // A program asking for more memory than alice's plan allows (512 MB) is stopped; the
    // master sees the memory failcnt rise, tells staff (audit) and mails alice.
    let before = f.count("SELECT count(*) FROM usage_samples");
    assert!(before > 0, "usage is sampled");
    let (code, _, _) = lab.ssh(
        &alice_key,
        "slgw-alice",
        &["perl -e '$x = \"a\" x (900 * 1024 * 1024); print length $x'"],
        "",
    );
    assert_ne!(code, 0, "the memory limit stopped it");
    let start = std::time::Instant::now();
    while f.count("SELECT count(*) FROM outbox WHERE kind = 'limit_hit' AND to_addr = 'slgw-alice@example.edu'") != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no limit mail; failcnt samples: {}",
            f.count("SELECT max(failcnt) FROM usage_samples WHERE resource = 'memory'")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Staff read it in the audit log, about alice's slice.
    assert!(
        f.count(&format!(
            "SELECT count(*) FROM audit WHERE event = 'limit_hit' AND subject_kind = 'slice' AND subject = '{}'",
            sa.id
        )) >= 1
    );

    // Apache serves NAME.example.test from the map.
    let domain = slices::domain::DnsName::parse("example.test").unwrap();
    lab.start_apache(&slices::gateway::apache_config(&domain, &settings.map_file));
    // Alice is root in her slice through sudo: she serves port 80 herself, over ssh (a page,
    // and websockets that echo).
    let (code, out, err) = lab.ssh(
        &alice_key,
        "slgw-alice",
        &["cat > server.py && \
           { sudo -n setsid python3 server.py >/dev/null 2>&1 </dev/null & } && \
           sudo -n id -u"],
        include_str!("../fixtures/slice_web_server.py"),
    );
    assert_eq!((code, out.trim()), (0, "0"), "sudo in the slice: {err}");
    wait_for_port(&format!("{ip_a}:80"), 20);
    let (status, body) = get(lab.web_port, "slgw-alice.example.test").await;
    assert_eq!((status, body.as_str()), (200, "hello from alice's slice\n"));
    let (status, _) = get(lab.web_port, "nobody.example.test").await;
    assert_eq!(status, 404);

    // The master's built-in web gateway answers the same name on its own port, from the same
    // slice: no Apache in the way. The slice's own answers pass through (a 501 for a POST the
    // server does not take, its body streamed in), without the master's page headers.
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let master_port = app.port();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let (status, body) = get(master_port, "slgw-alice.example.test").await;
    assert_eq!((status, body.as_str()), (200, "hello from alice's slice\n"));
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{master_port}/upload"))
        .header(reqwest::header::HOST, "slgw-alice.example.test:8080")
        .body(vec![b'x'; 256 * 1024])
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 501, "the slice's own answer");
    assert!(!r.headers().contains_key("content-security-policy"));
    let (status, body) = get(master_port, "nobody.example.test").await;
    assert_eq!(status, 404, "{body}");
    // A websocket through it: the upgrade is passed on and the bytes flow both ways.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut ws = tokio::net::TcpStream::connect(("127.0.0.1", master_port))
            .await
            .unwrap();
        ws.write_all(
            b"GET /echo HTTP/1.1\r\nHost: slgw-alice.example.test\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), ws.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "{}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "the slice's accept: {head}"
        );
        ws.write_all(b"through the master and back").await.unwrap();
        let mut echo = vec![0u8; 27];
        tokio::time::timeout(Duration::from_secs(10), ws.read_exact(&mut echo))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&echo, b"through the master and back");
    }
    handle.stop(false).await;

    // Nothing differs now: a second apply changes nothing.
    let gw = Gateway::new(settings.clone());
    let plan = gw.plan(&f.ctx.db, &Scope::All).unwrap();
    assert!(plan.is_empty(), "{plan}");

    // Alice's private hop key is lost on the gateway (its public half stays): she cannot get
    // in; the helper reports it (what it derives to, never the key), the plan shows it, the
    // apply makes a new pair and gives her slice its public half, and she gets in again.
    std::fs::remove_file(&private).unwrap();
    let (code, _, _) = lab.ssh(&alice_key, "slgw-alice", &["hostname"], "");
    assert_ne!(code, 0, "without her hop key she cannot get in");
    let plan = gw.plan(&f.ctx.db, &Scope::All).unwrap();
    assert!(
        plan.to_string().contains("+ slgw-alice: new hop key"),
        "{plan}"
    );
    let keys_jobs = |f: &crate::fleet::Fleet| {
        f.count("SELECT count(*) FROM jobs WHERE kind = 'keys' AND state = 'succeeded'")
    };
    let before = keys_jobs(&f);
    gw.apply(&f.ctx.db, &Scope::All).unwrap();
    let start = std::time::Instant::now();
    loop {
        let (code, out, err) = lab.ssh(&alice_key, "slgw-alice", &["hostname"], "");
        if code == 0 {
            assert_eq!(out.trim(), "slgw-alice");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "alice after the new hop key ({} keys jobs more): {code} {err}",
            keys_jobs(&f) - before
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(gw.plan(&f.ctx.db, &Scope::All).unwrap().is_empty());

    // Her slice stopped on its node: ssh through the gateway says so in one human line, with
    // where to start it, and fails.
    let lxc = node.work.path().join("state/lxc");
    let ve_a = format!("ve{}", sa.veid.unwrap());
    sh(
        "lxc-stop",
        &["-k", "-P", lxc.to_str().unwrap(), "-n", &ve_a],
    );
    let (code, _, err) = lab.ssh(&alice_key, "slgw-alice", &["hostname"], "");
    assert_eq!(code, 255, "{err}");
    assert!(
        err.contains("slices: your slice does not answer: it is stopped or its node is down. Start it at http"),
        "{err}"
    );
    sh(
        "lxc-start",
        &["-P", lxc.to_str().unwrap(), "-n", &ve_a, "-d"],
    );
    let start = std::time::Instant::now();
    while lab.ssh(&alice_key, "slgw-alice", &["hostname"], "").0 != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "alice's slice back"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // With no key pinned by the configuration, staff accept the one the gateway offers, once;
    // from then on it is pinned.
    let mut unpinned = f.ctx.config.clone();
    unpinned.gateway_host_key = String::new();
    let s = Settings::load(&unpinned, &f.ctx.db).unwrap();
    assert!(s.host_key.is_none());
    assert!(
        Gateway::new(s.clone())
            .plan(&f.ctx.db, &Scope::All)
            .is_err(),
        "refused unpinned"
    );
    let offered = slices::gateway::offered_host_key(&s).unwrap();
    assert_eq!(offered, lab.host_key);
    f.ctx
        .db
        .write(|tx| slices::gateway::accept_host_key(tx, &offered, staff.id))
        .unwrap();
    let s = Settings::load(&unpinned, &f.ctx.db).unwrap();
    assert_eq!(s.host_key.as_deref(), Some(lab.host_key.as_str()));
    assert_eq!(s.host_key_source, "staff, in the web interface");
    assert!(Gateway::new(s)
        .plan(&f.ctx.db, &Scope::All)
        .unwrap()
        .is_empty());

    // Logged in as root, the master sends the helper inline and sees the same.
    let mut as_root = settings.clone();
    as_root.target = slices::gateway::TargetSpec::Ssh {
        user: "root".into(),
        host: "127.0.0.1".into(),
        port: lab.ssh_port,
    };
    lab.authorize("root", &master_pub);
    let plan = Gateway::new(as_root).plan(&f.ctx.db, &Scope::All).unwrap();
    assert!(plan.is_empty(), "{plan}");
    // A helper of another version is refused, with what to do.
    std::fs::write(lab.dir.join("slices-gateway"), "#!/bin/sh\necho 0\n").unwrap();
    let err = Gateway::new(settings.clone())
        .plan(&f.ctx.db, &Scope::All)
        .unwrap_err()
        .to_string();
    assert!(err.contains("slices gateway helper >"), "{err}");
    std::fs::write(lab.dir.join("slices-gateway"), Lab::helper_text(&lab.dir)).unwrap();

    // Destroying a slice removes its account, files and map line; the web name is gone.
    for (user, id) in [(&alice, a), (&bob, b)] {
        f.ctx
            .db
            .write(|tx| slices::slices::act(tx, user, id, JobKind::Destroy, ""))
            .unwrap();
    }
    jobs.runner.wake();
    f.wait_for(a, State::Destroyed, 60).await;
    f.wait_for(b, State::Destroyed, 60).await;
    // (An account goes first, then its files, in the same apply.)
    wait_until("accounts and files removed", 30, || {
        !account_exists("slgw-alice")
            && !account_exists("slgw-bob")
            && !users.join("slgw-alice").exists()
            && !users.join("slgw-alice.sh").exists()
    })
    .await;
    let map = std::fs::read_to_string(lab.map()).unwrap();
    assert!(!map.contains("slgw-"), "{map}");
    let (status, _) = get(lab.web_port, "slgw-alice.example.test").await;
    assert_eq!(status, 404);
    let plan = gw.plan(&f.ctx.db, &Scope::All).unwrap();
    assert!(plan.is_empty(), "{plan}");
    let _ = sb;
    jobs.stop().await;
    drop(node);
}
