use reqwest::StatusCode;
use slices::domain::Role;

use crate::app::*;

#[actix_web::test]
async fn students_and_strangers_are_kept_off_staff_pages() {
    let app = spawn_app().await;
    app.add_user("stu", Role::Student);
    app.add_user("sam", Role::Student);
    let student = app.logged_in_as("stu").await;
    for path in ["/staff/users", "/staff/users/sam", "/staff/audit"] {
        let r = app.get(&student, path).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(r.text().await.unwrap().contains("for lab staff"));
        let r = app.get(&browser(), path).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert!(location(&r).starts_with("/login?next=/staff/"), "{path}");
    }
    // Posting to a staff action as a student does nothing.
    let r = app
        .post(
            &student,
            "/account",
            "/staff/users/sam/disable",
            &[("reason", "x")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.audit_count("account_disabled", "sam"), 0);
}

#[actix_web::test]
async fn disabling_an_account_logs_it_out_at_once() {
    let app = spawn_app().await;
    app.add_user("tess", Role::Staff);
    app.add_user("uma", Role::Student);
    let staff = app.logged_in_as("tess").await;
    let student = app.logged_in_as("uma").await;
    assert_eq!(app.whoami(&student).await.as_deref(), Some("uma"));

    // A reason is required.
    let r = app
        .post(
            &staff,
            "/staff/users/uma",
            "/staff/users/uma/disable",
            &[("reason", "  ")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(app.whoami(&student).await.as_deref(), Some("uma"));

    let r = app
        .post(
            &staff,
            "/staff/users/uma",
            "/staff/users/uma/disable",
            &[("reason", "left the course")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.whoami(&student).await,
        None,
        "the student's session ended"
    );
    let r = app.login(&browser(), "uma", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("This account is disabled"));
    let page = app
        .get(&staff, "/staff/users/uma")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("left the course"));

    // Enabled again, the student can log in.
    let r = app
        .post(&staff, "/staff/users/uma", "/staff/users/uma/enable", &[])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.login(&browser(), "uma", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.audit_count("account_disabled", "uma"), 1);
    assert_eq!(app.audit_count("account_enabled", "uma"), 1);
}

#[actix_web::test]
async fn only_admins_change_roles_and_the_last_admin_stays() {
    let app = spawn_app().await;
    app.add_user("ada", Role::Admin);
    app.add_user("sid", Role::Staff);
    app.add_user("val", Role::Student);
    let staff = app.logged_in_as("sid").await;
    let admin = app.logged_in_as("ada").await;

    // Staff may not change roles, nor disable other staff.
    let r = app
        .post(
            &staff,
            "/staff/users/val",
            "/staff/users/val/role",
            &[("role", "staff")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .post(
            &staff,
            "/staff/users/ada",
            "/staff/users/ada/disable",
            &[("reason", "coup")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.whoami(&admin).await.as_deref(), Some("ada"));

    // An admin may.
    let r = app
        .post(
            &admin,
            "/staff/users/val",
            "/staff/users/val/role",
            &[("role", "staff")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let val = app.logged_in_as("val").await;
    assert_eq!(app.get(&val, "/staff/users").await.status(), StatusCode::OK);
    assert_eq!(app.audit_count("role_changed", "val"), 1);

    // A role that does not exist is refused.
    let r = app
        .post(
            &admin,
            "/staff/users/val",
            "/staff/users/val/role",
            &[("role", "root")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Promote sid, then sid cannot demote the last other admin... and nobody demotes themselves.
    let r = app
        .post(
            &admin,
            "/staff/users/ada",
            "/staff/users/ada/role",
            &[("role", "student")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .post(
            &admin,
            "/staff/users/sid",
            "/staff/users/sid/role",
            &[("role", "admin")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let sid = app.logged_in_as("sid").await;
    let r = app
        .post(
            &sid,
            "/staff/users/ada",
            "/staff/users/ada/role",
            &[("role", "staff")],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "two admins: one may be demoted"
    );
    let admins = app
        .ctx
        .db
        .read(slices::accounts::users::active_admins)
        .unwrap();
    assert_eq!(admins, 1);
}

#[actix_web::test]
async fn staff_search_users_and_read_the_audit_log() {
    let app = spawn_app().await;
    app.add_user("tina", Role::Staff);
    for i in 0..60 {
        app.add_user(&format!("s{i:02}"), Role::Student);
    }
    app.add_user("percent", Role::Student);
    let staff = app.logged_in_as("tina").await;
    let page = app.get(&staff, "/staff/users").await.text().await.unwrap();
    assert!(page.contains("62 accounts"), "all accounts counted");
    assert!(page.contains("Page 1 of 2"));
    let page2 = app
        .get(&staff, "/staff/users?page=2")
        .await
        .text()
        .await
        .unwrap();
    assert!(page2.contains("s59") || page2.contains("tina"));
    let found = app
        .get(&staff, "/staff/users?q=S0&role=student")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        found.contains("10 accounts"),
        "s00..s09 match case-insensitively"
    );
    // LIKE wildcards typed into the box match literally.
    let found = app
        .get(&staff, "/staff/users?q=%25")
        .await
        .text()
        .await
        .unwrap();
    assert!(found.contains("0 accounts"), "a % typed is not a wildcard");
    let none = app
        .get(&staff, "/staff/users?q=zzz")
        .await
        .text()
        .await
        .unwrap();
    assert!(none.contains("No accounts match"));
    // A bad page number is a clear 400, not a crash.
    let r = app.get(&staff, "/staff/users?page=abc").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    app.login(&browser(), "s01", "not my password").await;
    let log = app
        .get(&staff, "/staff/audit?event=login_failed")
        .await
        .text()
        .await
        .unwrap();
    assert!(log.contains("1 event."), "{log}");
    assert!(log.contains("s01"));
    let r = app.get(&staff, "/staff/audit?event=nonsense").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
