//! Staff choose how they hear of new requests: a mail each, a daily digest, or none.

use slices::domain::Role;

use crate::fleet::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_digest_replaces_the_mail_for_each_request_and_goes_once_a_day() {
    let f = fleet(0, |_| String::new(), 0).await;
    let tess = f.user("tess", Role::Staff);
    let dina = f.user("dina", Role::Staff);
    let nell = f.user("nell", Role::Admin);
    f.ctx
        .db
        .write(|tx| slices::accounts::users::set_request_mail(tx, dina.id, "daily"))
        .unwrap();
    f.ctx
        .db
        .write(|tx| slices::accounts::users::set_request_mail(tx, nell.id, "none"))
        .unwrap();
    assert!(f
        .ctx
        .db
        .write(|tx| slices::accounts::users::set_request_mail(tx, nell.id, "hourly"))
        .is_err());
    for name in ["s1", "s2"] {
        let s = f.user(name, Role::Student);
        f.ctx
            .db
            .write(|tx| {
                slices::slices::request(
                    tx,
                    &s,
                    &slices::slices::Request {
                        template: TEMPLATE.parse().unwrap(),
                        plan_id: None,
                        course: "CS 3650".into(),
                        purpose: String::new(),
                        name: String::new(),
                    },
                )
            })
            .unwrap();
    }
    let mails = |kind: &str| -> Vec<String> {
        f.ctx
            .db
            .read(|c| slices::mail::list(c, None, 100, 0))
            .unwrap()
            .0
            .into_iter()
            .filter(|m| m.kind == kind)
            .map(|m| m.to_addr)
            .collect()
    };
    assert_eq!(
        mails("new_request"),
        vec!["tess@example.edu", "tess@example.edu"]
    );
    assert_eq!(
        f.ctx
            .db
            .write(|tx| slices::mail::queue_digests(tx, "2026-11-29"))
            .unwrap(),
        1
    );
    assert_eq!(
        f.ctx
            .db
            .write(|tx| slices::mail::queue_digests(tx, "2026-11-29"))
            .unwrap(),
        0,
        "once a day"
    );
    assert_eq!(mails("requests_digest"), vec!["dina@example.edu"]);
    let digest = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 100, 0))
        .unwrap()
        .0
        .into_iter()
        .find(|m| m.kind == "requests_digest")
        .unwrap();
    let site = f.ctx.site();
    let r = slices::mail::render(slices::mail::Kind::RequestsDigest, &digest.data, &site).unwrap();
    assert_eq!(r.subject, "2 slice requests waiting for approval");
    assert!(r.text.contains("- s1 (s1), CS 3650"), "{}", r.text);
    let _ = tess;
}
