//! A slice's term: a course's end warns its students 14, 3 and 1 day before, stops their
//! slices at the end and destroys them after the grace period, each step exactly once (a second
//! pass, a clock set back, a master killed and started again do nothing twice); a student asks
//! for more time and staff decide, which moves every date.

use std::time::Duration;

use slices::domain::Role;
use slices::slices::State;
use slices::term::{self, CourseInput, Passed};

use crate::fleet::*;

const DAY: i64 = 86_400;
const GRACE: i64 = 14 * DAY;

fn mails(f: &Fleet, kind: &str) -> i64 {
    f.count(&format!(
        "SELECT count(*) FROM outbox WHERE kind = '{kind}'"
    ))
}

/// Staff define a course whose last day is `days` from today; returns when it ends.
fn course(f: &Fleet, staff: &slices::accounts::User, code: &str, days: i64) -> i64 {
    let now = slices::clock::now();
    let input = CourseInput {
        code: code.into(),
        title: "Computer Systems".into(),
        last_day: slices::clock::format_day(now + days * DAY),
        ..Default::default()
    };
    f.ctx
        .db
        .write(|tx| term::put_course(tx, staff, &input, now, "127.0.0.1"))
        .unwrap();
    f.ctx
        .db
        .read(|c| slices::records::courses::ends_at(c, code))
        .unwrap()
        .unwrap()
}

fn pass(f: &Fleet, at: i64) -> Passed {
    f.ctx.db.write(|tx| term::pass(tx, at, GRACE)).unwrap().0
}

