//! Slices side by side with the Django peer it replaces (`../shared/peers/django`), in one run
//! on the same cores and the same data shape: 2,000 users (`staff00`..`staff09` staff, the rest
//! `student0010`..`student1999`), 10 nodes, 3 templates, 10,000 slices, 5 per user, of which
//! user i has 1 + i % 5 live and the rest destroyed. Both are real servers: gunicorn with the
//! peer's app, and the `slices serve` binary on a data folder this benchmark seeds. Each page
//! is loaded with `wrk -t2 -c16` (a warm-up, then a measured run with --latency), Django and
//! Slices alternating, in ROUNDS rounds (the order flips each round); every page's content is
//! checked before and after each run. Prints the medians, the ratios, /healthz (the
//! framework's ceiling here) and both servers' memory. Asserts nothing.
//!
//!   bash scripts/bench-vs-django.sh        # installs wrk; about 6 minutes; as root on Debian 12
//!
//! Knobs: ROUNDS (3), SECS (10), WARMUP (3), PEER_DIR, PEER_WORK (/tmp/slices-vs-django),
//! BENCH_USERS (2000; 20000 gives 100,000 slices), DJANGO_SETUP (gthread_w4t4 or sync_w2;
//! default: the faster on the dashboard in a short trial).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use slices::accounts::{self, sessions};
use slices::config::Config;
use slices::context::Context;
use slices::domain::{DisplayName, Email, NodeAddress, NodeName, Role, TemplateName, Username};

#[path = "common/mod.rs"]
mod bench;
use bench::{free_port, median, tree_cpu_secs, tree_rss_mb, wait_idle};

const PASSWORD: &str = "peer-bench-pw";
const STUDENT: &str = "student0014";
const STAFF: &str = "staff00";
const TEMPLATES: [&str; 3] = [
    "debian-12-ssh_amd64",
    "ubuntu-22.04-minimal_amd64",
    "centos-7-base_x86_64",
];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// A server this benchmark started; stopped when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn run_ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The peer's venv (made once), a fresh database, migrated and seeded.
fn prepare_django(peer: &Path, work: &Path) -> PathBuf {
    let venv = work.join("venv");
    if !venv.join("bin/python").exists() {
        run_ok(
            Command::new("/usr/bin/python3")
                .args(["-m", "venv"])
                .arg(&venv),
            "python3 -m venv",
        );
    }
    run_ok(
        Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "-r"])
            .arg(peer.join("requirements.txt")),
        "pip install",
    );
    let db = work.join("django.sqlite3");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    for args in [
        vec!["manage.py", "migrate", "-v0"],
        vec!["manage.py", "seed", "--password", PASSWORD],
    ] {
        run_ok(
            Command::new(venv.join("bin/python"))
                .args(&args)
                .current_dir(peer.join("django_peer"))
                .env("PEER_DB", &db)
                .env("DJANGO_SETTINGS_MODULE", "peer.settings"),
            "the peer's manage.py",
        );
    }
    db
}

