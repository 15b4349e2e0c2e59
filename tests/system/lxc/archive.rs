//! The archive of a real slice's /home: packed on the host from a running and from a stopped
//! slice (owners as the slice sees them, links kept as links), read over the link by its
//! hash, unpacked into another slice by that slice's own root, where the student finds every
//! file as it was. A student who makes /home a link to a host folder gets nothing packed.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use slices::agent::Agent;
use slices::domain::{DnsName, Limits, PrivateIp, TemplateName, Username, VeId};
use slices::slave_link::{code, AgentClient, Command, EnvSpec};
use slices::templates::Sha256Hex;
use std::sync::Arc;

use crate::lxc_node::{self, LxcNode};
use crate::system::*;

pub fn spec(id: u64, ip: &str, key: &str) -> EnvSpec {
    EnvSpec {
        id: VeId::new(id).unwrap(),
        template: TemplateName::parse("debian-12-ssh_amd64").unwrap(),
        username: Username::parse("alice").unwrap(),
        ip: PrivateIp::parse(ip).unwrap(),
        hostname: DnsName::parse("alice-slice").unwrap(),
        nameservers: vec![],
        search_domain: None,
        limits: Limits {
            memory_mb: 192,
            memory_limit_mb: 256,
            processes: 300,
            disk_mb: 1024,
            cpu_shares: 512,
        },
        keys: vec![key.parse().unwrap()],
        root: true,
    }
}

pub struct Cleanup(pub Arc<Agent>, pub Vec<VeId>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        use slices::slave_link::Handler;
        for id in &self.1 {
            let _ = self.0.handle(Command::DestroyEnv(*id));
        }
    }
}

/// Exports and reads the whole archive back over the link: its bytes, checked.
async fn export(m: &mut AgentClient, id: VeId) -> Vec<u8> {
    let r = m.call(&Command::ExportHome(id)).await.unwrap();
    assert_eq!(r.code, 0, "export_home: {}", r.text());
    let size = r.returned[1]["size"].as_u64().unwrap();
    let sha = Sha256Hex::parse(r.returned[1]["sha256"].as_str().unwrap()).unwrap();
    let mut got = Vec::new();
    while (got.len() as u64) < size {
        let r = m
            .call(&Command::ReadExport {
                id,
                sha256: sha.clone(),
                offset: got.len() as u64,
                len: 512 * 1024,
                raw: false,
            })
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.text());
        got.extend(
            base64::engine::general_purpose::STANDARD
                .decode(r.returned[0].as_str().unwrap())
                .unwrap(),
        );
    }
    assert_eq!(format!("{:x}", Sha256::digest(&got)), sha.as_str());
    got
}

/// `(path, uid, kind, size)` of each entry.
fn entries(gz: &[u8]) -> Vec<(String, u64, tar::EntryType, u64)> {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(gz));
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().display().to_string(),
                h.uid().unwrap(),
                h.entry_type(),
                h.size().unwrap(),
            )
        })
        .collect()
}

pub async fn a_home_moves_between_slices_by_archive() {
    let mut node: LxcNode = lxc_node::start("arch1", "slbr-arch", "10.97.0.0/24").await;
    let work = node.work.path().to_path_buf();
    let (key, public) = keypair(&work, "alice-key");
    let a = spec(4501, "10.97.0.11", &public);
    let b = spec(4502, "10.97.0.12", &public);
    let _guard = Cleanup(node.agent.clone(), vec![a.id, b.id]);
    let m = &mut node.master;
    for s in [&a, &b] {
        let r = m
            .call(&Command::CreateEnv(Box::new(s.clone())))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "create_env: {}", r.text());
        let r = m.call(&Command::StartEnv(s.id)).await.unwrap();
        assert_eq!(r.code, 0, "start_env: {}", r.text());
    }
    let ssh = |ip: &str, cmd: &str| {
        wait_for_port(&format!("{ip}:22"), 60);
        let mut args: Vec<&str> = SSH_OPTS.to_vec();
        let k = key.to_str().unwrap().to_string();
        let to = format!("alice@{ip}");
        args.extend(["-i", &k, &to, cmd]);
        sh("ssh", &args)
    };
    // The student's work: 64 MB that do not compress, a note, a link to a host-looking file.
    let said = ssh(
        "10.97.0.11",
        "head -c 67108864 /dev/urandom > ~/data.bin && echo chapter 1 > ~/notes.txt && \
         ln -s /etc/shadow ~/shadow && sha256sum ~/data.bin | cut -d' ' -f1",
    );
    let want = said.trim().to_string();
    assert_eq!(want.len(), 64, "{said}");

    // Running: packed from the host, owners as the slice sees them (alice is 1000 there).
    let t = std::time::Instant::now();
    let gz = export(m, a.id).await;
    println!(
        "export of a 64 MB home from a running slice and read over the link: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let list = entries(&gz);
    let find = |n: &str| {
        list.iter()
            .find(|e| e.0.trim_start_matches("./") == n)
            .unwrap_or_else(|| panic!("{n} in {list:?}"))
            .clone()
    };
    assert_eq!(find("alice/data.bin").1, 1000);
    assert_eq!(find("alice/data.bin").3, 64 << 20);
    assert_eq!(find("alice/shadow").2, tar::EntryType::Symlink);
    // Stopped: the same files.
    assert_eq!(m.call(&Command::StopEnv(a.id)).await.unwrap().code, 0);
    let gz = export(m, a.id).await;
    assert_eq!(entries(&gz).len(), list.len());

    // Into the other slice, unpacked by its own root: every file as it was.
    let sha = Sha256Hex::parse(&format!("{:x}", Sha256::digest(&gz))).unwrap();
    let mut offset = 0usize;
    while offset < gz.len() {
        let end = (offset + 512 * 1024).min(gz.len());
        let r = m
            .call(&Command::ImportHome {
                id: b.id,
                sha256: sha.clone(),
                size: gz.len() as u64,
                offset: offset as u64,
                data: gz[offset..end].to_vec(),
            })
            .await
            .unwrap();
        assert_eq!(r.code, 0, "import_home: {}", r.text());
        offset = end;
    }
    let there = ssh(
        "10.97.0.12",
        "sha256sum ~/data.bin | cut -d' ' -f1; stat -c %U ~/data.bin; cat ~/notes.txt; readlink ~/shadow",
    );
    assert_eq!(
        there.lines().collect::<Vec<_>>(),
        vec![want.as_str(), "alice", "chapter 1", "/etc/shadow"],
        "{there}"
    );

    // The student (root in the slice) points /home at a host folder: nothing is packed.
    assert_eq!(m.call(&Command::StartEnv(a.id)).await.unwrap().code, 0);
    ssh(
        "10.97.0.11",
        "sudo mv /home /home.real && sudo ln -s /etc /home; echo done",
    );
    let r = m.call(&Command::ExportHome(a.id)).await.unwrap();
    assert_eq!(r.code, code::FAILED, "{}", r.text());
    assert!(r.text().contains("not a folder"), "{}", r.text());
}