fn warned(n: usize) -> Passed {
    Passed {
        warned: n,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_course_end_warns_three_times_stops_then_destroys_each_exactly_once() {
    let f = fleet(1, |_| "10.89.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let ends = course(&f, &staff, "CS 3650", 20);
    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|_| {});
    f.wait_for(id, State::Running, 20).await;
    jobs.stop().await;
    assert_eq!(
        f.ctx.db.read(|c| term::ends_at(c, &f.slice(id))).unwrap(),
        Some(ends),
        "a slice of a course ends with it"
    );

    assert_eq!(pass(&f, ends - 15 * DAY), Passed::default(), "too early");
    assert_eq!(pass(&f, ends - 14 * DAY + 60), warned(1));
    assert_eq!(pass(&f, ends - 14 * DAY + 120), Passed::default(), "once");
    assert_eq!(pass(&f, ends - 3 * DAY + 60), warned(1));
    // The clock set back by a week: nothing is undone or sent again.
    assert_eq!(
        pass(&f, ends - 10 * DAY),
        Passed::default(),
        "clock set back"
    );
    assert_eq!(pass(&f, ends - 3 * DAY + 90), Passed::default());
    assert_eq!(pass(&f, ends - DAY + 60), warned(1));
    assert_eq!(mails(&f, "expiry_warning"), 3);
    let said: String = f
        .ctx
        .db
        .read(|c| {
            Ok::<_, slices::error::Error>(c.query_row(
                "SELECT data FROM outbox WHERE kind = 'expiry_warning' ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )?)
        })
        .unwrap();
    let day = term::last_day(ends);
    assert!(
        said.contains(&day) && said.contains("\"days\":1"),
        "the last warning names the last day {day} and 1 day left: {said}"
    );
    let text = slices::mail::render(
        slices::mail::Kind::ExpiryWarning,
        &serde_json::from_str(&said).unwrap(),
        &f.ctx.site(),
    )
    .unwrap()
    .text;
    assert!(
        text.contains(&format!("/slices/{id}/archive")),
        "the warning links to the archive of /home: {text}"
    );

    // The end: stopped (by a job), one mail saying why, not a second "stopped" one.
    assert_eq!(
        pass(&f, ends + 60),
        Passed {
            stopped: 1,
            ..Default::default()
        }
    );
    assert_eq!(pass(&f, ends + 120), Passed::default());
    let jobs = f.run_jobs(|_| {});
    f.wait_for(id, State::Stopped, 20).await;
    jobs.stop().await;
    assert_eq!((mails(&f, "expired"), mails(&f, "slice_stopped")), (1, 0));

    // Destroyed when the grace period is over, not before.
    assert_eq!(pass(&f, ends + GRACE - 60), Passed::default(), "in grace");
    assert_eq!(
        pass(&f, ends + GRACE + 60),
        Passed {
            destroyed: 1,
            ..Default::default()
        }
    );
    assert_eq!(pass(&f, ends + GRACE + 120), Passed::default());
    let jobs = f.run_jobs(|_| {});
    f.wait_for(id, State::Destroyed, 20).await;
    jobs.stop().await;
    assert_eq!(f.nodes[0].containers(), 0, "its container is gone");
    assert_eq!(
        (
            mails(&f, "expiry_warning"),
            mails(&f, "expired"),
            mails(&f, "slice_destroyed")
        ),
        (3, 1, 1),
        "each step mailed once"
    );
    assert_eq!(
        f.count(&format!(
            "SELECT count(*) FROM audit WHERE event = 'slice_expired' AND subject = '{id}'"
        )),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slice_seen_late_gets_one_warning_not_a_burst_and_an_unplaced_one_just_goes() {
    let f = fleet(1, |_| "10.90.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let bob = f.user("bob", Role::Student);
    let ends = course(&f, &staff, "CS 3650", 20);
    let placed = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|_| {});
    f.wait_for(placed, State::Running, 20).await;
    jobs.stop().await;
    // Bob's is approved but not placed yet when the course ends.
    let waiting = f.request_and_approve(&bob, &staff);
    // A master down for the last 12 days: the first pass sends the 1-day warning alone.
    assert_eq!(pass(&f, ends - DAY + 60), warned(2));
    assert_eq!(mails(&f, "expiry_warning"), 2, "one each, not three");
    let p = pass(&f, ends + 60);
    assert_eq!((p.stopped, p.destroyed), (1, 1), "{p:?}");
    assert_eq!(
        f.slice(waiting).state,
        State::Destroying,
        "nothing to keep: it goes"
    );
    let jobs = f.run_jobs(|_| {});
    f.wait_for(placed, State::Stopped, 20).await;
    f.wait_for(waiting, State::Destroyed, 20).await;
    jobs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_time_asked_approved_moves_every_date_and_the_warnings_start_again() {
    let f = fleet(1, |_| "10.91.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let mallory = f.user("mallory", Role::Student);
    let ends = course(&f, &staff, "CS 3650", 20);
    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|_| {});
    f.wait_for(id, State::Running, 20).await;
    jobs.stop().await;
    assert_eq!(pass(&f, ends - 3 * DAY + 60), warned(1));
    let now = slices::clock::now();
    let ask = |who: &slices::accounts::User, until: &str, reason: &str| {
        f.ctx
            .db
            .write(|tx| term::ask_extension(tx, who, id, until, reason, now))
    };
    let later = slices::clock::format_day(ends + 29 * DAY);
    // Someone else's slice does not exist for them; bad dates and no reason are refused.
    assert!(matches!(
        ask(&mallory, &later, "mine now"),
        Err(slices::error::Error::NotFound(_))
    ));
    for (until, reason, field) in [
        (term::last_day(ends), "project", "until"),
        ("2027-02-30".to_string(), "project", "until"),
        ("next week".to_string(), "project", "until"),
        (
            slices::clock::format_day(now + 400 * DAY),
            "project",
            "until",
        ),
        (later.clone(), "  ", "reason"),
    ] {
        match ask(&alice, &until, reason) {
            Err(slices::error::Error::Invalid(list)) => {
                assert!(list.iter().any(|e| e.field == field), "{until}: {list:?}")
            }
            other => panic!("{until} {reason:?}: {other:?}"),
        }
    }
    ask(&alice, &later, "The capstone demo is in January.").unwrap();
    assert!(
        matches!(
            ask(&alice, &later, "again"),
            Err(slices::error::Error::Forbidden(_))
        ),
        "one request waits at a time"
    );
    assert_eq!(mails(&f, "extension_asked"), 1, "staff are told");
    let ext = f.count("SELECT id FROM extensions WHERE state = 'waiting'");
    // A student cannot decide it.
    assert!(f
        .ctx
        .db
        .write(|tx| term::decide_extension(tx, &alice, ext, true, "", "127.0.0.1"))
        .is_err());
    let s = f
        .ctx
        .db
        .write(|tx| term::decide_extension(tx, &staff, ext, true, "Good luck", "127.0.0.1"))
        .unwrap();
    let new_end = ends + 30 * DAY;
    assert_eq!(s.expires_at, Some(new_end));
    assert!(
        f.ctx
            .db
            .write(|tx| term::decide_extension(tx, &staff, ext, false, "", "127.0.0.1"))
            .is_err(),
        "decided once"
    );
    assert_eq!(mails(&f, "extension_decided"), 1);
    // The old dates mean nothing now: no stop at the course's end; the stage starts again and
    // the warnings come for the new date.
    assert_eq!(
        pass(&f, ends + 60),
        Passed {
            reset: 1,
            ..Default::default()
        }
    );
    assert_eq!(pass(&f, ends + 120), Passed::default());
    assert_eq!(pass(&f, new_end - 14 * DAY + 60), warned(1));
    assert_eq!(pass(&f, new_end - 3 * DAY + 60), warned(1));
    assert_eq!(f.slice(id).state, State::Running);
    assert_eq!(mails(&f, "expiry_warning"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_cannot_start_a_slice_whose_end_has_come_but_staff_can() {
    let f = fleet(1, |_| "10.92.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|_| {});
    f.wait_for(id, State::Running, 20).await;
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, slices::jobs::JobKind::Stop, "127.0.0.1"))
        .unwrap();
    f.wait_for(id, State::Stopped, 20).await;
    // Its own end, yesterday (as an extension that ran out would leave it).
    let yesterday = slices::clock::now() - DAY;
    f.ctx
        .db
        .write(|tx| slices::records::courses::set_expiry(tx, id, Some(yesterday)))
        .unwrap();
    let r = f
        .ctx
        .db
        .write(|tx| slices::slices::act(tx, &alice, id, slices::jobs::JobKind::Start, "127.0.0.1"));
    assert!(
        matches!(&r, Err(slices::error::Error::Forbidden(m)) if m.contains("more time")),
        "{r:?}"
    );
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &staff, id, slices::jobs::JobKind::Start, "127.0.0.1"))
        .unwrap();
    f.wait_for(id, State::Running, 20).await;
    jobs.stop().await;
}

/// Runs the real master at `offset` until it has done a term check after starting, then
/// kills it (SIGKILL, no tidying up).
async fn master_at(f: &Fleet, offset: i64) {
    let before = f.count("SELECT count(*) FROM jobs WHERE kind = 'term' AND state = 'succeeded'");
    let mut m = f.start_master(&[
        (slices::clock::TEST_OFFSET_ENV, offset.to_string()),
        ("SLICES_TERM_CHECK_SECONDS", "1".to_string()),
    ]);
    let start = std::time::Instant::now();
    while f.count("SELECT count(*) FROM jobs WHERE kind = 'term' AND state = 'succeeded'")
        < before + 2
    {
        assert!(start.elapsed().as_secs() < 30, "no term check ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The jobs a check queued (a stop, a destroy) finish before the kill.
    while f.count("SELECT count(*) FROM jobs WHERE kind IN ('stop', 'destroy') AND state IN ('queued', 'running')") > 0 {
        assert!(start.elapsed().as_secs() < 30, "a stop or destroy did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m.0.kill().unwrap();
    m.0.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_master_restarts_on_a_test_clock_each_step_happens_exactly_once() {
    let f = fleet(1, |_| "10.93.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let ends = course(&f, &staff, "CS 3650", 20);
    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|_| {});
    f.wait_for(id, State::Running, 20).await;
    jobs.stop().await;
    let now = slices::clock::now();
    let at = |t: i64| t - now; // the offset that makes the master's clock read `t`
    let counts = || {
        (
            mails(&f, "expiry_warning"),
            mails(&f, "expired"),
            mails(&f, "slice_destroyed"),
        )
    };
    master_at(&f, at(ends - 14 * DAY + 3600)).await;
    assert_eq!(counts(), (1, 0, 0));
    master_at(&f, at(ends - 14 * DAY + 7200)).await;
    assert_eq!(counts(), (1, 0, 0), "a restart sends nothing twice");
    master_at(&f, at(ends - 3 * DAY + 3600)).await;
    master_at(&f, at(ends - DAY + 3600)).await;
    assert_eq!(counts(), (3, 0, 0));
    master_at(&f, at(ends + 3600)).await;
    assert_eq!(f.slice(id).state, State::Stopped);
    master_at(&f, at(ends + 7200)).await;
    assert_eq!(counts(), (3, 1, 0));
    master_at(&f, at(ends + GRACE + 3600)).await;
    assert_eq!(f.slice(id).state, State::Destroyed);
    master_at(&f, at(ends + GRACE + 7200)).await;
    assert_eq!(counts(), (3, 1, 1), "each step exactly once");
    assert_eq!(mails(&f, "slice_stopped"), 0);
}
