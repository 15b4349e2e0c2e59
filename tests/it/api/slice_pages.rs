//! Requesting, approving and managing slices through the pages, and who may do what.

use reqwest::StatusCode;
use slices::domain::{Role, TemplateName};

use crate::app::*;

fn offer_template(app: &TestApp) {
    app.ctx
        .db
        .write(|tx| {
            slices::slices::add_template(
                tx,
                &TemplateName::parse("debian-12").unwrap(),
                "Debian 12 with sshd",
            )
        })
        .unwrap();
}

fn slice_state(app: &TestApp, id: i64) -> String {
    app.ctx
        .db
        .read(|c| slices::slices::get(c, id))
        .unwrap()
        .unwrap()
        .state
        .as_str()
        .to_string()
}

fn only_slice_of(app: &TestApp, username: &str) -> i64 {
    app.ctx
        .db
        .read(|c| {
            let u = slices::accounts::users::by_username(c, username)?.unwrap();
            slices::slices::for_user(c, u.id)
        })
        .unwrap()[0]
        .id
}

#[actix_web::test]
async fn a_student_asks_and_staff_decide() {
    let app = spawn_app().await;
    offer_template(&app);
    app.add_user("sam", Role::Student);
    app.add_user("pat", Role::Student);
    // Pat asks three times below: his own quota allows it (the default is 2).
    app.ctx
        .db
        .write(|tx| slices::quotas::set(tx, "user", "", "pat", 3, &[]))
        .unwrap();
    app.add_user("tess", Role::Staff);
    let sam = app.logged_in_as("sam").await;
    let home = app.get(&sam, "/").await.text().await.unwrap();
    assert!(
        home.contains("You have no slice yet"),
        "an empty state says what to do"
    );
    let form = app.get(&sam, "/request").await.text().await.unwrap();
    assert!(form.contains("Debian 12 with sshd"));
    assert!(form.contains("standard: 256 MB memory"));
    let r = app
        .post(
            &sam,
            "/request",
            "/request",
            &[
                ("template", "debian-12"),
                ("course", "CS 3650"),
                ("purpose", "homework"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = only_slice_of(&app, "sam");
    assert_eq!(slice_state(&app, id), "requested");
    let home = app.get(&sam, "/").await.text().await.unwrap();
    assert!(home.contains("state-requested"), "{home}");

    // A template that is not offered is refused, with the form kept.
    let r = app
        .post(
            &sam,
            "/request",
            "/request",
            &[("template", "centos-5"), ("course", "CS 9")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("Choose one of the offered templates"));
    assert!(body.contains("value=\"CS 9\""));

    // Every field's problem is said at once, next to its field, and what was typed stays.
    let long_course = "C".repeat(101);
    let long_purpose = "p".repeat(1001);
    let r = app
        .post(
            &sam,
            "/request",
            "/request",
            &[
                ("template", "centos-5"),
                ("name", "Bad Word"),
                ("course", &long_course),
                ("purpose", &long_purpose),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("Choose one of the offered templates"));
    assert!(body.contains("id=\"name-error\""), "{body}");
    assert!(body.contains("At most 100 characters"), "{body}");
    assert!(body.contains("At most 1000 characters"), "{body}");
    assert!(body.contains("value=\"Bad Word\""));
    assert!(body.contains(&long_purpose), "the purpose typed stays");
    assert!(
        body.contains("maxlength=\"100\"") && body.contains("maxlength=\"1000\""),
        "the limits the server checks are the fields' own"
    );
    assert_eq!(only_slice_of(&app, "sam"), id, "nothing was asked for");

    // Staff see it in the queue, filter by course, and approve.
    let tess = app.logged_in_as("tess").await;
    let queue = app
        .get(&tess, "/staff/requests")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        queue.contains("sam") && queue.contains("homework"),
        "{queue}"
    );
    let other_course = app
        .get(&tess, "/staff/requests?course=CS+1000")
        .await
        .text()
        .await
        .unwrap();
    assert!(other_course.contains("Nothing waits for a decision"));
    let r = app
        .post(
            &tess,
            "/staff/requests",
            &format!("/staff/requests/{id}/approve"),
            &[("node", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(slice_state(&app, id), "approved");
    assert_eq!(app.audit_count("slice_approved", &id.to_string()), 1);
    // The audit log says it in words, about the slice, linked, and filters by what it is about.
    let log = app
        .get(&tess, &format!("/staff/audit?kind=slice&subject={id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("1 event."), "{log}");
    assert!(log.contains("Request approved"), "{log}");
    assert!(
        log.contains(&format!("href=\"/staff/slices/{id}\"")),
        "{log}"
    );
    let r = app.get(&tess, "/staff/audit?kind=nonsense").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Deny one (a reason is required), bulk-approve two.
    let pat = app.logged_in_as("pat").await;
    for _ in 0..3 {
        app.post(&pat, "/request", "/request", &[("template", "debian-12")])
            .await;
    }
    let ids: Vec<i64> = app
        .ctx
        .db
        .read(|c| {
            let u = slices::accounts::users::by_username(c, "pat")?.unwrap();
            slices::slices::for_user(c, u.id)
        })
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    app.post(
        &tess,
        "/staff/requests",
        &format!("/staff/requests/{}/deny", ids[0]),
        &[("reason", " ")],
    )
    .await;
    assert_eq!(
        slice_state(&app, ids[0]),
        "requested",
        "no reason, no denial"
    );
    app.post(
        &tess,
        "/staff/requests",
        &format!("/staff/requests/{}/deny", ids[0]),
        &[("reason", "One per student.")],
    )
    .await;
    assert_eq!(slice_state(&app, ids[0]), "denied");
    let tick1 = format!("approve_{}", ids[1]);
    let tick2 = format!("approve_{}", ids[2]);
    let r = app
        .post(
            &tess,
            "/staff/requests",
            "/staff/requests/approve",
            &[(&tick1, "on"), (&tick2, "on")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        (slice_state(&app, ids[1]), slice_state(&app, ids[2])),
        ("approved".into(), "approved".into())
    );
    let home = app.get(&pat, "/").await.text().await.unwrap();
    assert!(home.contains("One per student."), "the student reads why");

    // She puts the denied one away, and withdraws another before staff decide; nobody else
    // may, and what staff approved is no longer hers to withdraw.
    let r = app
        .post(&sam, "/", &format!("/slices/{}/withdraw", ids[0]), &[])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "not sam's");
    assert_eq!(slice_state(&app, ids[0]), "denied");
    let r = app
        .post(&pat, "/", &format!("/slices/{}/withdraw", ids[0]), &[])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(slice_state(&app, ids[0]), "destroyed");
    let home = app.get(&pat, "/").await.text().await.unwrap();
    assert!(home.contains("is put away"), "{home}");
    assert!(
        !home.contains("One per student."),
        "the denied card is gone"
    );
    app.post(&pat, "/request", "/request", &[("template", "debian-12")])
        .await;
    let fourth = app
        .ctx
        .db
        .read(|c| {
            let u = slices::accounts::users::by_username(c, "pat")?.unwrap();
            slices::slices::for_user(c, u.id)
        })
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .max()
        .unwrap();
    assert!(app
        .get(&pat, "/")
        .await
        .text()
        .await
        .unwrap()
        .contains(&format!("/slices/{fourth}/withdraw")));
    app.post(&pat, "/", &format!("/slices/{fourth}/withdraw"), &[])
        .await;
    assert_eq!(slice_state(&app, fourth), "destroyed");
    let queue = app
        .get(&tess, "/staff/requests")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !queue.contains(&format!("/staff/requests/{fourth}/")),
        "gone from the queue"
    );
    let r = app
        .post(&pat, "/", &format!("/slices/{}/withdraw", ids[1]), &[])
        .await;
    let refused = app.get(&pat, "/").await.text().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        refused.contains("can be withdrawn; this slice is approved"),
        "{refused}"
    );
    assert_eq!(slice_state(&app, ids[1]), "approved");
    assert_eq!(app.audit_count("slice_withdrawn", &ids[0].to_string()), 1);
    assert_eq!(app.audit_count("slice_withdrawn", &fourth.to_string()), 1);

    // Staff search slices and open one.
    let list = app
        .get(&tess, "/staff/slices?q=pat&state=approved")
        .await
        .text()
        .await
        .unwrap();
    assert!(list.contains("2 slices."), "{list}");
    // The list's rows are kept between views (src/web/pieces.rs), never across a change.
    let row = |page: &str, id: i64| -> String {
        let from = page
            .split(&format!("href=\"/staff/slices/{id}\""))
            .nth(1)
            .unwrap_or_else(|| panic!("no row for {id}: {page}"));
        from[..from.find("</tr>").unwrap()].to_string()
    };
    let before = app.get(&tess, "/staff/slices").await.text().await.unwrap();
    assert!(row(&before, ids[1]).contains("state-approved"), "{before}");
    app.ctx
        .db
        .write(|tx| {
            slices::slices::set_state(
                tx,
                ids[1],
                slices::slices::State::Stopped,
                "",
                "stopped in a test",
            )
        })
        .unwrap();
    let after = app.get(&tess, "/staff/slices").await.text().await.unwrap();
    assert!(row(&after, ids[1]).contains("state-stopped"), "{after}");
    assert!(!row(&after, ids[1]).contains("state-approved"), "{after}");
    let detail = app
        .get(&tess, &format!("/staff/slices/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(detail.contains("Agent commands") && detail.contains("No command was sent"));
}

/// Every live slice has a name of its own (its login and web name): the first is the
/// username, others `USER-WORD` with the student's word or the next number; a taken name or a
/// bad word is a clear error that keeps the rest of the form.
#[actix_web::test]
async fn each_slice_has_a_name_of_its_own() {
    let app = spawn_app().await;
    offer_template(&app);
    app.add_user("pat_x", Role::Student);
    app.ctx
        .db
        .write(|tx| slices::quotas::set(tx, "user", "", "pat_x", 5, &[]))
        .unwrap();
    let pat = app.logged_in_as("pat_x").await;
    let ask = |name: &'static str| {
        let (app, pat) = (&app, &pat);
        async move {
            app.post(
                pat,
                "/request",
                "/request",
                &[
                    ("template", "debian-12"),
                    ("course", "CS 1"),
                    ("name", name),
                ],
            )
            .await
        }
    };
    let names = |app: &TestApp| -> Vec<String> {
        app.ctx
            .db
            .read(|c| {
                let mut st = c.prepare("SELECT subdomain FROM slices ORDER BY id")?;
                let v = st
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()?;
                Ok::<_, slices::error::Error>(v)
            })
            .unwrap()
    };
    let form = app.get(&pat, "/request").await.text().await.unwrap();
    assert!(
        form.contains("pat-x-web"),
        "the form says what a word gives"
    );
    assert_eq!(ask("").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(ask("").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(ask("web").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(names(&app), ["pat-x", "pat-x-2", "pat-x-web"]);
    for (word, says) in [
        ("web", "`pat-x-web` is taken"),
        ("Web", "lowercase letters"),
        ("-x", "lowercase letters"),
        ("a;id", "lowercase letters"),
        ("abcdefghijklmnopqrstu", "lowercase letters"),
    ] {
        let r = ask(word).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{word}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{word}: {body}");
        assert!(body.contains("value=\"CS 1\""), "the form is kept");
    }
    assert_eq!(names(&app).len(), 3, "nothing was saved");
}

#[actix_web::test]
async fn requests_need_a_confirmed_address() {
    let app = spawn_app().await;
    offer_template(&app);
    let c = browser();
    app.signup(&c, "newbie", "newbie@example.edu", "New Bie")
        .await;
    // The form is not offered until the address is confirmed (it would only be refused).
    let form = app.get(&c, "/request").await.text().await.unwrap();
    assert!(
        form.contains("once your email address is confirmed"),
        "{form}"
    );
    assert!(!form.contains("action=\"/request\""), "{form}");
    let r = app
        .post(&c, "/request", "/request", &[("template", "debian-12")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Confirm your email address first"));
    let n = app
        .ctx
        .db
        .read(|c| {
            Ok::<_, slices::error::Error>(
                c.query_row("SELECT count(*) FROM slices", [], |r| r.get::<_, i64>(0))?,
            )
        })
        .unwrap();
    assert_eq!(n, 0);
}

#[actix_web::test]
async fn a_slice_is_its_owners_and_staffs_only() {
    let app = spawn_app().await;
    offer_template(&app);
    app.add_user("own", Role::Student);
    app.add_user("eve", Role::Student);
    let own = app.logged_in_as("own").await;
    app.post(&own, "/request", "/request", &[("template", "debian-12")])
        .await;
    let id = only_slice_of(&app, "own");
    let r = app.get(&own, &format!("/slices/{id}/status")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["state"], "requested");
    assert_eq!(json["busy"], true);

    let eve = app.logged_in_as("eve").await;
    assert_eq!(
        app.get(&eve, &format!("/slices/{id}/status"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(
            &eve,
            "/",
            &format!("/slices/{id}/destroy"),
            &[("confirm", "own")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&eve, "/staff/requests").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&eve, &format!("/staff/slices/{id}")).await.status(),
        StatusCode::FORBIDDEN
    );
    let r = app
        .post(&eve, "/", &format!("/staff/requests/{id}/approve"), &[])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(slice_state(&app, id), "requested");
    // Anonymous: to the log-in page.
    let r = app.get(&browser(), &format!("/slices/{id}/status")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // Destroying needs the typed name; a wrong one changes nothing.
    app.add_user("tess", Role::Staff);
    let tess = app.logged_in_as("tess").await;
    app.post(
        &tess,
        "/staff/requests",
        &format!("/staff/requests/{id}/approve"),
        &[],
    )
    .await;
    let r = app
        .post(
            &own,
            "/",
            &format!("/slices/{id}/destroy"),
            &[("confirm", "oops")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(slice_state(&app, id), "approved");
    let home = app.get(&own, "/").await.text().await.unwrap();
    // A refusal is said as one, in the alert style (not the green "done" notice).
    assert!(
        home.contains(
            "<p class=\"alert\" role=\"alert\">Type the slice&#x27;s name, own, to destroy it.</p>"
        ),
        "{home}"
    );
    app.post(
        &own,
        "/",
        &format!("/slices/{id}/destroy"),
        &[("confirm", "own")],
    )
    .await;
    assert_eq!(slice_state(&app, id), "destroying");
    let home = app.get(&own, "/").await.text().await.unwrap();
    assert!(
        home.contains("<p class=\"notice\" role=\"status\">") && home.contains("is under way."),
        "what was done is said in the notice style: {home}"
    );
}

/// The landing page names the web address a slice really gets, not a placeholder.
#[actix_web::test]
async fn the_landing_page_shows_the_real_web_address() {
    let app = spawn_app().await;
    let page = app.get(&browser(), "/").await.text().await.unwrap();
    assert!(page.contains("your-name.slices.localhost:"), "{page}");
    assert!(!page.contains("&lt;domain&gt;"), "{page}");
}

/// More requests wait than the page lists (500): staff approve all of them in one go, and
/// one that arrives after the page was shown is left waiting.
#[actix_web::test]
async fn staff_approve_all_of_more_than_a_page_of_requests() {
    let app = spawn_app().await;
    offer_template(&app);
    // Six students, up to 100 slices each (the most a quota allows).
    for k in 0..6 {
        let name = format!("many{k}");
        app.add_user(&name, Role::Student);
        app.ctx
            .db
            .write(|tx| slices::quotas::set(tx, "user", "", &name, 100, &[]))
            .unwrap();
    }
    app.add_user("tess", Role::Staff);
    let add = |n: std::ops::Range<usize>| {
        app.ctx
            .db
            .write(|tx| {
                let plan = slices::slices::plan_choices(tx)?[0].id;
                for i in n {
                    let who = format!("many{}", i / 100);
                    let u = slices::accounts::users::by_username(tx, &who)?.unwrap();
                    slices::records::slices::insert_request(
                        tx,
                        u.id,
                        &TemplateName::parse("debian-12").unwrap(),
                        plan,
                        "CS 1",
                        "",
                        &slices::domain::DnsName::parse(&format!("{who}-{i}")).unwrap(),
                    )?;
                }
                Ok::<_, slices::error::Error>(())
            })
            .unwrap()
    };
    add(0..520);
    let tess = app.logged_in_as("tess").await;
    let page = app
        .get(&tess, "/staff/requests")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("520 requests wait; the oldest 500 are listed"),
        "{page}"
    );
    assert!(page.contains("Approve all 520"));
    let token = extract_csrf(&page).unwrap();
    let up_to = page
        .split("name=\"up_to\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    add(520..521);
    let r = tess
        .post(app.url("/staff/requests/approve-all"))
        .header("Origin", app.base.clone())
        .form(&[
            ("csrf", token.as_str()),
            ("course", ""),
            ("up_to", up_to.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let count = |state: &str| {
        app.ctx
            .db
            .read(|c| {
                c.query_row(
                    "SELECT count(*) FROM slices WHERE state = ?1",
                    [state],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(slices::error::Error::from)
            })
            .unwrap()
    };
    assert_eq!(count("approved"), 520);
    assert_eq!(count("requested"), 1, "the one that came after stays");
    let page = app
        .get(&tess, "/staff/requests")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("Approved 520 requests"), "{page}");
}
