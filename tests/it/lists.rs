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
