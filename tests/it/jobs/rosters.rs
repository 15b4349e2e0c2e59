//! A course roster as staff use it, with real agents behind: 200 students pasted and invited
//! by mail, half of them signing up through the pages and getting a running slice without
//! anyone approving it; a bad paste refused whole; a local account that only shares a
//! username-only line's name gets no approval in advance.

use reqwest::StatusCode;
use slices::domain::Role;

use crate::fleet::*;
use crate::http::{browser, form, page};

/// Asks for a slice of CS3650 through the request form; the answer's status.
async fn ask_for_cs3650(c: &reqwest::Client, base: &str) -> StatusCode {
    form(
        c,
        base,
        "/request",
        "/request",
        &[("template", TEMPLATE), ("course", "CS3650")],
    )
    .await
}

/// Marks `username`'s address confirmed (the mailed link is tested on its own).
fn confirm_address(f: &Fleet, username: &str) {
    f.ctx
        .db
        .write(|tx| {
            let u = slices::accounts::users::by_username(tx, username)?.unwrap();
            slices::accounts::users::set_verified(tx, u.id)
        })
        .unwrap();
}

/// The roster invitation queued for `addr`, rendered as it would be sent.
fn invite(f: &Fleet, addr: &str) -> slices::mail::Rendered {
    let message = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 500, 0))
        .unwrap()
        .0
        .into_iter()
        .find(|m| m.kind == "roster_invite" && m.to_addr == addr)
        .unwrap();
    slices::mail::render(
        slices::mail::Kind::RosterInvite,
        &message.data,
        &f.ctx.site(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roster_of_200_invited_and_half_get_slices_without_approval() {
    let f = fleet(2, |i| format!("10.88.{i}.0/24"), 5).await;
    f.ctx
        .db
        .write(|tx| -> slices::error::Result<usize> {
            Ok(tx.execute(
                "INSERT INTO courses (code, title, ends_at, created_at, updated_at)
                 VALUES ('CS3650', 'Computer Systems', 4102444800, 0, 0)",
                [],
            )?)
        })
        .unwrap();
    f.user("tess", Role::Staff);
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let jobs = f.run_jobs(|_| {});

    let tess = browser();
    crate::http::log_in(&tess, &base, "tess").await;
    let roster_url = format!("{base}/staff/courses/CS3650/roster");
    let empty = page(&tess, &roster_url).await;
    assert!(empty.contains("Nobody on it yet."), "{empty}");
    // Students may not see or change it.
    f.user("sam", Role::Student);
    let sam = browser();
    crate::http::log_in(&sam, &base, "sam").await;
    let r = sam.get(&roster_url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let mut csv = String::from("Email,Name,Course\n");
    for i in 0..200 {
        csv.push_str(&format!(
            "s{i:03}@example.edu,\"Student, Number {i}\",CS3650\n"
        ));
    }
    // A paste with two bad lines is refused whole, each named, the text kept.
    let bad = format!("{csv}not-an-address,Nobody\nx@example.edu,Someone,CS9999\n");
    let token = crate::http::csrf(&tess, &roster_url).await;
    let r = tess
        .post(&roster_url)
        .header("Origin", &base)
        .form(&[("csrf", token.as_str()), ("csv", bad.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("Line 202: not-an-address"), "{body}");
    assert!(
        body.contains("Line 203: it names the course CS9999"),
        "{body}"
    );
    assert!(body.contains("s199@example.edu,&quot;Student, Number 199&quot;,CS3650"));
    assert_eq!(f.count("SELECT count(*) FROM roster_entries"), 0);
    assert_eq!(
        f.count("SELECT count(*) FROM outbox WHERE kind = 'roster_invite'"),
        0
    );

    // The good paste: 200 on the roster, each address invited once.
    let status = form(
        &tess,
        &base,
        "/staff/courses/CS3650/roster",
        "/staff/courses/CS3650/roster",
        &[("csv", &csv)],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(f.count("SELECT count(*) FROM roster_entries"), 200);
    assert_eq!(
        f.count(
            "SELECT count(DISTINCT to_addr) FROM outbox WHERE kind = 'roster_invite'
              AND to_addr LIKE 's%@example.edu'"
        ),
        200
    );
    let rendered = invite(&f, "s007@example.edu");
    assert!(rendered.subject.contains("CS3650"));
    assert!(
        rendered.text.contains(&format!(
            "{}/signup?email=s007%40example.edu",
            f.ctx.site().base_url
        )),
        "{}",
        rendered.text
    );
    // The same paste again adds nobody and invites nobody twice.
    form(
        &tess,
        &base,
        "/staff/courses/CS3650/roster",
        "/staff/courses/CS3650/roster",
        &[("csv", &csv)],
    )
    .await;
    assert_eq!(f.count("SELECT count(*) FROM roster_entries"), 200);
    assert_eq!(
        f.count("SELECT count(*) FROM outbox WHERE kind = 'roster_invite'"),
        200
    );

    // Half of them follow the link, sign up with the address, confirm it and ask.
    let new_requests_before = f.count("SELECT count(*) FROM outbox WHERE kind = 'new_request'");
    for i in 0..100 {
        let c = browser();
        let email = format!("s{i:03}@example.edu");
        let signup = page(&c, &format!("{base}/signup?email=s{i:03}%40example.edu")).await;
        assert!(signup.contains(&format!("value=\"{email}\"")), "prefilled");
        let status = form(
            &c,
            &base,
            "/signup",
            "/signup",
            &[
                ("username", &format!("s{i:03}")),
                ("email", &email),
                ("display_name", &format!("Student {i}")),
                ("password", "correct horse battery"),
                ("password_confirm", "correct horse battery"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        // (The mailed confirmation link is tested on its own; here the address is confirmed.)
        confirm_address(&f, &format!("s{i:03}"));
        assert_eq!(
            ask_for_cs3650(&c, &base).await,
            StatusCode::SEE_OTHER,
            "s{i:03}"
        );
    }
    // Nobody was asked to approve them: no request waits, no staff mail about one.
    assert_eq!(
        f.count("SELECT count(*) FROM slices WHERE state = 'requested'"),
        0
    );
    assert_eq!(
        f.count("SELECT count(*) FROM outbox WHERE kind = 'new_request'"),
        new_requests_before
    );
    assert_eq!(
        f.count(
            "SELECT count(*) FROM slice_events
              WHERE message LIKE 'Approved in advance by tess: s0__ is on the roster of CS3650.'"
        ),
        100
    );

    // Someone not on the roster asks as before; so does a local account that only shares the
    // name of a username-only line (a username typed at sign-up proves nothing).
    let status = form(
        &tess,
        &base,
        "/staff/courses/CS3650/roster",
        "/staff/courses/CS3650/roster",
        &[("csv", "grace,Grace Hopper\nsam@example.edu,Sam")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Sam has an account with that address already: his invitation says to log in.
    let text = invite(&f, "sam@example.edu").text;
    assert!(
        text.contains("Log in to Slices:") && !text.contains("/signup"),
        "{text}"
    );
    confirm_address(&f, "sam");
    for name in ["mallory", "grace"] {
        f.user(name, Role::Student);
        let c = browser();
        crate::http::log_in(&c, &base, name).await;
        assert_eq!(
            ask_for_cs3650(&c, &base).await,
            StatusCode::SEE_OTHER,
            "{name}"
        );
    }
    assert_eq!(
        f.count("SELECT count(*) FROM slices WHERE state = 'requested'"),
        2
    );

    // The hundred slices come up without anyone's hand.
    f.wait_count(
        "SELECT count(*) FROM slices s JOIN users u ON u.id = s.user_id
          WHERE s.state = 'running' AND u.username LIKE 's0__'",
        100,
        180,
    )
    .await;
    let roster = page(&tess, &roster_url).await;
    assert!(
        roster.contains(
            "<strong>202</strong> on the roster · <strong>101</strong> have an account · \
             <strong>100</strong> have a slice · <strong>101</strong> have not started"
        ),
        "{roster}"
    );
    assert!(roster.contains("1 have no address to invite"));

    // Taking someone off: the count drops, audited; a mistyped entry is said to be unknown.
    let status = form(
        &tess,
        &base,
        "/staff/courses/CS3650/roster",
        "/staff/courses/CS3650/roster/remove",
        &[("entry", "s150@example.edu")],
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(f.count("SELECT count(*) FROM roster_entries"), 201);
    assert_eq!(
        f.count("SELECT count(*) FROM audit WHERE event = 'roster_entry_removed' AND detail = 's150@example.edu'"),
        1
    );
    let status = form(
        &tess,
        &base,
        "/staff/courses/CS3650/roster",
        "/staff/courses/CS3650/roster/remove",
        &[("entry", "nobody@example.edu")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    jobs.stop().await;
    handle.stop(false).await;
}
