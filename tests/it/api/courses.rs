//! Courses and the end of a term through the pages: staff define courses (every field checked,
//! what was typed kept), a request names one and takes its end, the card says when the slice
//! ends and links to asking for more time, staff decide in the requests queue; nobody else may
//! do any of it.

use reqwest::StatusCode;
use slices::domain::{Role, TemplateName};

use crate::app::*;

const DAY: i64 = 86_400;

#[actix_web::test]
async fn staff_define_a_course_students_pick_it_and_ask_for_more_time() {
    let app = spawn_app().await;
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
    app.add_user("tess", Role::Staff);
    app.add_user("sam", Role::Student);
    app.add_user("eve", Role::Student);
    let tess = app.logged_in_as("tess").await;
    let day = slices::clock::format_day(slices::clock::now() + 20 * DAY);

    // Every field checked at once, each with its own message, and what was typed kept.
    let r = app
        .post(
            &tess,
            "/staff/courses",
            "/staff/courses",
            &[
                ("code", "CS;3650"),
                ("title", "Computer Systems"),
                ("last_day", "2020-01-01"),
                ("staff", "nobody"),
                ("max_slices", "500"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    for said in [
        "A course code is 1 to 32",
        "That day is past",
        "No user is called nobody",
        "From 0 to 100, or empty.",
        "value=\"Computer Systems\"",
        "value=\"2020-01-01\"",
    ] {
        assert!(body.contains(said), "{said}: {body}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM courses"),
        0,
        "nothing stored"
    );

    let r = app
        .post(
            &tess,
            "/staff/courses",
            "/staff/courses",
            &[
                ("code", "CS 3650"),
                ("title", "Computer Systems"),
                ("last_day", &day),
                ("staff", "tess"),
                ("max_slices", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = app.get(&tess, "/staff/courses").await.text().await.unwrap();
    assert!(page.contains("CS 3650") && page.contains(&day), "{page}");
    let edit = app
        .get(&tess, "/staff/courses?edit=cs%203650")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        edit.contains("Change CS 3650")
            && edit.contains("value=\"1\"")
            && edit.contains("value=\"tess\""),
        "the edit form starts from what is stored: {edit}"
    );
    assert!(
        page.contains("/staff/slices?q=CS%203650"),
        "a course links to its slices"
    );
    assert_eq!(app.audit_count("course_changed", "CS 3650"), 1);

    // A student cannot define one.
    let sam = app.logged_in_as("sam").await;
    let r = app
        .post(
            &sam,
            "/request",
            "/staff/courses",
            &[("code", "EVIL"), ("title", "x"), ("last_day", &day)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("SELECT count(*) FROM courses"), 1);

    // The request form offers the course; one not offered is refused, the form kept.
    let form = app.get(&sam, "/request").await.text().await.unwrap();
    assert!(
        form.contains(&format!("CS 3650: Computer Systems (until {day})")),
        "{form}"
    );
    let r = app
        .post(
            &sam,
            "/request",
            "/request",
            &[
                ("template", "debian-12"),
                ("course", "CS 9999"),
                ("purpose", "kept?"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("Choose one of the courses listed.") && body.contains("kept?"));
    let r = app
        .post(
            &sam,
            "/request",
            "/request",
            &[
                ("template", "debian-12"),
                ("course", "cs 3650"),
                ("plan", ""),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let id = app.count("SELECT id FROM slices");
    // The course's own quota (1 slice per student) holds.
    let r = app
        .post(
            &sam,
            "/request",
            "/request",
            &[
                ("template", "debian-12"),
                ("course", "CS 3650"),
                ("name", "two"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.count("SELECT count(*) FROM slices"), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM slices WHERE course = 'CS 3650'"),
        1,
        "stored as the course is written"
    );
    let r = app
        .post(
            &tess,
            "/staff/requests",
            &format!("/staff/requests/{id}/approve"),
            &[("node", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // The card says when it ends and links to asking for more time.
    let home = app.get(&sam, "/").await.text().await.unwrap();
    assert!(
        home.contains(&format!("data-field=\"ends\">{day}")),
        "{home}"
    );
    assert!(home.contains(&format!("/slices/{id}/extend")));
    let page = app
        .get(&sam, &format!("/slices/{id}/extend"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("It ends on <strong>{day}</strong>")),
        "{page}"
    );

    // Someone else's slice: no page, no request.
    let eve = app.logged_in_as("eve").await;
    let r = app.get(&eve, &format!("/slices/{id}/extend")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let later = slices::clock::format_day(slices::clock::now() + 60 * DAY);
    let r = app
        .post(
            &eve,
            "/request",
            &format!("/slices/{id}/extend"),
            &[("until", &later), ("reason", "please")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.count("SELECT count(*) FROM extensions"), 0);

    // No reason: refused, the date kept.
    let r = app
        .post(
            &sam,
            &format!("/slices/{id}/extend"),
            &format!("/slices/{id}/extend"),
            &[("until", &later), ("reason", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = r.text().await.unwrap();
    assert!(body.contains("Say why you need it longer") && body.contains(&later));
    let r = app
        .post(
            &sam,
            &format!("/slices/{id}/extend"),
            &format!("/slices/{id}/extend"),
            &[
                ("until", &later),
                ("reason", "Capstone <b>demo</b> in January"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let home = app.get(&sam, "/").await.text().await.unwrap();
    assert!(home.contains(&format!("You asked for more time, until {later}")));

    // Staff see it in the queue (escaped); a student cannot decide it; staff approve.
    let queue = app
        .get(&tess, "/staff/requests")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        queue.contains("Capstone &lt;b&gt;demo&lt;&#x2F;b&gt; in January")
            || queue.contains("Capstone &lt;b&gt;demo&lt;/b&gt; in January"),
        "{queue}"
    );
    let ext = app.count("SELECT id FROM extensions");
    let r = app
        .post(
            &sam,
            "/request",
            &format!("/staff/extensions/{ext}/approve"),
            &[("note", "")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.count("SELECT count(*) FROM extensions WHERE state = 'waiting'"),
        1
    );
    let r = app
        .post(
            &tess,
            "/staff/requests",
            &format!("/staff/extensions/{ext}/approve"),
            &[("note", "Good luck")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let until = slices::clock::parse_day(&later).unwrap() + DAY;
    assert_eq!(
        app.count(&format!("SELECT expires_at FROM slices WHERE id = {id}")),
        until
    );
    let page = app
        .get(&tess, &format!("/staff/slices/{id}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("{later} (its own date)")), "{page}");
    assert_eq!(app.audit_count("extension_decided", &id.to_string()), 1);
    // Staff find a course's slices by its code, in any case.
    let found = app
        .get(&tess, "/staff/slices?q=cs%203650")
        .await
        .text()
        .await
        .unwrap();
    assert!(found.contains(&format!("/staff/slices/{id}\"")), "{found}");
    assert!(
        found.contains(&format!("<td>{later}</td>")),
        "the list shows its end: {found}"
    );
}
