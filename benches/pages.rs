//! The pages under load, with 10,000 slices in the database: the student dashboard and the
//! staff slice list (50 per page), 16 connections from `wrk` on this machine. Prints
//! figures; asserts nothing. Needs `wrk` (apt-get install wrk).
//!   cargo bench --bench pages

use std::process::Command;
use std::time::Duration;

use slices::accounts::{self, sessions, Event, Grant, SignUpForm};
use slices::config::Config;
use slices::context::Context;
use slices::domain::{DisplayName, Email, NodeAddress, NodeName, Role, TemplateName, Username};

const SLICES: usize = 10_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn session_for(ctx: &Context, username: &str) -> String {
    let user = ctx
        .db
        .read(|c| accounts::users::by_username(c, username))
        .unwrap()
        .unwrap();
    ctx.db
        .write(|tx| sessions::create(tx, user.id, ctx.policy.life, "127.0.0.1", "wrk"))
        .unwrap()
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [
        ("data", dir.path().join("data").display().to_string()),
        ("listen", "127.0.0.1:0".to_string()),
        ("workers", "2".to_string()),
    ];
    let ctx =
        Context::open(Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()).unwrap();
    let pw = "correct horse battery".to_string();
    for (name, role) in [("staff1", Role::Staff), ("student1", Role::Student)] {
        let form = SignUpForm {
            username: name.into(),
            email: format!("{name}@example.edu"),
            display_name: name.into(),
            password: pw.clone(),
            password_confirm: pw.clone(),
        };
        let grant = Grant {
            role,
            event: Event::AccountCreated,
            creator: None,
            origin: None,
            invite: None,
        };
        accounts::create_account(&ctx.db, &ctx.policy, form.check().unwrap(), grant).unwrap();
    }
    // 10,000 slices of 10,000 students on 40 nodes, running (the student1 has 2).
    let hash = accounts::password::hash(&pw).unwrap();
    ctx.db
        .write(|tx| {
            slices::slices::add_template(tx, &TemplateName::parse("t1").unwrap(), "")?;
            for n in 0..40 {
                slices::nodes::add(tx, &NodeName::parse(&format!("n{n}")).unwrap(), &NodeAddress::parse(&format!("10.0.0.{}:7070", n + 1)).unwrap())?;
            }
            let me = accounts::users::by_username(tx, "student1")?.unwrap();
            let plan = slices::slices::default_plan(tx)?;
            let t = slices::store::now();
            for i in 0..SLICES {
                let owner = if i < 2 {
                    me.id
                } else {
                    accounts::users::insert(
                        tx,
                        &Username::parse(&format!("u{i:05}")).unwrap(),
                        &Email::parse(&format!("u{i}@example.edu")).unwrap(),
                        &DisplayName::parse("U").unwrap(),
                        &hash,
                        Role::Student,
                    )?
                    .id
                };
                let node = (i % 40) as i64 + 1;
                tx.execute(
                    "INSERT INTO slices (user_id, state, template, plan_id, node_id, veid, ip, hostname, subdomain, requested_at, decided_at, updated_at)
                     VALUES (?1, 'running', 't1', ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?7, ?7)",
                    rusqlite::params![owner, plan, node, 101 + (i / 40) as i64, format!("10.{}.{}.{}", node, (i / 40) / 250, (i / 40) % 250 + 2), format!("s{i}"), t],
                )?;
                let id = tx.last_insert_rowid();
                for m in ["Approved by staff1.", "Placed on node.", "Container created.", "Container started.", "Running."] {
                    slices::slices::event(tx, id, m)?;
                }
            }
            // The student's two slices have 14 days of usage samples, one every 5 minutes.
            for slice in [1i64, 2] {
                for k in 0..(14 * 288) {
                    let at = t - k * 300;
                    let held = (100 + (k % 50)) << 20;
                    slices::usage::record(
                        tx,
                        slice,
                        at,
                        &[
                            slices::agent::driver::Counter { resource: "memory".into(), held: held as u64, maxheld: held as u64, barrier: 256 << 20, limit: 512 << 20, failcnt: 0 },
                            slices::agent::driver::Counter { resource: "numproc".into(), held: 20, maxheld: 25, barrier: 240, limit: 240, failcnt: 0 },
                        ],
                    )?;
                }
            }
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
    let staff = session_for(&ctx, "staff1");
    let student = session_for(&ctx, "student1");
    let app = slices::web::Application::build(ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    tokio::spawn(app.run_until_stopped());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let secs = std::env::var("SECS").unwrap_or_else(|_| "10".into());
    for (what, path, cookie) in [
        (
            "student dashboard (2 slices, usage charts)",
            "/".to_string(),
            &student,
        ),
        (
            "staff slice list, page 1 of 200",
            "/staff/slices".to_string(),
            &staff,
        ),
        (
            "staff slice list, searched by node (2,750 match), page 3",
            "/staff/slices?q=n1&page=3".to_string(),
            &staff,
        ),
    ] {
        let page = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .header("Cookie", format!("slices_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let bytes = page.bytes().await.unwrap().len();
        let out = tokio::task::spawn_blocking({
            let (url, cookie, secs) = (
                format!("{base}{path}"),
                format!("Cookie: slices_session={cookie}"),
                secs.clone(),
            );
            move || {
                Command::new("wrk")
                    .args([
                        "-t2",
                        "-c16",
                        &format!("-d{secs}s"),
                        "--latency",
                        "-H",
                        &cookie,
                        &url,
                    ])
                    .output()
            }
        })
        .await
        .unwrap()
        .expect("wrk (apt-get install wrk)");
        let text = String::from_utf8_lossy(&out.stdout);
        let pick = |label: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(label))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
                .unwrap_or_default()
        };
        let non2xx = text
            .lines()
            .find(|l| l.contains("Non-2xx"))
            .unwrap_or("")
            .trim()
            .to_string();
        println!(
            "{what}: {} req/s, median {}, p99 {}, page {} bytes {}",
            pick("Requests/sec:"),
            pick("50%"),
            pick("99%"),
            bytes,
            non2xx
        );
    }
}
