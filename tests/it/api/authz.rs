//! Every route, as a stranger, a student and staff: who gets in, who is sent to log in, who
//! is refused; and a student never sees another's slice.

use reqwest::{Method, StatusCode};
use slices::domain::{Role, TemplateName};

use crate::app::*;

#[actix_web::test]
async fn every_route_admits_only_whom_it_should() {
    let app = spawn_app().await;
    app.ctx
        .db
        .write(|tx| slices::slices::add_template(tx, &TemplateName::parse("t1").unwrap(), ""))
        .unwrap();
    app.add_user("stu", Role::Student);
    app.add_user("sue", Role::Student);
    app.add_user("tess", Role::Staff);
    let stu = app.logged_in_as("stu").await;
    let sue = app.logged_in_as("sue").await;
    let tess = app.logged_in_as("tess").await;
    app.post(&stu, "/request", "/request", &[("template", "t1")])
        .await;
    let slice = app
        .ctx
        .db
        .read(|c| slices::slices::in_state(c, slices::slices::State::Requested))
        .unwrap()[0]
        .id;
    let job = app
        .ctx
        .db
        .write(|tx| slices::jobs::enqueue(tx, slices::jobs::JobKind::Stop, slice, None, None))
        .unwrap();
    let message = app
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 1, 0))
        .unwrap()
        .0[0]
        .id;

    // (path, what a stranger gets, a student, staff)
    let ok = StatusCode::OK;
    let login = StatusCode::SEE_OTHER;
    let no = StatusCode::FORBIDDEN;
    let pages = [
        ("/".to_string(), ok, ok, ok),
        ("/login".into(), ok, login, login),
        ("/signup".into(), ok, login, login),
        ("/forgot".into(), ok, ok, ok),
        ("/healthz".into(), ok, ok, ok),
        ("/static/style.css".into(), ok, ok, ok),
        ("/static/app.js".into(), ok, ok, ok),
        ("/account".into(), login, ok, ok),
        ("/request".into(), login, ok, ok),
        (format!("/slices/{slice}/status"), login, ok, ok),
        ("/staff/users".into(), login, no, ok),
        ("/staff/users/stu".into(), login, no, ok),
        ("/staff/audit".into(), login, no, ok),
        ("/staff/outbox".into(), login, no, ok),
        (format!("/staff/outbox/{message}"), login, no, ok),
        ("/staff/requests".into(), login, no, ok),
        ("/staff/slices".into(), login, no, ok),
        (format!("/staff/slices/{slice}"), login, no, ok),
        ("/staff/jobs".into(), login, no, ok),
        (format!("/staff/jobs/{job}"), login, no, ok),
        ("/staff/nodes".into(), login, no, ok),
        ("/staff/nodes/new".into(), login, no, ok),
        ("/staff/templates".into(), login, no, ok),
        ("/staff/plans".into(), login, no, ok),
        ("/staff/gateway".into(), login, no, ok),
        ("/staff/settings".into(), login, no, ok),
        ("/keys".into(), login, ok, ok),
    ];
    for (path, stranger, student, staff) in &pages {
        for (who, client, want) in [
            ("stranger", browser(), *stranger),
            ("student", stu.clone(), *student),
            ("staff", tess.clone(), *staff),
        ] {
            let got = app.get(&client, path).await.status();
            assert_eq!(got, want, "GET {path} as {who}");
        }
    }
    // Another student's slice does not exist for sue.
    assert_eq!(
        app.get(&sue, &format!("/slices/{slice}/status"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Every staff action, posted by a student with a valid form token: refused, nothing done.
    let posts = [
        "/staff/users/sue/role".to_string(),
        "/staff/users/sue/disable".into(),
        "/staff/users/sue/enable".into(),
        "/staff/users/sue/verify".into(),
        format!("/staff/outbox/{message}/retry"),
        format!("/staff/requests/{slice}/approve"),
        format!("/staff/requests/{slice}/deny"),
        "/staff/requests/approve".into(),
        "/staff/requests/approve-all".into(),
        format!("/staff/jobs/{job}/retry"),
        format!("/staff/jobs/{job}/cancel"),
        "/staff/nodes/node1/drain".into(),
        "/staff/nodes/new".into(),
        format!("/staff/slices/{slice}/move"),
        format!("/staff/slices/{slice}/plan"),
        "/staff/templates".into(),
        "/staff/templates/sync".into(),
        "/staff/templates/debian-12/withdraw".into(),
        "/staff/plans".into(),
        "/staff/plans/1/default".into(),
        "/staff/gateway/check".into(),
        "/staff/gateway/apply".into(),
        "/staff/gateway/accept".into(),
        "/account/request-mail".into(),
    ];
    for path in &posts {
        let r = app
            .post(
                &stu,
                "/account",
                path,
                &[("role", "admin"), ("reason", "x"), ("request_mail", "none")],
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::FORBIDDEN,
            "POST {path} as a student"
        );
        // And a stranger is sent to log in.
        let token = app.csrf(&browser(), "/login").await;
        let r = browser()
            .request(Method::POST, app.url(path))
            .header("Origin", &app.base)
            .form(&[("csrf", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "POST {path} as a stranger"
        );
    }
    // Another's slice cannot be acted on.
    for action in ["start", "stop", "restart", "destroy"] {
        let r = app
            .post(
                &sue,
                "/",
                &format!("/slices/{slice}/{action}"),
                &[("confirm", "stu")],
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{action} by another student"
        );
    }
    let s = app
        .ctx
        .db
        .read(|c| slices::slices::get(c, slice))
        .unwrap()
        .unwrap();
    assert_eq!(s.state, slices::slices::State::Requested, "nothing changed");
    // Nothing the refused posts would have made exists.
    let count = |sql: &str| {
        app.ctx
            .db
            .read(|c| Ok::<i64, slices::error::Error>(c.query_row(sql, [], |r| r.get(0))?))
            .unwrap()
    };
    assert_eq!(count("SELECT count(*) FROM nodes"), 0);
    assert_eq!(count("SELECT count(*) FROM plans"), 1);
    assert_eq!(
        count("SELECT count(*) FROM jobs WHERE kind IN ('gateway', 'template_sync')"),
        0
    );
    // A student's key is theirs: another student cannot see or remove it.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzC7OGd0Cq6HbB1cBdC4ktTXv4F0iYc1Hj2lqR8Dw8m stu@laptop";
    let r = app.post(&stu, "/keys", "/keys", &[("key", key)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let key_id = count("SELECT id FROM ssh_keys");
    assert_eq!(
        app.get(&sue, &format!("/keys/{key_id}/remove"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let r = app
        .post(&sue, "/keys", &format!("/keys/{key_id}/remove"), &[])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(count("SELECT count(*) FROM ssh_keys"), 1);
    assert!(!app
        .get(&sue, "/keys")
        .await
        .text()
        .await
        .unwrap()
        .contains("SHA256:"));
    let user = app
        .ctx
        .db
        .read(|c| slices::accounts::users::by_username(c, "sue"))
        .unwrap()
        .unwrap();
    assert_eq!((user.role, user.disabled_at), (Role::Student, None));
}
