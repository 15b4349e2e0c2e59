//! `sync_templates` and `put_template`: the master's templates reach a node over the same
//! mutual TLS, are checked against their hash, and are installed atomically.

use std::sync::Arc;

use serde_json::json;
use slices::slave_link::{code, Command, Request};
use slices::templates::{sha256_file, TemplateDir};

use super::helpers::*;

#[tokio::test]
async fn templates_sync_to_a_node_and_a_second_sync_sends_nothing() {
    let lab = start_agent().await;
    let mut m = lab.master().await;
    let master_dir = lab.dir.path().join("master-templates");
    let dir = Arc::new(TemplateDir::new(&master_dir).unwrap());
    // A template of several pieces, and a new version of the one the node has.
    let big: Vec<u8> = (0..1_300_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(master_dir.join("big-1.tar.gz"), &big).unwrap();
    std::fs::write(
        master_dir.join(format!("{TEMPLATE}.tar.gz")),
        b"a newer version",
    )
    .unwrap();

    let done = slices::nodes::sync_templates(&mut m, dir.clone())
        .await
        .unwrap();
    let outcomes: Vec<(&str, &str)> = done.iter().map(|s| (s.name.as_str(), s.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![("big-1", "installed"), (TEMPLATE, "installed")]
    );
    assert_eq!(done[0].bytes_sent, big.len() as u64);
    let node_dir = lab.dir.path().join("templates");
    assert_eq!(
        sha256_file(&node_dir.join("big-1.tar.gz")).unwrap(),
        sha256_file(&master_dir.join("big-1.tar.gz")).unwrap()
    );
    assert_eq!(
        std::fs::read(node_dir.join(format!("{TEMPLATE}.tar.gz"))).unwrap(),
        b"a newer version"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&node_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let again = slices::nodes::sync_templates(&mut m, dir).await.unwrap();
    assert!(
        again
            .iter()
            .all(|s| s.outcome == "current" && s.bytes_sent == 0),
        "{again:?}"
    );
    // node_info now lists both, with the master's hashes.
    let info = m.call(&Command::NodeInfo).await.unwrap();
    assert_eq!(info.returned[0]["templates"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_piece_that_does_not_match_installs_nothing() {
    let lab = start_agent().await;
    let mut m = lab.master().await;
    let wrong_hash = "0".repeat(64);
    let r = m
        .call_raw(&Request {
            command: "put_template".into(),
            arguments: vec![
                json!(TEMPLATE),
                json!(wrong_hash),
                json!(3),
                json!(0),
                json!("AAAA"),
            ],
        })
        .await
        .unwrap();
    assert_eq!(r.code, code::FAILED, "{}", r.text());
    assert!(r.text().contains("nothing was installed"));
    assert_eq!(
        std::fs::read(lab.dir.path().join(format!("templates/{TEMPLATE}.tar.gz"))).unwrap(),
        b"not really a tarball",
        "the old version stays"
    );
    for (args, why) in [
        (
            vec![
                json!("../../etc/passwd"),
                json!(wrong_hash),
                json!(3),
                json!(0),
                json!("AAAA"),
            ],
            "name",
        ),
        (
            vec![json!("t"), json!("xyz"), json!(3), json!(0), json!("AAAA")],
            "sha256",
        ),
        (
            vec![
                json!("t"),
                json!(wrong_hash),
                json!(3),
                json!(2),
                json!("AAAA"),
            ],
            "past",
        ),
        (
            vec![
                json!("t"),
                json!(wrong_hash),
                json!(3),
                json!(0),
                json!("!!!"),
            ],
            "base64",
        ),
    ] {
        let r = m
            .call_raw(&Request {
                command: "put_template".into(),
                arguments: args,
            })
            .await
            .unwrap();
        assert_eq!(r.code, code::BAD_ARGUMENTS, "{why}: {}", r.text());
    }
}
