//! `export_home`, `read_export`, `drop_export` and `import_home` over the real link (simulator
//! driver): an archive is read by its hash in pieces, a newer export makes the old hash a
//! conflict, pieces arrive in order and the last is checked before anything is unpacked.

use base64::Engine as _;
use slices::slave_link::{code, Command, Reply};
use slices::templates::Sha256Hex;

use super::helpers::*;

fn export_of(r: &Reply) -> (u64, Sha256Hex) {
    assert_eq!(r.code, 0, "{}", r.text());
    assert_eq!(r.returned[0], "exported");
    (
        r.returned[1]["size"].as_u64().unwrap(),
        Sha256Hex::parse(r.returned[1]["sha256"].as_str().unwrap()).unwrap(),
    )
}

fn piece(r: &Reply) -> Vec<u8> {
    assert_eq!(r.code, 0, "{}", r.text());
    base64::engine::general_purpose::STANDARD
        .decode(r.returned[0].as_str().unwrap())
        .unwrap()
}

/// A `.tar.gz` holding one file.
fn archive(name: &str, body: &[u8]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut t = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append_data(&mut h, name, body).unwrap();
    t.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn a_home_is_exported_read_by_its_hash_and_imported_whole_or_not_at_all() {
    let lab = start_agent().await;
    let mut m = lab.master().await;
    let s = spec(301, "10.77.0.31");
    let id = s.id;
    assert_eq!(
        m.call(&Command::ExportHome(id)).await.unwrap().code,
        code::NOT_FOUND
    );
    assert_eq!(
        m.call(&Command::CreateEnv(Box::new(s))).await.unwrap().code,
        0
    );
    let any = Sha256Hex::parse(&"ab".repeat(32)).unwrap();
    let read = |sha: &Sha256Hex, offset: u64, len: u32| Command::ReadExport {
        id,
        sha256: sha.clone(),
        offset,
        len,
        raw: false,
    };
    let r = m.call(&read(&any, 0, 10)).await.unwrap();
    assert_eq!(r.code, code::NOT_FOUND, "{}", r.text());

    // A stopped slice is exported too; its archive is read back in pieces to the byte.
    let (size, sha) = export_of(&m.call(&Command::ExportHome(id)).await.unwrap());
    let mut got = Vec::new();
    while (got.len() as u64) < size {
        got.extend(piece(
            &m.call(&read(&sha, got.len() as u64, 100)).await.unwrap(),
        ));
    }
    assert_eq!(got.len() as u64, size);
    assert_eq!(
        Sha256Hex::parse(&format!(
            "{:x}",
            <sha2::Sha256 as sha2::Digest>::digest(&got)
        ))
        .unwrap(),
        sha
    );
    // Raw: the same bytes after the reply's line instead of base64 in it.
    let mut raw = Vec::new();
    while (raw.len() as u64) < size {
        let r = m
            .call(&Command::ReadExport {
                id,
                sha256: sha.clone(),
                offset: raw.len() as u64,
                len: 100,
                raw: true,
            })
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.text());
        assert_eq!(r.raw_len(), r.raw.as_ref().map(|b| b.len()));
        raw.extend(r.raw.unwrap());
    }
    assert_eq!(raw, got);
    assert!(piece(&m.call(&read(&sha, size, 100)).await.unwrap()).is_empty());
    let r = m.call(&read(&sha, size + 1, 100)).await.unwrap();
    assert_eq!(r.code, code::BAD_ARGUMENTS, "{}", r.text());

    // Importing needs the slice running; pieces go in order; a wrong hash unpacks nothing.
    let new = archive("alice/thesis.txt", b"chapter 2");
    let new_sha = Sha256Hex::parse(&format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(&new)
    ))
    .unwrap();
    let import = |sha: &Sha256Hex, offset: usize, end: usize| Command::ImportHome {
        id,
        sha256: sha.clone(),
        size: new.len() as u64,
        offset: offset as u64,
        data: new[offset..end].to_vec(),
    };
    let r = m.call(&import(&new_sha, 0, new.len())).await.unwrap();
    assert_eq!(r.code, code::CONFLICT, "stopped: {}", r.text());
    assert_eq!(m.call(&Command::StartEnv(id)).await.unwrap().code, 0);
    let r = m.call(&import(&any, 0, new.len())).await.unwrap();
    assert_eq!(r.code, code::FAILED, "{}", r.text());
    assert!(r.text().contains("nothing was installed"), "{}", r.text());
    let half = new.len() / 2;
    let r = m.call(&import(&new_sha, 0, half)).await.unwrap();
    assert_eq!(r.returned[0], "partial", "{}", r.text());
    let r = m
        .call(&import(&new_sha, half + 1, new.len()))
        .await
        .unwrap();
    assert_eq!(r.code, code::CONFLICT, "out of order: {}", r.text());
    assert_eq!(r.returned[1], half as u64);
    let r = m.call(&import(&new_sha, half, new.len())).await.unwrap();
    assert_eq!(r.returned[0], "imported", "{}", r.text());
    // The last piece again (its answer lost): the same answer, nothing done twice.
    let r = m.call(&import(&new_sha, half, new.len())).await.unwrap();
    assert_eq!(r.returned[0], "imported", "{}", r.text());
    let home = lab.state.join("sim/301.home/alice/thesis.txt");
    assert_eq!(std::fs::read(&home).unwrap(), b"chapter 2");

    // The data as a base64 string (the all-JSON form; `call` sends it as raw bytes after the
    // line) is taken the same way.
    use base64::Engine as _;
    let third = archive("alice/thesis.txt", b"chapter 3");
    let third_sha = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&third));
    let req = slices::slave_link::Request {
        command: "import_home".into(),
        arguments: vec![
            serde_json::json!(id),
            serde_json::json!(third_sha),
            serde_json::json!(third.len()),
            serde_json::json!(0),
            serde_json::json!(base64::engine::general_purpose::STANDARD.encode(&third)),
        ],
    };
    let r = m.call_raw(&req).await.unwrap();
    assert_eq!(r.returned[0], "imported", "{}", r.text());
    assert_eq!(std::fs::read(&home).unwrap(), b"chapter 3");
    // Raw bytes announced beyond a piece's size: refused, and the link is closed (what
    // follows could not be read as lines).
    let mut other = lab.master().await;
    let r = other
        .send_bytes(
            format!(
                "{{\"command\":\"import_home\",\"arguments\":[301,\"{third_sha}\",10,0,{{\"bytes\":99999999}}]}}"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(r.code, code::BAD_ARGUMENTS, "{}", r.text());
    assert!(other.call(&Command::Ping).await.is_err(), "closed");

    // A new export has the new file; the old hash is now a conflict, not old bytes.
    let (_, sha2) = export_of(&m.call(&Command::ExportHome(id)).await.unwrap());
    assert_ne!(sha2, sha);
    let r = m.call(&read(&sha, 0, 100)).await.unwrap();
    assert_eq!(r.code, code::CONFLICT, "{}", r.text());
    assert_eq!(
        m.call(&Command::DropExport(id)).await.unwrap().returned[0],
        "dropped"
    );
    assert_eq!(
        m.call(&Command::DropExport(id)).await.unwrap().returned[0],
        "absent"
    );
    let r = m.call(&read(&sha2, 0, 100)).await.unwrap();
    assert_eq!(r.code, code::NOT_FOUND);
    assert_eq!(m.call(&Command::DestroyEnv(id)).await.unwrap().code, 0);
}
