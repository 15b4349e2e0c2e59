//! 1,000 slices provisioned across 50 simulated agents (separate processes, no time per
//! operation) by the master's job loop in this process: wall time, slices per second, master
//! CPU per slice, SQLite commits per slice, and the commits per second this machine can do.
//! Prints figures; asserts only that everything ran.
//!   cargo bench --bench provision_scale

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slices::accounts::{self, Event, Grant, SignUpForm};
use slices::config::Config;
use slices::context::Context;
use slices::domain::{NodeAddress, NodeName, Role, TemplateName};
use slices::jobs::{JobRunner, RunnerConfig};
use slices::slave_link::pki::{self, Ca};

#[path = "common/mod.rs"]
mod bench;
use bench::self_cpu_secs;

const NODES: usize = 50;
const SLICES: usize = 1000;

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
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
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        ("data", dir.path().join("data").display().to_string()),
        ("node_health_secs", "3600".to_string()),
        ("template_sync_minutes", "0".to_string()),
    ];
    let ctx =
        Context::open(Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()).unwrap();
    let ca = Ca::open_or_create(&ctx.config.data.join("ca")).unwrap();

    // 50 agent processes.
    let mut agents = Kill(Vec::new());
    for i in 0..NODES {
        let name = NodeName::parse(&format!("n{i}")).unwrap();
        let root = dir.path().join(format!("n{i}"));
        pki::write_bundle(&root, ca.cert_pem(), &ca.issue_node(&name).unwrap()).unwrap();
        std::fs::create_dir_all(root.join("templates")).unwrap();
        std::fs::write(root.join("templates/t1.tar.gz"), b"t").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            root.join("agent.toml"),
            format!(
                "name = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\nca = \"{r}/ca.pem\"\ncert = \"{r}/agent.pem\"\nkey = \"{r}/agent.key\"\n\
                 driver = \"sim\"\ntemplates = \"{r}/templates\"\nstate = \"{r}/state\"\nsubnet = \"10.{a}.{b}.0/24\"\n",
                r = root.display(),
                a = 100 + i / 200,
                b = i % 200
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
        let address = NodeAddress::parse(&format!("127.0.0.1:{port}")).unwrap();
        ctx.db
            .write(|tx| slices::nodes::add(tx, &name, &address))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));

    // 1,000 students, each with an approved request (not measured).
    let pw = "correct horse battery".to_string();
    let staff_form = SignUpForm {
        username: "staff1".into(),
        email: "staff@example.edu".into(),
        display_name: "Staff".into(),
        password: pw.clone(),
        password_confirm: pw.clone(),
    };
    let grant = |role| Grant {
        role,
        event: Event::AccountCreated,
        creator: None,
        origin: None,
        invite: None,
    };
    let staff = accounts::create_account(
        &ctx.db,
        &ctx.policy,
        staff_form.check().unwrap(),
        grant(Role::Staff),
    )
    .unwrap()
    .0;
    let hash = accounts::password::hash(&pw).unwrap();
    ctx.db
        .write(|tx| {
            slices::slices::add_template(tx, &TemplateName::parse("t1").unwrap(), "")?;
            for i in 0..SLICES {
                let u = slices::domain::Username::parse(&format!("u{i:04}")).unwrap();
                let user = accounts::users::insert(
                    tx,
                    &u,
                    &slices::domain::Email::parse(&format!("u{i}@example.edu")).unwrap(),
                    &slices::domain::DisplayName::parse("U").unwrap(),
                    &hash,
                    Role::Student,
                )?;
                // Only confirmed addresses may ask for a slice.
                accounts::users::set_verified(tx, user.id)?;
                let s = slices::slices::request(
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
                slices::slices::approve(tx, &staff, s.id, None, "")?;
            }
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();

    let mut cfg = RunnerConfig::from_config(&ctx.config).unwrap();
    cfg.concurrency = 64;
    cfg.per_node = 4;
    cfg.tick = Duration::from_millis(20);
    let runner = JobRunner::new(ctx.clone(), cfg).unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let commits0 = ctx.db.commits();
    let cpu0 = self_cpu_secs();
    let t0 = Instant::now();
    let task = tokio::spawn(runner.clone().run(rx));
    loop {
        let running: i64 = ctx
            .db
            .read(|c| {
                Ok::<_, slices::error::Error>(c.query_row(
                    "SELECT count(*) FROM slices WHERE state = 'running'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        if running as usize == SLICES {
            break;
        }
        assert!(
            t0.elapsed().as_secs() < 600,
            "only {running} running after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = t0.elapsed();
    let cpu = self_cpu_secs() - cpu0;
    let commits = ctx.db.commits() - commits0;
    let _ = stop.send(true);
    let _ = task.await;
    let calls: i64 = ctx
        .db
        .read(|c| {
            Ok::<_, slices::error::Error>(c.query_row(
                "SELECT count(*) FROM agent_log WHERE command IN ('create_env', 'start_env')",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    assert_eq!(calls as usize, 2 * SLICES);

    // What this machine can commit: tiny write transactions through the same writer.
    ctx.db
        .write(|tx| {
            tx.execute_batch("CREATE TABLE bench_commits (x INTEGER)")
                .map_err(slices::error::Error::from)
        })
        .unwrap();
    let n = 3000;
    let t = Instant::now();
    for i in 0..n {
        ctx.db
            .write(|tx| {
                tx.execute("INSERT INTO bench_commits VALUES (?1)", [i])
                    .map_err(slices::error::Error::from)
            })
            .unwrap();
    }
    let commit_rate = n as f64 / t.elapsed().as_secs_f64();

    let per_slice_commits = commits as f64 / SLICES as f64;
    println!(
        "{SLICES} slices across {NODES} simulated agents (separate processes, 0 ms per operation):"
    );
    println!("  wall time                 {:.2} s", wall.as_secs_f64());
    println!(
        "  slices per second         {:.0}",
        SLICES as f64 / wall.as_secs_f64()
    );
    println!(
        "  master CPU per slice      {:.3} ms ({:.2} s in all, this process only)",
        cpu * 1000.0 / SLICES as f64,
        cpu
    );
    println!("  SQLite commits per slice  {per_slice_commits:.1} ({commits} in all)");
    println!(
        "  SQLite commits per second this machine can do (tiny transactions): {commit_rate:.0}"
    );
    println!(
        "  so commits alone would allow {:.0} slices per second",
        commit_rate / per_slice_commits
    );
    let _ = Arc::strong_count(&runner);
}
