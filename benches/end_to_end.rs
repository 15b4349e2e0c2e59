//! End to end through the real `slices serve` binary: SLICES (1,000) requests approved at once
//! with the staff's "approve all" button (an HTTP POST, as a browser sends it), provisioned by
//! the master's job loop on 10 nodes, each a separate `slices-agent` process with the
//! simulator and no time per operation (the built-in agent and SSH gateway off; the embedded
//! defaults for everything else: the local gateway, the mail outbox). Prints the wall time from
//! the POST to the last slice running, slices per second, the master's CPU per slice read from
//! `/proc/PID/stat`, the jobs and agent calls per slice, and the master's RSS. Asserts only
//! that every slice ran.
//!
//!   cargo bench --bench end_to_end
//!   PERF=1 cargo bench --bench end_to_end    # also `perf record -g` of the master meanwhile
//!
//! Knobs: SLICES (1000), NODES (10), PERF (off; 1: frame pointers, dwarf: DWARF unwinding;
//! writes /tmp/slices-e2e.perf.data).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use slices::accounts::{self, sessions};
use slices::config::Config;
use slices::context::Context;
use slices::domain::{DisplayName, Email, NodeAddress, NodeName, Role, TemplateName, Username};
use slices::slave_link::pki::{self, Ca};

#[path = "common/mod.rs"]
mod bench;
use bench::{cpu_secs, free_port, rss_mb, wait_idle};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Child processes, killed when dropped.
struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }
}

