//! Usage: the job loop samples each node's running slices, the dashboard shows usage against
//! the plan with a chart, and a risen failcnt is an alert (audit row, one mail a day).

use std::time::{Duration, Instant};

use slices::agent::driver::Counter;
use slices::domain::Role;
use slices::slices::State;

use crate::fleet::*;

fn counter(resource: &str, held: u64, limit: u64, failcnt: u64) -> Counter {
    Counter {
        resource: resource.into(),
        held,
        maxheld: held,
        barrier: limit,
        limit,
        failcnt,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_sampled_shown_with_a_chart_and_a_hit_limit_is_told_once_a_day() {
    let f = fleet(1, |_| "10.88.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let id = f.request_and_approve(&alice, &staff);
    let jobs = f.run_jobs(|c| c.usage_secs = 1);
    f.wait_for(id, State::Running, 20).await;
    // The loop samples the simulated node: memory and processes against the plan.
    let start = Instant::now();
    while f.count(&format!("SELECT count(DISTINCT at) FROM usage_samples WHERE slice_id = {id} AND resource = 'memory'")) < 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "no usage samples");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latest = f.ctx.db.read(|c| slices::usage::latest(c, id)).unwrap();
    let memory = latest.iter().find(|l| l.resource == "memory").unwrap();
    assert_eq!(
        (memory.held_text.as_str(), memory.limit_text.as_str()),
        ("25 MB", "512 MB")
    );
    assert_eq!(memory.percent, Some(4));
    let procs = latest.iter().find(|l| l.resource == "numproc").unwrap();
    assert_eq!(procs.limit_text, "240 processes");

    // The dashboard shows it, with the chart.
    let app = slices::web::Application::build(f.ctx.clone()).unwrap();
    let base = app.base_url().to_string();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let c = crate::http::browser();
    crate::http::log_in(&c, &base, "alice").await;
    let home = c
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("<h3>Usage</h3>") && home.contains("512 MB"),
        "{home}"
    );
    assert!(home.contains("<svg class=\"chart\""), "the chart");
    handle.stop(false).await;
    jobs.stop().await;

    // A risen failcnt: an audit row each time, a mail to the owner once a day.
    let day = "2026-11-29";
    let t = slices::store::now() + 1000;
    let alerts = f
        .ctx
        .db
        .write(|tx| {
            let mut out = Vec::new();
            for (i, failcnt) in [3u64, 3, 40, 41].into_iter().enumerate() {
                let risen = slices::usage::record(
                    tx,
                    id,
                    t + i as i64 * 60,
                    &[counter("memory", 500 << 20, 512 << 20, failcnt)],
                )?;
                for (resource, hits) in risen {
                    out.push((
                        resource.clone(),
                        hits,
                        slices::usage::alert(tx, id, &resource, hits, day)?,
                    ));
                }
            }
            Ok::<_, slices::error::Error>(out)
        })
        .unwrap();
    // 0 -> 3 (the sim's samples had 0), 3 -> 3 (nothing), 3 -> 40, 40 -> 41.
    assert_eq!(
        alerts,
        vec![
            ("memory".to_string(), 3, true),
            ("memory".to_string(), 37, false),
            ("memory".to_string(), 1, false)
        ]
    );
    assert_eq!(
        f.count("SELECT count(*) FROM outbox WHERE kind = 'limit_hit'"),
        1
    );
    assert_eq!(
        f.count("SELECT count(*) FROM audit WHERE event = 'limit_hit'"),
        3
    );
    assert_eq!(
        f.count(&format!(
            "SELECT hits FROM limit_alerts WHERE slice_id = {id}"
        )),
        41
    );
    let mail = f
        .ctx
        .db
        .read(|c| slices::mail::list(c, None, 50, 0))
        .unwrap()
        .0
        .into_iter()
        .find(|m| m.kind == "limit_hit")
        .unwrap();
    let site = f.ctx.site();
    let text = slices::mail::render(slices::mail::Kind::LimitHit, &mail.data, &site)
        .unwrap()
        .text;
    assert!(
        text.contains("hit its memory limit 3 times") && text.contains("512 MB"),
        "{text}"
    );
    assert_eq!(mail.to_addr, "alice@example.edu");
    // Samples older than the keep time go.
    let gone = f
        .ctx
        .db
        .write(|tx| slices::usage::prune(tx, t + 1000))
        .unwrap();
    assert!(gone > 0);
}
