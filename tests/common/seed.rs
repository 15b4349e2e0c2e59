//! The seed's table ("Communication" in the original design), each message exactly as the
//! seed writes it, sent over a real link to a real agent, with the effect each must have.
//! Shared by the conformance tests of the simulator (`it`) and of LXC (`system`).

use serde_json::Value;
use slices::slave_link::AgentClient;

/// Sends one line as written; the answer's code and returned values.
async fn send(link: &mut AgentClient, line: &str) -> (i32, Vec<Value>) {
    let r = link.send_bytes(line.as_bytes()).await.unwrap();
    (r.code, r.returned)
}

async fn state(link: &mut AgentClient, id: u64) -> String {
    let (code, ret) = send(
        link,
        &format!(r#"{{"command": "env_status", "arguments": [{id}]}}"#),
    )
    .await;
    assert_eq!(code, 0);
    ret[0]["state"].as_str().unwrap_or_default().to_string()
}

/// Every message of the seed's table in the seed's form, in its order, for container `id`
/// of `template` (which the node has) and user `username`: each answers code 0 and does
/// what the table says. `subnet_prefix` is the start of the node's addresses ("10.77.0.").
pub async fn conformance(
    link: &mut AgentClient,
    id: u64,
    template: &str,
    username: &str,
    subnet_prefix: &str,
) {
    // sync_templates: "check template files for changes": the node reports its templates.
    let (code, ret) = send(link, r#"{"command": "sync_templates", "arguments": []}"#).await;
    assert_eq!(code, 0, "sync_templates: {ret:?}");
    assert!(
        ret.iter().any(|t| t["name"] == template),
        "the template set is reported: {ret:?}"
    );

    // create_env id template username: made and started, with what was chosen said.
    let line =
        format!(r#"{{"command": "create_env", "arguments": [{id}, "{template}", "{username}"]}}"#);
    let (code, ret) = send(link, &line).await;
    assert_eq!(code, 0, "create_env: {ret:?}");
    assert_eq!(ret[0], "created");
    let ip = ret[1]["ip"].as_str().unwrap_or_default().to_string();
    assert!(
        ip.starts_with(subnet_prefix),
        "an address of the node: {ret:?}"
    );
    assert_eq!(ret[1]["hostname"], username);
    assert_eq!(
        state(link, id).await,
        "running",
        "the table ends with vzctl start"
    );
    // Sent again: the same answer, nothing made twice.
    let (code, again) = send(link, &line).await;
    assert_eq!(code, 0, "{again:?}");
    assert_eq!(again[1]["ip"], ret[1]["ip"]);

    // start_env id: it runs (already).
    let (code, ret) = send(
        link,
        &format!(r#"{{"command": "start_env", "arguments": [{id}]}}"#),
    )
    .await;
    assert_eq!(code, 0, "start_env: {ret:?}");
    assert_eq!(state(link, id).await, "running");

    // destroy_env id: stopped and removed.
    let (code, ret) = send(
        link,
        &format!(r#"{{"command": "destroy_env", "arguments": [{id}]}}"#),
    )
    .await;
    assert_eq!(code, 0, "destroy_env: {ret:?}");
    assert_eq!(ret[0], "destroyed");
    assert_eq!(state(link, id).await, "absent");
}
