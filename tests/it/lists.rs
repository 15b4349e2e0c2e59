//! Staff lists read the real database: the slice list's totals come from `slice_counts` (kept
//! by triggers) and its pages from either end of the id order; both must say exactly what a
//! plain query over the slices table says, whatever happens to the rows.

use slices::domain::{DisplayName, Email, Role, TemplateName, Username};
use slices::slices::State;

const STATES: [&str; 6] = [
    "requested",
    "running",
    "stopped",
    "failed",
    "destroyed",
    "running",
];

fn plain(
    c: &rusqlite::Connection,
    state: Option<&str>,
    limit: u64,
    offset: u64,
) -> (Vec<i64>, u64) {
    let total: u64 = c
        .query_row(
            "SELECT count(*) FROM slices WHERE ?1 IS NULL OR state = ?1",
            [state],
            |r| r.get(0),
        )
        .unwrap();
    let mut stmt = c
        .prepare("SELECT id FROM slices WHERE ?1 IS NULL OR state = ?1 ORDER BY id DESC LIMIT ?2 OFFSET ?3")
        .unwrap();
    let ids = stmt
        .query_map(rusqlite::params![state, limit as i64, offset as i64], |r| {
            r.get(0)
        })
        .unwrap()
        .collect::<rusqlite::Result<Vec<i64>>>()
        .unwrap();
    (ids, total)
}

