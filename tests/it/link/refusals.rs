use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::json;
use slices::domain::NodeName;
use slices::slave_link::pki::{self, Ca};
use slices::slave_link::{code, AgentClient, Command, Request};

use super::helpers::*;

async fn try_ping(lab: &Lab, tls: Arc<rustls::ClientConfig>, node: &str) -> Result<i32, String> {
    let node = NodeName::parse(node).unwrap();
    let mut c = AgentClient::connect(&lab.address, &node, tls, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    c.call(&Command::Ping)
        .await
        .map(|r| r.code)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn only_the_masters_certificate_is_let_in() {
    let lab = start_agent().await;
    assert_eq!(
        try_ping(&lab, lab.ca.client_config().unwrap(), "node1").await,
        Ok(0)
    );

    // No client certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(lab.ca.cert_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    assert!(
        try_ping(&lab, Arc::new(anonymous), "node1").await.is_err(),
        "no certificate"
    );

    // A master certificate from another CA.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Ca::open_or_create(other_dir.path()).unwrap();
    let foreign = pki::client_config(lab.ca.cert_pem(), &other.master_identity().unwrap()).unwrap();
    assert!(
        try_ping(&lab, foreign, "node1").await.is_err(),
        "another CA"
    );

    // A node's own certificate (same CA, but for server use only) cannot command a node.
    let node2 = lab
        .ca
        .issue_node(&NodeName::parse("node2").unwrap())
        .unwrap();
    let as_node = pki::client_config(lab.ca.cert_pem(), &node2).unwrap();
    assert!(
        try_ping(&lab, as_node, "node1").await.is_err(),
        "a node certificate as client"
    );
    let stranger = lab.ca.issue_other_client("stranger").unwrap();
    let stranger = pki::client_config(lab.ca.cert_pem(), &stranger).unwrap();
    assert!(
        try_ping(&lab, stranger, "node1").await.is_err(),
        "a certificate without client use"
    );

    // The master refuses an agent whose certificate names another node.
    let err = try_ping(&lab, lab.ca.client_config().unwrap(), "node7")
        .await
        .unwrap_err();
    assert!(err.contains("TLS"), "{err}");
    assert_eq!(lab.sim_files(), 0);
}

#[tokio::test]
async fn bad_requests_get_a_code_and_a_reason_and_run_nothing() {
    let lab = start_agent().await;
    let mut m = lab.master().await;
    for (line, want) in [
        (&b"not json"[..], code::MALFORMED),
        (b"[1,2,3]", code::MALFORMED),
        (b"{\"command\": 5}", code::MALFORMED),
        (
            b"{\"command\":\"ping\",\"arguments\":[],\"sudo\":true}",
            code::MALFORMED,
        ),
        (
            b"{\"command\":\"exec\",\"arguments\":[\"id\"]}",
            code::UNKNOWN_COMMAND,
        ),
        (
            b"{\"command\":\"start_env\",\"arguments\":[\"101\"]}",
            code::BAD_ARGUMENTS,
        ),
        (
            b"{\"command\":\"start_env\",\"arguments\":[101.5]}",
            code::BAD_ARGUMENTS,
        ),
        (
            b"{\"command\":\"start_env\",\"arguments\":[42]}",
            code::BAD_ARGUMENTS,
        ),
        (
            b"{\"command\":\"start_env\",\"arguments\":[101, 102]}",
            code::BAD_ARGUMENTS,
        ),
        (
            b"{\"command\":\"ping\",\"arguments\":[\"x\"]}",
            code::BAD_ARGUMENTS,
        ),
        (b"\xff\xfe\x00", code::MALFORMED),
    ] {
        let r = m.send_bytes(line).await.unwrap();
        assert_eq!(
            r.code,
            want,
            "{}: {}",
            String::from_utf8_lossy(line),
            r.text()
        );
        assert!(!r.text().is_empty(), "a reason is given");
    }
    // The connection is still good after all that.
    assert_eq!(m.call(&Command::Ping).await.unwrap().code, 0);
}

#[tokio::test]
async fn injection_in_every_string_argument_is_refused() {
    let lab = start_agent().await;
    let mut m = lab.master().await;
    let good = Command::CreateEnv(Box::new(spec(101, "10.77.0.11"))).to_request();
    let evil = [
        "a; rm -rf /",
        "$(id)",
        "`id`",
        "../../etc",
        "a\nb",
        "a\u{0}b",
        "x' OR '1'='1",
        "-rf",
    ];
    let mut tried = 0;
    for e in evil {
        let mut variants: Vec<Request> = Vec::new();
        for i in [1usize, 2] {
            let mut r = good.clone();
            r.arguments[i] = json!(e);
            variants.push(r);
        }
        for key in ["ip", "hostname", "search_domain"] {
            let mut r = good.clone();
            r.arguments[3][key] = json!(e);
            variants.push(r);
        }
        let mut r = good.clone();
        r.arguments[3]["nameservers"] = json!([e]);
        variants.push(r);
        let mut r = good.clone();
        r.arguments[3]["keys"] =
            json!([e, format!("{KEY}\n{e}"), format!("command=\"{e}\" {KEY}")]);
        variants.push(r);
        for r in variants {
            let reply = m.call_raw(&r).await.unwrap();
            assert_eq!(
                reply.code,
                code::BAD_ARGUMENTS,
                "{e:?} in {:?}: {}",
                r.arguments,
                reply.text()
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 8 * 7);
    assert_eq!(lab.sim_files(), 0, "nothing was created");
    assert_eq!(m.call(&Command::ListEnvs).await.unwrap().returned.len(), 0);
}

#[tokio::test]
async fn an_oversized_line_gets_an_error_and_the_link_is_closed() {
    let lab = start_agent().await;
    let mut m = lab.master().await;
    let huge = format!(
        "{{\"command\":\"ping\",\"arguments\":[\"{}\"]}}",
        "a".repeat(1536 * 1024)
    );
    let r = m.send_bytes(huge.as_bytes()).await.unwrap();
    assert_eq!(r.code, code::TOO_LARGE);
    assert!(
        m.call(&Command::Ping).await.is_err(),
        "the connection is closed"
    );
    let mut again = lab.master().await;
    assert_eq!(again.call(&Command::Ping).await.unwrap().code, 0);
}

/// Every connection has a time limit: a master's link that sends nothing is closed after the
/// idle time (a half-sent request too), and one that never finishes its handshake after the
/// handshake time; a new link works at once.
#[tokio::test]
async fn idle_and_half_open_connections_are_closed_in_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lab = start_agent_with(slices::slave_link::ServerOptions {
        handshake_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut idle = lab.master().await;
    assert_eq!(idle.call(&Command::Ping).await.unwrap().code, 0);
    let mut half = lab.master().await;
    let _ = half.send_bytes(b"{\"command\":\"pi").await; // no end of line: waits
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(idle.call(&Command::Ping).await.is_err(), "idle link closed");
    assert!(
        half.call(&Command::Ping).await.is_err(),
        "half request closed"
    );

    let mut raw = tokio::net::TcpStream::connect(&lab.address).await.unwrap();
    raw.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // a handshake begun, never ended
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), raw.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the silent handshake was closed by the agent: {read:?}"
    );
    let mut again = lab.master().await;
    assert_eq!(again.call(&Command::Ping).await.unwrap().code, 0);
}
