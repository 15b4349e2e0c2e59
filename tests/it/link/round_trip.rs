use serde_json::json;
use slices::domain::{Limits, VeId};
use slices::slave_link::{code, Command};

use super::helpers::*;

#[tokio::test]
async fn a_slice_goes_through_its_whole_life_over_mutual_tls() {
    let lab = start_agent().await;
    let mut m = lab.master().await;

    let r = m.call(&Command::Ping).await.unwrap();
    assert_eq!(r.code, 0);
    assert_eq!(r.returned[0], "pong");

    let r = m.call(&Command::NodeInfo).await.unwrap();
    let info = &r.returned[0];
    assert_eq!(info["driver"], "sim");
    assert_eq!(info["simulated"], true, "the simulator says so");
    assert_eq!(info["name"], "node1");
    assert_eq!(info["subnet"], "10.77.0.0/24");
    let t = &info["templates"][0];
    assert_eq!(t["name"], TEMPLATE);
    assert_eq!(
        t["sha256"],
        slices::templates::sha256_file(
            &lab.dir.path().join(format!("templates/{TEMPLATE}.tar.gz"))
        )
        .unwrap()
        .to_string()
    );

    let s = spec(101, "10.77.0.11");
    let id = s.id;
    let create = Command::CreateEnv(Box::new(s.clone()));
    let r = m.call(&create).await.unwrap();
    assert_eq!((r.code, r.returned[0].clone()), (0, json!("created")));
    // Idempotent: the same spec again succeeds and says so.
    let r = m.call(&create).await.unwrap();
    assert_eq!((r.code, r.returned[0].clone()), (0, json!("exists")));
    assert_eq!(lab.sim_files(), 1);
    // Another spec under the same id is a conflict.
    let mut other = s.clone();
    other.hostname = "bob".parse().unwrap();
    let r = m.call(&Command::CreateEnv(Box::new(other))).await.unwrap();
    assert_eq!(r.code, code::CONFLICT, "{}", r.text());
    // Another id on the same address is a conflict too.
    let r = m
        .call(&Command::CreateEnv(Box::new(spec(102, "10.77.0.11"))))
        .await
        .unwrap();
    assert_eq!(r.code, code::CONFLICT, "{}", r.text());

    let r = m.call(&Command::StartEnv(id)).await.unwrap();
    assert_eq!(r.returned[0], "started");
    let r = m.call(&Command::StartEnv(id)).await.unwrap();
    assert_eq!(
        (r.code, r.returned[0].clone()),
        (0, json!("already running"))
    );
    let r = m.call(&Command::EnvStatus(id)).await.unwrap();
    assert_eq!(r.returned[0]["state"], "running");
    assert_eq!(r.returned[0]["ip"], "10.77.0.11");
    let r = m.call(&Command::ListEnvs).await.unwrap();
    assert_eq!(r.returned.len(), 1);

    let bigger = Limits {
        memory_mb: 512,
        memory_limit_mb: 1024,
        ..Limits::default()
    };
    let r = m.call(&Command::SetLimits(id, bigger)).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let r = m.call(&Command::Usage(Some(id))).await.unwrap();
    let mem = &r.returned[0]["counters"][0];
    assert_eq!(mem["resource"], "memory");
    assert_eq!(
        mem["limit"],
        1024u64 * 1024 * 1024,
        "the new plan is in force"
    );
    let r = m.call(&Command::Usage(None)).await.unwrap();
    assert_eq!(r.returned.len(), 1);

    let r = m.call(&Command::RestartEnv(id)).await.unwrap();
    assert_eq!(r.returned[0], "restarted");
    let r = m.call(&Command::StopEnv(id)).await.unwrap();
    assert_eq!(r.returned[0], "stopped");
    let r = m.call(&Command::StopEnv(id)).await.unwrap();
    assert_eq!(r.returned[0], "already stopped");
    let r = m.call(&Command::DestroyEnv(id)).await.unwrap();
    assert_eq!(r.returned[0], "destroyed");
    let r = m.call(&Command::DestroyEnv(id)).await.unwrap();
    assert_eq!(
        (r.code, r.returned[0].clone()),
        (0, json!("absent")),
        "destroying a missing id succeeds and says so"
    );
    let r = m.call(&Command::EnvStatus(id)).await.unwrap();
    assert_eq!(r.returned[0]["state"], "absent");
    let r = m.call(&Command::StartEnv(id)).await.unwrap();
    assert_eq!(r.code, code::NOT_FOUND);
    assert_eq!(lab.sim_files(), 0);
    // The address is free again.
    let r = m
        .call(&Command::CreateEnv(Box::new(spec(102, "10.77.0.11"))))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
}

#[tokio::test]
async fn create_checks_what_only_the_host_knows() {
    let lab = start_agent().await;
    let mut m = lab.master().await;
    // An address outside the node's subnet, or its gateway.
    for ip in ["10.78.0.5", "10.77.0.1", "10.77.0.255"] {
        let r = m
            .call(&Command::CreateEnv(Box::new(spec(101, ip))))
            .await
            .unwrap();
        assert_eq!(r.code, code::BAD_ARGUMENTS, "{ip}: {}", r.text());
    }
    let mut s = spec(101, "10.77.0.12");
    s.template = "centos-5".parse().unwrap();
    let r = m.call(&Command::CreateEnv(Box::new(s))).await.unwrap();
    assert_eq!(r.code, code::NO_TEMPLATE);
    assert!(r.text().contains("no template `centos-5`"));
    assert_eq!(lab.sim_files(), 0);
    let _ = VeId::new(101);
}

#[tokio::test]
async fn many_requests_in_turn_on_one_connection_and_several_connections() {
    let lab = start_agent().await;
    let mut a = lab.master().await;
    let mut b = lab.master().await;
    for i in 0..200 {
        let r = if i % 2 == 0 {
            a.call(&Command::Ping).await
        } else {
            b.call(&Command::Ping).await
        };
        assert_eq!(r.unwrap().code, 0);
    }
}