fn check_every_page(db: &slices::store::Db) {
    db.read(|c| {
        for state in [None, Some("running"), Some("failed"), Some("approved")] {
            let st = state.map(|s| State::parse(s).unwrap());
            let (_, total) = plain(c, state, 7, 0);
            let pages = total.div_ceil(7).max(1);
            // Every page, and one past the end (shown as the last).
            for page in 0..=pages {
                let (rows, got_total) = slices::slices::search(c, "", st, 7, page * 7)?;
                let want_offset = page.min(pages - 1) * 7;
                let (want, _) = plain(c, state, 7, want_offset);
                let got: Vec<i64> = rows.iter().map(|l| l.slice.id).collect();
                assert_eq!(got_total, total, "total in {state:?}");
                assert_eq!(got, want, "page {} of {pages} in {state:?}", page + 1);
                assert!(rows.iter().all(|l| l.username.starts_with("lister")
                    && state.is_none_or(|s| l.slice.state.as_str() == s)));
            }
        }
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
}

#[test]
fn the_slice_list_counts_and_pages_match_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let db = slices::store::Db::open(&dir.path().join("t.db"), 2).unwrap();
    db.write(|tx| {
        slices::slices::add_template(tx, &TemplateName::parse("debian-12").unwrap(), "")?;
        let plan = slices::slices::default_plan(tx)?;
        for u in 0..9 {
            let name = format!("lister{u}");
            let user = slices::accounts::users::insert(
                tx,
                &Username::parse(&name).unwrap(),
                &Email::parse(&format!("{name}@example.edu")).unwrap(),
                &DisplayName::parse("Lister").unwrap(),
                "x",
                Role::Student,
            )?;
            for k in 0..11 {
                tx.execute(
                    "INSERT INTO slices (user_id, state, template, plan_id, hostname, subdomain,
                                         course, purpose, requested_at, updated_at)
                     VALUES (?1, ?2, 'debian-12', ?3, ?4, ?4, '', '', 0, 0)",
                    rusqlite::params![
                        user.id,
                        STATES[(u * 11 + k) % STATES.len()],
                        plan,
                        format!("{name}-{k}")
                    ],
                )?;
            }
        }
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
    check_every_page(&db);
    // States change (also to a state no slice was in), rows go; the counts follow.
    db.write(|tx| {
        tx.execute("UPDATE slices SET state = 'approved' WHERE id % 4 = 0", [])?;
        tx.execute("UPDATE slices SET state = state WHERE id % 3 = 0", [])?;
        tx.execute("DELETE FROM slices WHERE id % 5 = 0", [])?;
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
    check_every_page(&db);
    // A change rolled back leaves the counts as they were.
    let _ = db.write(|tx| {
        tx.execute("UPDATE slices SET state = 'failed'", [])?;
        Err::<(), _>(slices::error::Error::NotFound("on purpose"))
    });
    check_every_page(&db);
}

/// Staff search through its indexes finds exactly what reading every row would: slices whose
/// owner's username or node's name holds the text (any case), or whose address starts with it;
/// users made after the index was built are found (its triggers keep it), and `%`, `_` and
/// short texts are taken as typed.
#[test]
fn staff_search_finds_what_a_plain_reading_finds() {
    use slices::domain::{NodeAddress, NodeName};
    let dir = tempfile::tempdir().unwrap();
    let db = slices::store::Db::open(&dir.path().join("t.db"), 2).unwrap();
    let names = [
        "ana", "ana_b", "anab", "bob", "Bob2", "carla", "dan%x", "danx", "eve",
    ];
    db.write(|tx| {
        slices::slices::add_template(tx, &TemplateName::parse("debian-12").unwrap(), "")?;
        let plan = slices::slices::default_plan(tx)?;
        for n in ["alpha", "beta", "node-ana"] {
            slices::nodes::add(
                tx,
                &NodeName::parse(n).unwrap(),
                &NodeAddress::parse("127.0.0.1:7070").unwrap(),
            )?;
        }
        for (u, name) in names.iter().enumerate() {
            // Some names the username type refuses (upper case, %): written as they would be
            // by an older release or by hand, the search must still take them as they are.
            tx.execute(
                "INSERT INTO users (username, email, display_name, password_hash, role, created_at,
                                    password_changed_at)
                 VALUES (?1, ?1 || '@example.edu', 'X', 'x', 'student', 0, 0)",
                [name],
            )?;
            let user = tx.last_insert_rowid();
            for k in 0..4i64 {
                let node = (u as i64 + k) % 4; // 0: not placed
                let state = ["running", "stopped", "requested", "destroyed"][k as usize];
                tx.execute(
                    "INSERT INTO slices (user_id, state, template, plan_id, node_id, ip, hostname,
                                         subdomain, course, purpose, requested_at, updated_at)
                     VALUES (?1, ?2, 'debian-12', ?3, ?4, ?5, ?6, ?6, '', '', 0, 0)",
                    rusqlite::params![
                        user,
                        state,
                        plan,
                        (node > 0).then_some(node),
                        (node > 0).then(|| format!("10.{node}.{u}.{}", k + 2)),
                        format!("s{u}-{k}")
                    ],
                )?;
            }
        }
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
    let plain = |c: &rusqlite::Connection, q: &str, state: Option<&str>| -> Vec<i64> {
        let mut stmt = c
            .prepare(
                "SELECT s.id, u.username, coalesce(n.name, ''), coalesce(s.ip, ''), s.state
                   FROM slices s JOIN users u ON u.id = s.user_id LEFT JOIN nodes n ON n.id = s.node_id
                  ORDER BY s.id DESC",
            )
            .unwrap();
        let q = q.trim().to_lowercase();
        stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .filter(|(_, user, node, ip, st)| {
            (user.to_lowercase().contains(&q)
                || node.to_lowercase().contains(&q)
                || (!ip.is_empty() && ip.starts_with(&q)))
                && state.is_none_or(|s| s == st)
        })
        .map(|(id, ..)| id)
        .collect()
    };
    let check = |db: &slices::store::Db| {
        db.read(|c| {
            for q in [
                "ana", "ANA", "a", "an", "_", "%", "a_b", "n%x", "bob", "ob2", "node", "alp",
                "10.", "10.2", "10.2.", "10.3.4.3", "0.2", "zzz", " eve ",
            ] {
                for state in [None, Some("running"), Some("destroyed")] {
                    let st = state.map(|s| State::parse(s).unwrap());
                    let want = plain(c, q, state);
                    let (rows, total) = slices::slices::search(c, q, st, 5, 0)?;
                    assert_eq!(total, want.len() as u64, "total for {q:?} in {state:?}");
                    let got: Vec<i64> = rows.iter().map(|l| l.slice.id).collect();
                    assert_eq!(
                        got,
                        want.iter().take(5).copied().collect::<Vec<_>>(),
                        "{q:?} {state:?}"
                    );
                    if want.len() > 5 {
                        let (rows, _) = slices::slices::search(c, q, st, 5, 5)?;
                        let got: Vec<i64> = rows.iter().map(|l| l.slice.id).collect();
                        assert_eq!(
                            got,
                            want.iter().skip(5).take(5).copied().collect::<Vec<_>>()
                        );
                    }
                }
            }
            Ok::<_, slices::error::Error>(())
        })
        .unwrap();
    };
    check(&db);
    // A user renamed and one removed: the trigram index follows.
    db.write(|tx| {
        tx.execute(
            "UPDATE users SET username = 'zzzed' WHERE username = 'carla'",
            [],
        )?;
        tx.execute(
            "DELETE FROM slices WHERE user_id = (SELECT id FROM users WHERE username = 'eve')",
            [],
        )?;
        tx.execute("DELETE FROM users WHERE username = 'eve'", [])?;
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
    check(&db);
    db.read(|c| {
        assert!(slices::slices::search(c, "carla", None, 5, 0)?.0.is_empty());
        assert_eq!(slices::slices::search(c, "zzze", None, 50, 0)?.1, 4);
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
}

/// `node_usage` (schema v21, kept by triggers) says what summing the live slices of each node
/// says, through placements, state changes, moves, plan changes, deletes and a rolled-back
/// write: placement reads it instead of every live slice.
#[test]
fn node_usage_matches_the_live_slices() {
    /// (node, live slices, memory they hold)
    type Usage = (i64, i64, i64);
    let dir = tempfile::tempdir().unwrap();
    let db = slices::store::Db::open(&dir.path().join("t.db"), 2).unwrap();
    let check = |db: &slices::store::Db| {
        let (kept, plain): (Vec<Usage>, Vec<Usage>) = db
            .read(|c| {
                let rows = |sql: &str| -> rusqlite::Result<Vec<Usage>> {
                    c.prepare(sql)?
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                        .collect()
                };
                Ok::<_, slices::error::Error>((
                    rows("SELECT node_id, n, mb FROM node_usage WHERE n > 0 ORDER BY 1")?,
                    rows(
                        "SELECT s.node_id, count(*), sum(p.memory_mb) FROM slices s
                           JOIN plans p ON p.id = s.plan_id
                          WHERE s.node_id IS NOT NULL
                            AND s.state IN ('provisioning', 'running', 'stopped', 'destroying')
                          GROUP BY 1 ORDER BY 1",
                    )?,
                ))
            })
            .unwrap();
        assert_eq!(kept, plain);
        assert!(!plain.is_empty());
    };
    db.write(|tx| {
        slices::slices::add_template(tx, &TemplateName::parse("debian-12").unwrap(), "")?;
        tx.execute(
            "INSERT INTO plans (name, memory_mb, memory_limit_mb, processes, disk_mb, cpu_shares)
             VALUES ('big', 1024, 2048, 500, 0, 2048)",
            [],
        )?;
        for n in 1..=3 {
            slices::nodes::add(
                tx,
                &slices::domain::NodeName::parse(&format!("n{n}")).unwrap(),
                &slices::domain::NodeAddress::parse(&format!("127.0.0.1:{n}")).unwrap(),
            )?;
        }
        let user = slices::accounts::users::insert(
            tx,
            &Username::parse("placer").unwrap(),
            &Email::parse("placer@example.edu").unwrap(),
            &DisplayName::parse("Placer").unwrap(),
            "x",
            Role::Student,
        )?;
        for k in 0..40i64 {
            let state = ["requested", "provisioning", "running", "stopped", "destroyed"][k as usize % 5];
            tx.execute(
                "INSERT INTO slices (user_id, state, template, plan_id, node_id, hostname, subdomain,
                                     course, purpose, requested_at, updated_at)
                 VALUES (?1, ?2, 'debian-12', 1 + ?3 % 2, CASE WHEN ?2 = 'requested' THEN NULL ELSE 1 + ?3 % 3 END,
                         ?4, ?4, '', '', 0, 0)",
                rusqlite::params![user.id, state, k, format!("placer-{k}")],
            )?;
        }
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
    check(&db);
    db.write(|tx| {
        // Placed, started, stopped, destroyed, moved, given another plan, deleted.
        tx.execute("UPDATE slices SET state = 'provisioning', node_id = 2 WHERE state = 'requested' AND id % 2 = 0", [])?;
        tx.execute("UPDATE slices SET state = 'destroying' WHERE state = 'running' AND id % 3 = 0", [])?;
        tx.execute("UPDATE slices SET state = 'destroyed' WHERE state = 'stopped' AND id % 2 = 1", [])?;
        tx.execute("UPDATE slices SET node_id = 3 WHERE node_id = 1 AND id % 2 = 0", [])?;
        tx.execute("UPDATE slices SET plan_id = 2 WHERE id % 7 = 0", [])?;
        tx.execute("UPDATE slices SET state = state WHERE id % 3 = 1", [])?;
        tx.execute("DELETE FROM slices WHERE id % 11 = 0", [])?;
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
    check(&db);
    // Staff change a plan's memory: every node holding its slices follows.
    db.write(|tx| {
        tx.execute("UPDATE plans SET memory_mb = 300 WHERE name = 'big'", [])?;
        Ok::<_, slices::error::Error>(())
    })
    .unwrap();
    check(&db);
    let _ = db.write(|tx| {
        tx.execute("UPDATE slices SET state = 'running', node_id = 1", [])?;
        Err::<(), _>(slices::error::Error::NotFound("on purpose"))
    });
    check(&db);
}
