//! The gateway reconcile for 2,000 users, each with a running slice and one key: against a
//! real sshd on loopback (the `ssh` target, which makes real Unix accounts) and against the
//! `local` target. Prints, for each: the first apply (everything new), a full reconcile that
//! finds nothing to do, a full reconcile with one user changed, and one user's own apply.
//! Needs root, sshd and the system-test setup: `bash scripts/bench-gateway.sh`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{gateway_lab, system};

use std::time::Instant;

use rusqlite::params;
use slices::config::Config;
use slices::context::Context;
use slices::domain::{SshPublicKey, Username};
use slices::gateway::{Gateway, Scope, Settings};

const USERS: usize = 2000;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn main() {
    let users: usize = std::env::var("BENCH_GATEWAY_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(USERS);
    let lab = gateway_lab::Lab::start();
    let dir = tempfile::tempdir().unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let (_, student_key) = system::keypair(key_dir.path(), "student");
    let student_key = SshPublicKey::parse(&student_key).unwrap();
    for target in ["ssh", "local"] {
        let data = dir.path().join(target);
        let mut flags = vec![("data", data.display().to_string())];
        flags.extend(lab.settings());
        if target == "local" {
            flags.push(("gateway_target", "local".into()));
        }
        let cfg = Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap();
        let ctx = Context::open(cfg).unwrap();
        fill(&ctx, users, &student_key);
        let settings = Settings::from_config(&ctx.config).unwrap();
        let public = slices::gateway::master_key(&settings).unwrap();
        lab.authorize(&lab.admin, &public);
        let gw = Gateway::new(settings);

        let t = Instant::now();
        let first = gw.apply(&ctx.db, &Scope::All).unwrap();
        let first_ms = ms(t);
        let t = Instant::now();
        let noop = gw.apply(&ctx.db, &Scope::All).unwrap();
        let noop_ms = ms(t);
        assert!(noop.plan.is_empty(), "{}", noop.plan);
        // One user's slice moves to a new address: a full reconcile, then (after another
        // move) that user's own apply.
        let mut one = Vec::new();
        for (round, scope) in [(1, Scope::All), (2, Scope::User(name(7)))] {
            ctx.db
                .write(|tx| {
                    tx.execute(
                        "UPDATE slices SET ip = ?1 WHERE id = 8",
                        [format!("10.200.{round}.250")],
                    )
                    .map_err(slices::error::Error::from)
                })
                .unwrap();
            let t = Instant::now();
            let r = gw.apply(&ctx.db, &scope).unwrap();
            one.push(ms(t));
            assert_eq!(r.plan.changes.len(), 2, "{}", r.plan); // script and map
        }
        println!(
            "gateway {target:>5}, {users} users: first apply {first_ms:8.1} ms ({} changes); \
             full reconcile, nothing to do {noop_ms:7.1} ms; full reconcile, one user changed \
             {:7.1} ms; one user's apply {:6.1} ms",
            first.plan.changes.len(),
            one[0],
            one[1]
        );
        // Everyone's slice is destroyed: the accounts go (and the next target starts clean).
        ctx.db
            .write(|tx| {
                tx.execute("UPDATE slices SET state = 'destroyed', ip = NULL", [])
                    .map_err(slices::error::Error::from)
            })
            .unwrap();
        let t = Instant::now();
        let gone = gw.apply(&ctx.db, &Scope::All).unwrap();
        println!(
            "gateway {target:>5}, {users} users: removing all {:8.1} ms ({} changes)",
            ms(t),
            gone.plan.changes.len()
        );
    }
}

fn name(i: usize) -> Username {
    Username::parse(&format!("gwb{i:05}")).unwrap()
}

/// Users with one running slice and one key each, written straight into the database.
fn fill(ctx: &Context, users: usize, key: &SshPublicKey) {
    ctx.db
        .write(|tx| {
            tx.execute(
                "INSERT INTO nodes (name, address, created_at) VALUES ('n1', '127.0.0.1:1', 0)",
                [],
            )?;
            for i in 0..users {
                let n = name(i);
                tx.execute(
                    "INSERT INTO users (username, email, display_name, password_hash, role,
                                        created_at, password_changed_at)
                     VALUES (?1, ?1 || '@example.edu', ?1, 'x', 'student', 0, 0)",
                    [n.as_str()],
                )?;
                let uid = tx.last_insert_rowid();
                tx.execute(
                    "INSERT INTO slices (user_id, state, template, plan_id, node_id, veid, ip,
                                         hostname, subdomain, requested_at, updated_at)
                     VALUES (?1, 'running', 't', 1, 1, ?2, ?3, ?4, ?4, 0, 0)",
                    params![
                        uid,
                        100 + i as i64,
                        format!("10.100.{}.{}", i / 250, i % 250 + 2),
                        n.as_str()
                    ],
                )?;
                tx.execute(
                    "INSERT INTO ssh_keys (user_id, key, fingerprint, created_at) VALUES (?1, ?2, ?3, 0)",
                    params![uid, key.to_string(), key.fingerprint()],
                )?;
            }
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
}
