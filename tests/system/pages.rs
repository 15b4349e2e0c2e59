//! Every page, as a student and as staff, in headless Chromium at 1280 and at 390 CSS pixels
//! (a phone): a screenshot of each in target/screenshots/pages/, no serious or critical
//! accessibility violation (axe-core, run in the page), no error in the console, and no page
//! wider than a phone's screen.

use crate::{system, webdriver};

use std::path::PathBuf;

use crate::fleet::*;
use slices::domain::Role;

fn shot(name: &str, width: u32) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/screenshots/pages")
        .join(format!("{name}-{width}.png"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_accessible_and_fits_a_phone() {
    let Some(_alone) = system::alone("pages test").await else {
        return;
    };
    let f = fleet(1, |_| "10.86.0.0/24".into(), 0).await;
    let tess = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let bob = f.user("bob", Role::Student);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});
    // Something on every page: a running slice, a waiting request, a denied one, a job, a
    // mail, audit rows.
    let running = f.request_and_approve(&alice, &tess);
    f.wait_for(running, slices::slices::State::Running, 30)
        .await;
    let denied = f
        .ctx
        .db
        .write(|tx| {
            let s = slices::slices::request(
                tx,
                &bob,
                &slices::slices::Request {
                    template: slices::domain::TemplateName::parse(TEMPLATE).unwrap(),
                    plan_id: None,
                    course: "CS 3650".into(),
                    purpose: "a second one".into(),
                    name: "web".into(),
                },
            )?;
            slices::slices::deny(tx, &tess, s.id, "One per student this term.", "127.0.0.1")
        })
        .unwrap()
        .id;
    f.ctx
        .db
        .write(|tx| {
            slices::slices::request(
                tx,
                &bob,
                &slices::slices::Request {
                    template: slices::domain::TemplateName::parse(TEMPLATE).unwrap(),
                    plan_id: None,
                    course: "CS 3650".into(),
                    purpose: "homework".into(),
                    name: String::new(),
                },
            )
        })
        .unwrap();
    let job = f
        .ctx
        .db
        .read(|c| slices::jobs::queue::list(c, None, 1))
        .unwrap()[0]
        .id;
    let mail = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 1, 0))
        .unwrap()
        .0[0]
        .id;

    // A course with a roster (after the requests above, which name a course freely).
    f.ctx
        .db
        .write(|tx| -> slices::error::Result<()> {
            tx.execute(
                "INSERT INTO courses (code, title, ends_at, created_at, updated_at)
                 VALUES ('CS3650', 'Computer Systems', 4102444800, 0, 0)",
                [],
            )?;
            let e = |email: Option<&str>, username: Option<&str>, name: &str| {
                slices::records::rosters::NewEntry {
                    email: email.map(str::to_string),
                    username: username.map(str::to_string),
                    name: name.to_string(),
                }
            };
            for entry in [
                e(Some("bob@example.edu"), None, "Bob"),
                e(None, Some("carol"), "Carol"),
            ] {
                slices::records::rosters::put(tx, "CS3650", &entry, tess.id)?;
            }
            Ok(())
        })
        .unwrap();

    let public = ["/", "/login", "/signup", "/forgot"].map(|p| (p.to_string(), None));
    let student = ["/", "/request", "/keys", "/account"]
        .map(|p| (p.to_string(), Some("bob")))
        .into_iter()
        .chain([
            ("/".to_string(), Some("alice")),
            (format!("/slices/{running}/terminal"), Some("alice")),
        ]);
    let staff = [
        "/staff/requests".to_string(),
        "/staff/slices".into(),
        format!("/staff/slices/{running}"),
        format!("/staff/slices/{denied}"),
        "/staff/users".into(),
        "/staff/users/alice".into(),
        "/staff/audit".into(),
        "/staff/jobs".into(),
        format!("/staff/jobs/{job}"),
        "/staff/nodes".into(),
        "/staff/nodes/new".into(),
        "/staff/templates".into(),
        "/staff/plans".into(),
        "/staff/gateway".into(),
        "/staff/settings".into(),
        "/staff/courses".into(),
        "/staff/courses/CS3650/roster".into(),
        "/staff/outbox".into(),
        format!("/staff/outbox/{mail}"),
    ]
    .map(|p| (p, Some("tess")));
    let pages: Vec<(String, Option<&str>)> =
        public.into_iter().chain(student).chain(staff).collect();

    let driver = webdriver::Driver::start();
    let mut problems = Vec::new();
    for (width, phone) in [(1280, false), (390, true)] {
        let mut sessions = std::collections::HashMap::new();
        for (path, who) in &pages {
            let key = who.unwrap_or("");
            if !sessions.contains_key(key) {
                let s = driver.session(if phone { 500 } else { width }, 900).await;
                if phone {
                    s.as_phone(width, 844).await;
                }
                if let Some(who) = who {
                    s.log_in(&base, who).await;
                }
                sessions.insert(key, s);
            }
            let s = &sessions[key];
            s.go(&format!("{base}{path}")).await;
            let name = format!(
                "{}{}",
                who.map(|w| w.to_string())
                    .unwrap_or_else(|| "public".into()),
                path.replace('/', "_")
            );
            s.screenshot(&shot(&name, width)).await;
            for v in s.accessibility_violations().await {
                problems.push(format!("{path} as {key:?} at {width}px: {v}"));
            }
            for e in s.console_errors().await {
                problems.push(format!("{path} as {key:?} at {width}px: console: {e}"));
            }
            if phone {
                let fits = s
                    .script("return [document.documentElement.scrollWidth, window.innerWidth];")
                    .await;
                if fits[0].as_u64() > fits[1].as_u64() {
                    problems.push(format!(
                        "{path} as {key:?}: {} px wide on a {} px phone",
                        fits[0], fits[1]
                    ));
                }
            }
        }
        for (_, s) in sessions {
            s.close().await;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    jobs.stop().await;
    handle.stop(false).await;
}