async fn wait_answers(url: &str, child: &mut Child) {
    for _ in 0..300 {
        if let Ok(r) = reqwest::get(url).await {
            if r.status().is_success() {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{url}: the server ended ({status})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not answer");
}

async fn start_django(peer: &Path, work: &Path, db: &Path, setup: &str) -> Server {
    let port = free_port();
    let args: &[&str] = match setup {
        "sync_w2" => &["--workers", "2", "--worker-class", "sync"],
        _ => &[
            "--workers",
            "4",
            "--worker-class",
            "gthread",
            "--threads",
            "4",
        ],
    };
    let mut child = Command::new(work.join("venv/bin/gunicorn"))
        .args(["peer.wsgi:application", "--chdir"])
        .arg(peer.join("django_peer"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(args)
        .args(["--no-control-socket", "--log-level", "warning"])
        .env("PEER_DB", db)
        .env("DJANGO_SETTINGS_MODULE", "peer.settings")
        .stdout(Stdio::null())
        .spawn()
        .expect("gunicorn");
    let base = format!("http://127.0.0.1:{port}");
    wait_answers(&format!("{base}/login/"), &mut child).await;
    Server { child, base }
}

fn django_session(peer: &Path, work: &Path, base: &str, user: &str) -> String {
    let out = Command::new(work.join("venv/bin/python"))
        .arg(peer.join("bench_helpers.py"))
        .args(["login", base, user, PASSWORD])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("sessionid={}", String::from_utf8_lossy(&out.stdout).trim())
}

/// Slices' data folder with the peer's shape; the cookies of the student and the staff member.
fn seed_slices(data: &Path, users: usize) -> (String, String) {
    let flags = [("data", data.display().to_string())];
    let ctx =
        Context::open(Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()).unwrap();
    let hash = accounts::password::hash(PASSWORD).unwrap();
    ctx.db
        .write(|tx| {
            for t in TEMPLATES {
                slices::slices::add_template(tx, &TemplateName::parse(t).unwrap(), "")?;
            }
            for n in 1..=10 {
                slices::nodes::add(
                    tx,
                    &NodeName::parse(&format!("slave{n:02}")).unwrap(),
                    // Nobody answers there: jobs for these nodes fail at once.
                    &NodeAddress::parse(&format!("127.0.0.1:{}", n)).unwrap(),
                )?;
            }
            // Enabled, as a lab's are: their health checks find them down, and the jobs the
            // first start queues for them (a hop key for every slice) wait for them.
            let plan = slices::slices::default_plan(tx)?;
            let t = slices::store::now();
            let live_states = [
                "running", "running", "running", "running", "running", "running", "stopped",
                "stopped", "requested", "approved",
            ];
            let mut veid = 100i64;
            for i in 0..users {
                let name = if i < 10 {
                    format!("staff{i:02}")
                } else {
                    format!("student{i:04}")
                };
                let role = if i < 10 { Role::Staff } else { Role::Student };
                let user = accounts::users::insert(
                    tx,
                    &Username::parse(&name).unwrap(),
                    &Email::parse(&format!("{name}@ccs.example.edu")).unwrap(),
                    &DisplayName::parse(&format!("{name} Test")).unwrap(),
                    &hash,
                    role,
                )?;
                tx.execute(
                    "UPDATE users SET email_verified_at = ?2 WHERE id = ?1",
                    rusqlite::params![user.id, t],
                )?;
                let live = 1 + i % 5;
                for k in 0..5 {
                    veid += 1;
                    let template = TEMPLATES[(i + k) % 3];
                    let subdomain = if k == 0 {
                        name.clone()
                    } else {
                        format!("{name}-{}", k + 1)
                    };
                    if k < live {
                        let state = live_states[(i * 5 + k) % live_states.len()];
                        let placed = matches!(state, "running" | "stopped");
                        let node = (veid % 10) + 1;
                        tx.execute(
                            "INSERT INTO slices (user_id, state, template, plan_id, node_id, veid, ip, hostname,
                                                 subdomain, course, purpose, requested_at, decided_at, updated_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 'CS 3650', 'coursework', ?9, ?9, ?9)",
                            rusqlite::params![
                                user.id,
                                state,
                                template,
                                plan,
                                placed.then_some(node),
                                placed.then_some(veid),
                                // Unique on the node up to 100,000s of slices (a
                                // second octet per 62,500).
                                placed.then(|| {
                                    format!(
                                        "10.{}.{}.{}",
                                        10 + node + 10 * (veid / 62_500),
                                        (veid / 250) % 250,
                                        veid % 250 + 2
                                    )
                                }),
                                subdomain,
                                t - (veid % 1000) * 60,
                            ],
                        )?;
                        let id = tx.last_insert_rowid();
                        for m in ["Requested.", "Approved by staff00.", "Placed.", "Running."] {
                            slices::slices::event(tx, id, m)?;
                        }
                    } else {
                        tx.execute(
                            "INSERT INTO slices (user_id, state, template, plan_id, hostname, subdomain,
                                                 course, purpose, requested_at, decided_at, updated_at)
                             VALUES (?1, 'destroyed', ?2, ?3, ?4, ?4, 'CS 3650', 'coursework', ?5, ?5, ?5)",
                            rusqlite::params![user.id, template, plan, subdomain, t - 86400 * 30],
                        )?;
                    }
                }
            }
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
    let cookie = |name: &str| {
        let user = ctx
            .db
            .read(|c| accounts::users::by_username(c, name))
            .unwrap()
            .unwrap();
        let value = ctx
            .db
            .write(|tx| sessions::create(tx, user.id, ctx.policy.life, "127.0.0.1", "wrk"))
            .unwrap();
        format!("slices_session={value}")
    };
    (cookie(STUDENT), cookie(STAFF))
}

async fn start_slices(data: &Path) -> Server {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_slices"))
        .args(["serve", "--data"])
        .arg(data)
        .env("SLICES_LISTEN", format!("127.0.0.1:{port}"))
        .env("SLICES_EMBEDDED_AGENT", "off")
        // The address students are sent to is the lab's, whatever port this run listens on
        // (it is written into every login script: a new one each start would change them all).
        .env("SLICES_PUBLIC_URL", "http://slices.example.edu")
        .env("SLICES_SSH_LISTEN", "")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("slices");
    let base = format!("http://127.0.0.1:{port}");
    wait_answers(&format!("{base}/healthz"), &mut child).await;
    Server { child, base }
}

fn queued_jobs(data: &Path) -> i64 {
    let c = rusqlite::Connection::open(data.join("slices.db")).unwrap();
    c.query_row(
        "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// The page is the real one: 200 (no redirect to the log-in), with `marker` in it.
async fn check(url: &str, cookie: &str, marker: &str) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.get(url);
    if !cookie.is_empty() {
        req = req.header("Cookie", cookie);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 200, "{url}");
    assert!(body.contains(marker), "{url}: {marker:?} not in\n{body}");
}

struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn ms(text: &str) -> f64 {
    let (num, unit) = text.split_at(text.find(|c: char| c.is_alphabetic()).unwrap_or(text.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    n * match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        _ => f64::NAN,
    }
}

fn wrk(url: &str, cookie: &str, secs: &str, latency: bool) -> Measured {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c16", &format!("-d{secs}s")]);
    if latency {
        cmd.arg("--latency");
    }
    if !cookie.is_empty() {
        cmd.args(["-H", &format!("Cookie: {cookie}")]);
    }
    let out = cmd.arg(url).output().expect("wrk (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "{url}:\n{text}"
    );
    let pick = |label: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(label))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("")
            .to_string()
    };
    Measured {
        rps: pick("Requests/sec:").parse().unwrap_or(0.0),
        p50_ms: ms(&pick("50%")),
        p99_ms: ms(&pick("99%")),
    }
}

async fn run() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let peer = PathBuf::from(env_or(
        "PEER_DIR",
        &root.join("../shared/peers/django").display().to_string(),
    ));
    let work = PathBuf::from(env_or("PEER_WORK", "/tmp/slices-vs-django"));
    let rounds: usize = env_or("ROUNDS", "3").parse().unwrap();
    let (secs, warmup) = (env_or("SECS", "10"), env_or("WARMUP", "3"));
    let users: usize = env_or("BENCH_USERS", "2000").parse().unwrap();
    std::fs::create_dir_all(&work).unwrap();

    // The peer's seed has one shape (10,000 slices): at any other size Slices runs alone.
    let peer_too = users == 2000;
    let db = if peer_too {
        eprintln!("preparing the Django peer (venv, migrate, seed)...");
        prepare_django(&peer, &work)
    } else {
        eprintln!(
            "{} slices: the peer has 10,000 only; Slices alone",
            users * 5
        );
        PathBuf::new()
    };
    eprintln!("seeding Slices with {} slices...", users * 5);
    let data = work.join("slices-data");
    let _ = std::fs::remove_dir_all(&data);
    let seeded = std::time::Instant::now();
    let (student, staff) = seed_slices(&data, users);
    eprintln!("seeded in {:.1} s", seeded.elapsed().as_secs_f64());

    let setup = match std::env::var("DJANGO_SETUP") {
        Ok(s) => s,
        Err(_) if !peer_too => "none".into(),
        Err(_) => {
            // The faster of the peer's two set-ups on the dashboard, in a short trial.
            let mut best = ("", 0.0);
            for setup in ["sync_w2", "gthread_w4t4"] {
                let d = start_django(&peer, &work, &db, setup).await;
                let sid = django_session(&peer, &work, &d.base, STUDENT);
                let m = wrk(&format!("{}/dashboard/", d.base), &sid, "3", false);
                eprintln!("django {setup}: dashboard {:.0} req/s", m.rps);
                if m.rps > best.1 {
                    best = (setup, m.rps);
                }
            }
            best.0.to_string()
        }
    };
    let django = if peer_too {
        Some(start_django(&peer, &work, &db, &setup).await)
    } else {
        None
    };
    let (d_student, d_staff) = match &django {
        Some(d) => (
            django_session(&peer, &work, &d.base, STUDENT),
            django_session(&peer, &work, &d.base, STAFF),
        ),
        None => Default::default(),
    };
    // The first start builds the gateway for every user (real work, printed); the jobs it
    // queues for the nodes (which are not there) are then cancelled, and the second start is a
    // restart with nothing changed, as after an upgrade.
    for start in [
        "first start (builds the gateway)",
        "restart, nothing changed",
    ] {
        let srv = start_slices(&data).await;
        let pid = srv.child.id();
        let began = std::time::Instant::now();
        wait_idle(pid).await;
        eprintln!(
            "slices {start}: {:.2} s of CPU in {:.1} s, {:.1} MB RSS, {} jobs queued",
            tree_cpu_secs(pid),
            began.elapsed().as_secs_f64(),
            tree_rss_mb(pid),
            queued_jobs(&data)
        );
        drop(srv);
        let c = rusqlite::Connection::open(data.join("slices.db")).unwrap();
        c.execute(
            "UPDATE jobs SET state = 'cancelled' WHERE state IN ('queued', 'running')",
            [],
        )
        .unwrap();
    }
    let slices_srv = start_slices(&data).await;
    let pid = slices_srv.child.id();
    wait_idle(pid).await;
    // Serving, not starting: the start-up run's memory is given back within 15 s.
    let started_rss = tree_rss_mb(pid);
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    eprintln!(
        "slices serving: {started_rss:.1} MB RSS once idle after start, {:.1} MB 16 s later",
        tree_rss_mb(pid)
    );

    let total = users * 5;
    let last = total.div_ceil(50);
    // name | Django path, cookie, marker | Slices path, cookie, marker
    let pages = [
        (
            "login page",
            (
                "/login/".to_string(),
                String::new(),
                "csrfmiddlewaretoken".to_string(),
            ),
            (
                "/login".to_string(),
                String::new(),
                "name=\"csrf\"".to_string(),
            ),
        ),
        (
            "student dashboard (5 slices)",
            (
                "/dashboard/".into(),
                d_student.clone(),
                "id=\"my-envs\"".into(),
            ),
            ("/".into(), student.clone(), format!("{STUDENT}-5")),
        ),
        (
            "staff slice list, page 1",
            (
                "/staff/environments/?page=1".into(),
                d_staff.clone(),
                format!("{total} environments; page 1 of {last}"),
            ),
            (
                "/staff/slices".into(),
                staff.clone(),
                format!("Page 1 of {last}"),
            ),
        ),
        (
            "staff slice list, last page",
            (
                format!("/staff/environments/?page={last}"),
                d_staff.clone(),
                format!("{total} environments; page {last} of {last}"),
            ),
            (
                format!("/staff/slices?page={last}"),
                staff.clone(),
                format!("Page {last} of {last}"),
            ),
        ),
    ];
    let mut figures: Vec<(Vec<Measured>, Vec<Measured>)> =
        pages.iter().map(|_| (Vec::new(), Vec::new())).collect();
    let mut healthz = Vec::new();
    let (mut django_rss, mut slices_rss) = (0.0f64, 0.0f64);
    for round in 0..rounds {
        for (i, (name, d, s)) in pages.iter().enumerate() {
            let order = if (round + i) % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_django in order {
                let (base, (path, cookie, marker)) = match (is_django, &django) {
                    (true, Some(django)) => (&django.base, d),
                    (true, None) => continue,
                    (false, _) => (&slices_srv.base, s),
                };
                let url = format!("{base}{path}");
                check(&url, cookie, marker).await;
                wrk(&url, cookie, &warmup, false);
                let m = wrk(&url, cookie, &secs, true);
                check(&url, cookie, marker).await;
                eprintln!(
                    "round {} {name} {}: {:.0} req/s",
                    round + 1,
                    if is_django { "django" } else { "slices" },
                    m.rps
                );
                if let (true, Some(django)) = (is_django, &django) {
                    django_rss = django_rss.max(tree_rss_mb(django.child.id()));
                    figures[i].0.push(m);
                } else {
                    slices_rss = slices_rss.max(tree_rss_mb(pid));
                    figures[i].1.push(m);
                }
            }
        }
        let h = wrk(&format!("{}/healthz", slices_srv.base), "", &secs, false);
        eprintln!("round {} healthz: {:.0} req/s", round + 1, h.rps);
        healthz.push(h.rps);
    }

    let healthz = median(healthz);
    println!();
    println!(
        "{total} slices, {users} users; Django set-up {setup}; medians of {rounds} rounds of {secs} s, wrk -t2 -c16"
    );
    println!("| page | Django req/s (p99) | Slices req/s (p99) | ratio |");
    println!("| --- | --- | --- | --- |");
    for ((name, _, _), (d, s)) in pages.iter().zip(&figures) {
        let (drps, srps) = (
            median(d.iter().map(|m| m.rps).collect()),
            median(s.iter().map(|m| m.rps).collect()),
        );
        let (dp99, sp99) = (
            median(d.iter().map(|m| m.p99_ms).collect()),
            median(s.iter().map(|m| m.p99_ms).collect()),
        );
        let sp50 = median(s.iter().map(|m| m.p50_ms).collect());
        // The peer is not run at sizes it has no seed for: its columns say so.
        let (django, ratio) = if d.is_empty() {
            ("not run".to_string(), "—".to_string())
        } else {
            (
                format!("{drps:.0} ({dp99:.1} ms)"),
                format!("{:.1}x", srps / drps),
            )
        };
        println!("| {name} | {django} | {srps:.0} ({sp99:.1} ms; p50 {sp50:.2} ms) | {ratio} |");
        if name.starts_with("student dashboard") {
            println!(
                "dashboard: {:.0} % of /healthz ({healthz:.0} req/s)",
                100.0 * srps / healthz
            );
        }
    }
    if figures.iter().all(|(d, _)| d.is_empty()) {
        println!("memory after the load: Slices {slices_rss:.0} MB RSS");
    } else {
        println!(
            "memory after the load: Django {django_rss:.0} MB RSS (all processes), Slices {slices_rss:.0} MB RSS"
        );
    }

    // Staff search (the peer has none): by node, by part of a username, by a state.
    println!();
    println!("| Slices staff search | req/s | p50 | p99 |");
    println!("| --- | --- | --- | --- |");
    for (name, path, marker) in [
        ("by node (slave03)", "/staff/slices?q=slave03", "slave03"),
        (
            "by user text (t0142)",
            "/staff/slices?q=t0142",
            "student0142",
        ),
        (
            "by state (stopped)",
            "/staff/slices?state=stopped",
            "Page 1 of",
        ),
        (
            "by state, last page",
            "/staff/slices?state=running&page=100000",
            "Page ",
        ),
    ] {
        let url = format!("{}{path}", slices_srv.base);
        check(&url, &staff, marker).await;
        wrk(&url, &staff, &warmup, false);
        let m = wrk(&url, &staff, &secs, true);
        check(&url, &staff, marker).await;
        println!(
            "| {name} | {:.0} | {:.2} ms | {:.1} ms |",
            m.rps, m.p50_ms, m.p99_ms
        );
    }
    println!(
        "Slices memory after the searches: {:.0} MB RSS",
        tree_rss_mb(pid)
    );
    login_burst(&slices_srv.base, pid).await;
}

/// 64 students log in at once (each a browser of its own: the form, then the POST), while the
/// master's RSS is read every 10 ms: before, the peak, right after and once freed memory is
/// given back (every 15 s).
async fn login_burst(base: &str, pid: u32) {
    const AT_ONCE: usize = 64;
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    let before = tree_rss_mb(pid);
    let peak = std::sync::Arc::new(std::sync::Mutex::new(before));
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let now = tree_rss_mb(pid);
                {
                    let mut p = peak.lock().unwrap();
                    *p = p.max(now);
                }
                tokio::select! {
                    _ = done_rx.changed() => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
                }
            }
        })
    };
    let began = std::time::Instant::now();
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..AT_ONCE {
        let base = base.to_string();
        tries.spawn(async move {
            let client = reqwest::Client::builder()
                .cookie_store(true)
                .build()
                .unwrap();
            let form = client
                .get(format!("{base}/login"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let mark = "name=\"csrf\" value=\"";
            let at = form.find(mark).unwrap() + mark.len();
            let csrf = form[at..at + form[at..].find('"').unwrap()].to_string();
            let user = format!("student{:04}", 10 + i); // the first ten are staff00..09
            let page = client
                .post(format!("{base}/login"))
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("login", user.as_str()),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            // The dashboard, with the student's first slice on it.
            page.contains("<h1>My slices</h1>") && page.contains(&user)
        });
    }
    let mut ok = 0;
    while let Some(r) = tries.join_next().await {
        ok += usize::from(r.unwrap());
    }
    let took = began.elapsed();
    let after = tree_rss_mb(pid);
    let _ = done_tx.send(true);
    let _ = sampler.await;
    let peak = *peak.lock().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(16)).await;
    println!();
    println!(
        "{AT_ONCE} log-ins at once: {ok} logged in, in {:.2} s; Slices RSS {before:.1} MB before, \
         {peak:.1} MB at the peak, {after:.1} MB right after, {:.1} MB 16 s later",
        took.as_secs_f64(),
        tree_rss_mb(pid)
    );
}