fn count(db: &Path, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn value_of<'a>(html: &'a str, name: &str) -> &'a str {
    let at = html
        .find(&format!("name=\"{name}\" value=\""))
        .unwrap_or_else(|| panic!("no {name} in\n{html}"));
    let rest = &html[at + name.len() + 15..];
    &rest[..rest.find('"').unwrap()]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let slices_n = env_or("SLICES", 1000);
    let nodes = env_or("NODES", 10);
    let dir = match std::env::var("BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let data = dir.path().join("data");
    let db_path = data.join("slices.db");

    // Seed: nodes with their agents, one template, SLICES students each with a request.
    let mut agents = Kill(Vec::new());
    let cookie = {
        let flags = [("data", data.display().to_string())];
        let ctx =
            Context::open(Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap())
                .unwrap();
        let ca = Ca::open_or_create(&data.join("ca")).unwrap();
        let mut addresses = Vec::new();
        for i in 0..nodes {
            let name = NodeName::parse(&format!("n{i}")).unwrap();
            let root = dir.path().join(format!("n{i}"));
            pki::write_bundle(&root, ca.cert_pem(), &ca.issue_node(&name).unwrap()).unwrap();
            std::fs::create_dir_all(root.join("templates")).unwrap();
            std::fs::write(root.join("templates/t1.tar.gz"), b"t").unwrap();
            let port = free_port();
            std::fs::write(
                root.join("agent.toml"),
                format!(
                    "name = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nca = \"{r}/ca.pem\"\ncert = \"{r}/agent.pem\"\nkey = \"{r}/agent.key\"\n\
                     driver = \"sim\"\ntemplates = \"{r}/templates\"\nstate = \"{r}/state\"\nsubnet = \"10.{a}.{b}.0/20\"\n",
                    r = root.display(),
                    a = 100 + i / 10,
                    b = (i % 10) * 16
                ),
            )
            .unwrap();
            agents.0.push(
                Command::new(env!("CARGO_BIN_EXE_slices-agent"))
                    .args(["run", "--config"])
                    .arg(root.join("agent.toml"))
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
            addresses.push((
                name,
                NodeAddress::parse(&format!("127.0.0.1:{port}")).unwrap(),
            ));
        }
        let hash = accounts::password::hash("correct horse battery").unwrap();
        let staff = ctx
            .db
            .write(|tx| {
                for (name, address) in &addresses {
                    slices::nodes::add(tx, name, address)?;
                }
                slices::slices::add_template(tx, &TemplateName::parse("t1").unwrap(), "")?;
                // Small slices, so that every one fits on the nodes (their memory is this
                // machine's): the placement is measured, not the wait for room.
                tx.execute("UPDATE plans SET memory_mb = 16 WHERE is_default = 1", [])?;
                let staff = accounts::users::insert(
                    tx,
                    &Username::parse("staff1").unwrap(),
                    &Email::parse("staff1@example.edu").unwrap(),
                    &DisplayName::parse("Staff").unwrap(),
                    &hash,
                    Role::Staff,
                )?;
                for i in 0..slices_n {
                    let user = accounts::users::insert(
                        tx,
                        &Username::parse(&format!("u{i:05}")).unwrap(),
                        &Email::parse(&format!("u{i}@example.edu")).unwrap(),
                        &DisplayName::parse("U").unwrap(),
                        &hash,
                        Role::Student,
                    )?;
                    accounts::users::set_verified(tx, user.id)?;
                    slices::slices::request(
                        tx,
                        &user,
                        &slices::slices::Request {
                            template: TemplateName::parse("t1").unwrap(),
                            plan_id: None,
                            course: String::new(),
                            purpose: String::new(),
                            name: String::new(),
                        },
                    )?;
                }
                Ok::<_, slices::error::Error>(staff)
            })
            .unwrap();
        let value = ctx
            .db
            .write(|tx| sessions::create(tx, staff.id, ctx.policy.life, "127.0.0.1", "bench"))
            .unwrap();
        format!("slices_session={value}")
    };

    // The real server.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Kill(vec![Command::new(env!("CARGO_BIN_EXE_slices"))
        .args(["serve", "--data"])
        .arg(&data)
        .env("SLICES_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLICES_EMBEDDED_AGENT", "off")
        .env("SLICES_SSH_LISTEN", "")
        .env("SLICES_PUBLIC_URL", "http://slices.example.edu")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("slices serve")]);
    let pid = server.0[0].id();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for i in 0.. {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        if let Ok(Some(s)) = server.0[0].try_wait() {
            panic!("slices serve ended: {s}");
        }
        assert!(i < 300, "slices serve did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_idle(pid).await;
    let page = client
        .get(format!("{base}/staff/requests"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (csrf, up_to) = (value_of(&page, "csrf"), value_of(&page, "up_to"));

    let perf = std::env::var("PERF").ok().map(|how| {
        let graph = if how == "dwarf" { "dwarf,32768" } else { "fp" };
        Command::new("perf")
            .args(["record", "-F", "999", "--call-graph", graph])
            .args(["-o", "/tmp/slices-e2e.perf.data", "-p"])
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf")
    });
    let runs0 = count(&db_path, "SELECT count(*) FROM gateway_runs");
    let mails0 = count(&db_path, "SELECT count(*) FROM outbox");
    let jobs0 = count(&db_path, "SELECT count(*) FROM jobs");
    let calls0 = count(&db_path, "SELECT count(*) FROM agent_log");
    let cpu0 = cpu_secs(pid);
    let t0 = Instant::now();
    let r = client
        .post(format!("{base}/staff/requests/approve-all"))
        .header("Cookie", &cookie)
        .header("Origin", &base)
        .form(&[("csrf", csrf), ("course", ""), ("up_to", up_to)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "approve all: {}", r.text().await.unwrap());
    let approve = t0.elapsed();
    loop {
        let running = count(
            &db_path,
            "SELECT count(*) FROM slices WHERE state = 'running'",
        );
        if running as usize == slices_n {
            break;
        }
        assert!(
            t0.elapsed().as_secs() < 900,
            "only {running} running after 15 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = t0.elapsed();
    let cpu_running = cpu_secs(pid) - cpu0;
    // What follows the last slice's start (gateway, mail) is the master's work too.
    wait_idle(pid).await;
    let cpu_all = cpu_secs(pid) - cpu0;
    if let Some(mut p) = perf {
        let _ = Command::new("kill")
            .args(["-INT", &p.id().to_string()])
            .status();
        let _ = p.wait();
    }
    let rss = rss_mb(pid);
    let jobs = count(&db_path, "SELECT count(*) FROM jobs") - jobs0;
    let calls = count(&db_path, "SELECT count(*) FROM agent_log") - calls0;
    let runs = count(&db_path, "SELECT count(*) FROM gateway_runs") - runs0;
    let mails = count(&db_path, "SELECT count(*) FROM outbox") - mails0;
    let c = rusqlite::Connection::open(&db_path).unwrap();
    let mut kinds = c
        .prepare("SELECT kind, count(*) FROM jobs GROUP BY kind ORDER BY 2 DESC")
        .unwrap();
    let kinds: Vec<String> = kinds
        .query_map([], |r| {
            Ok(format!(
                "{} {:.2}",
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as f64 / slices_n as f64
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(server);

    let per = |x: f64| x * 1000.0 / slices_n as f64;
    println!(
        "{slices_n} slices approved at once, {nodes} simulated agents (separate processes, 0 ms per operation), the real `slices serve`:"
    );
    println!(
        "  approve all (one POST)     {:.0} ms",
        approve.as_secs_f64() * 1000.0
    );
    println!("  POST to the last running   {:.2} s", wall.as_secs_f64());
    println!(
        "  slices per second          {:.0}",
        slices_n as f64 / wall.as_secs_f64()
    );
    println!(
        "  master CPU per slice       {:.2} ms until the last ran ({:.2} s), {:.2} ms with what followed ({:.2} s)",
        per(cpu_running),
        cpu_running,
        per(cpu_all),
        cpu_all
    );
    println!(
        "  jobs per slice             {:.2} ({})",
        jobs as f64 / slices_n as f64,
        kinds.join(", ")
    );
    println!(
        "  agent calls per slice      {:.2}",
        calls as f64 / slices_n as f64
    );
    println!(
        "  gateway runs               {runs} ({:.1} slices each)",
        slices_n as f64 / runs.max(1) as f64
    );
    println!(
        "  mails per slice            {:.2}",
        mails as f64 / slices_n as f64
    );
    println!("  master RSS afterwards      {rss:.0} MB");
    if std::env::var("PERF").is_ok() {
        println!("  profile: perf report -i /tmp/slices-e2e.perf.data --no-children");
    }
}
