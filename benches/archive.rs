//! Archives of /home over the slave link, against `scp` between the same hosts: a 1 GB home
//! that does not compress, on a simulated node in this process (release build, real mutual
//! TLS): how long `export_home` takes to pack it, how fast the master reads it off the node
//! (`Links::read_archive`: pieces of 512 KiB, hashed as they come, as a download does), how
//! fast `import_home` takes it back, and how fast `scp` copies the same archive file from a
//! real sshd on loopback. Needs root and sshd (the system-test setup):
//! `cargo bench --bench archive`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use slices::agent::{sim::Sim, Agent, AgentConfig, DriverKind};
use slices::context::Context;
use slices::domain::{NodeAddress, NodeName, Subnet, VeId};
use slices::slave_link::pki::{self, Ca};
use slices::slave_link::{server, Command, ServerOptions};
use slices::templates::Sha256Hex;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let shm = tempfile::tempdir_in("/dev/shm").unwrap();
    let dir = shm.path();
    let config = common::fleet::config(dir);
    let ctx = Context::open(config).unwrap();
    let ca = Ca::open_or_create(&ctx.config.data.join("ca")).unwrap();
    let name = NodeName::parse("node0").unwrap();
    let id = ca.issue_node(&name).unwrap();
    let root = dir.join("node0");
    let cfg = AgentConfig {
        name: name.clone(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ca: root.join("ca.pem"),
        cert: root.join("agent.pem"),
        key: root.join("agent.key"),
        driver: DriverKind::Sim,
        templates: root.join("templates"),
        state: root.join("state"),
        bridge: "unused".into(),
        subnet: Subnet::parse("10.89.0.0/24").unwrap(),
        sim_op_ms: 0,
        command_timeout_secs: 600,
        network: slices::agent::netpolicy::NetworkPolicy::off(),
        slice_ids: Default::default(),
    };
    std::fs::create_dir_all(&cfg.templates).unwrap();
    std::fs::write(cfg.templates.join("t1.tar.gz"), b"template").unwrap();
    let state = cfg.state.clone();
    let driver = Box::new(Sim::new(&cfg.state, Duration::ZERO).unwrap());
    let agent = Arc::new(Agent::new(cfg, driver).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let tls = pki::server_config(ca.cert_pem(), &id).unwrap();
    let opts = ServerOptions {
        command_timeout: Duration::from_secs(600),
        ..ServerOptions::default()
    };
    tokio::spawn(server::serve(listener, tls, agent, opts));
    ctx.db
        .write(|tx| slices::nodes::add(tx, &name, &NodeAddress::parse(&address).unwrap()))
        .unwrap();
    let node = ctx
        .db
        .read(|c| slices::nodes::by_name(c, "node0"))
        .unwrap()
        .unwrap();
    let links = slices::jobs::links::Links::new(
        ctx.db.clone(),
        ca.client_config().unwrap(),
        Duration::from_secs(600),
    );
    let mut m = links.connect(&node).await.unwrap();
    let veid = VeId::new(4242).unwrap();
    let spec = slices::slave_link::EnvSpec {
        id: veid,
        template: "t1".parse().unwrap(),
        username: "alice".parse().unwrap(),
        ip: slices::domain::PrivateIp::parse("10.89.0.11").unwrap(),
        hostname: slices::domain::DnsName::parse("alice").unwrap(),
        nameservers: vec![],
        search_domain: None,
        limits: Default::default(),
        keys: vec![],
        root: true,
    };
    assert_eq!(
        m.call(&Command::CreateEnv(Box::new(spec)))
            .await
            .unwrap()
            .code,
        0
    );
    assert_eq!(m.call(&Command::StartEnv(veid)).await.unwrap().code, 0);

    // 1 GB that deflate cannot shrink: a random MiB, numbered, 1024 times.
    let home = state.join(format!("sim/{veid}.home/alice"));
    std::fs::create_dir_all(&home).unwrap();
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    {
        use std::io::Write;
        let mut out = std::fs::File::create(home.join("big.bin")).unwrap();
        for i in 0..1024u32 {
            block[..4].copy_from_slice(&i.to_le_bytes());
            out.write_all(&block).unwrap();
        }
    }

    let t = Instant::now();
    let r = m.call(&Command::ExportHome(veid)).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let pack = t.elapsed().as_secs_f64();
    let size = r.returned[1]["size"].as_u64().unwrap();
    let sha = Sha256Hex::parse(r.returned[1]["sha256"].as_str().unwrap()).unwrap();
    let mb = size as f64 / 1e6;

    // Read off the node as a download does, into a sink.
    let mut reads = Vec::new();
    for _ in 0..3 {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
        let sink = tokio::spawn(async move {
            let mut n = 0u64;
            while let Some(b) = rx.recv().await {
                n += b.len() as u64;
            }
            n
        });
        let t = Instant::now();
        links
            .read_archive(&node, (veid, &sha, size), 0, tx)
            .await
            .unwrap();
        assert_eq!(sink.await.unwrap(), size);
        reads.push(mb / t.elapsed().as_secs_f64());
    }
    let read = common_median(reads);

    // Back in, in pieces, checked and unpacked (the simulator unpacks with the tar crate).
    let archive = std::fs::read(state.join(format!("exports/{veid}-{sha}.tar.gz"))).unwrap();
    // The transfer alone: sent under a wrong hash, the node takes every piece, checks the
    // whole and unpacks nothing.
    let wrong = Sha256Hex::parse(&"0".repeat(64)).unwrap();
    let t = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let pieces = archive.clone();
    let feed = tokio::spawn(async move {
        for piece in pieces.chunks(512 * 1024) {
            if tx.send(bytes::Bytes::copy_from_slice(piece)).await.is_err() {
                break;
            }
        }
    });
    let refused = links.write_archive(&node, (veid, &wrong, size), rx).await;
    assert!(refused.is_err(), "a wrong hash is refused");
    feed.await.unwrap();
    let transfer = mb / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let feed = tokio::spawn(async move {
        for piece in archive.chunks(512 * 1024) {
            if tx.send(bytes::Bytes::copy_from_slice(piece)).await.is_err() {
                break;
            }
        }
    });
    links
        .write_archive(&node, (veid, &sha, size), rx)
        .await
        .unwrap();
    feed.await.unwrap();
    let import = mb / t.elapsed().as_secs_f64();

    // scp of the same file from a real sshd on loopback, to the same kind of place.
    let src = state.join(format!("exports/{veid}-{sha}.tar.gz"));
    let lab = common::gateway_lab::Lab::start();
    let key = dir.join("bench-key");
    common::system::sh(
        "ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()],
    );
    let public = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    lab.authorize("root", public.trim());
    let mut scps = Vec::new();
    for _ in 0..3 {
        let to = dir.join("copy.tar.gz");
        let t = Instant::now();
        let out = std::process::Command::new("scp")
            .args([
                "-q",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-P",
                &lab.ssh_port.to_string(),
                "-i",
                key.to_str().unwrap(),
            ])
            .arg(format!("root@127.0.0.1:{}", src.display()))
            .arg(&to)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        scps.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(std::fs::metadata(&to).unwrap().len(), size);
        std::fs::remove_file(&to).unwrap();
    }
    let scp = common_median(scps);
    let lxc = if std::path::Path::new("/usr/bin/lxc-start").exists()
        && std::env::var("BENCH_ARCHIVE_LXC").as_deref() != Ok("0")
    {
        Some(lxc_part(&ctx, &ca, &links).await)
    } else {
        None
    };
    println!(
        "archive of a 1 GB home that does not compress ({:.0} MB packed), medians of 3:",
        mb
    );
    println!(
        "  export_home (pack + SHA-256 on the node): {pack:.1} s ({:.0} MB/s)",
        mb / pack
    );
    println!("  read off the node by the master:          {read:.0} MB/s");
    println!("  import_home sent and checked (no unpack): {transfer:.0} MB/s");
    println!("  import_home (send, check, unpack):        {import:.0} MB/s");
    println!("  scp of the same file over loopback:       {scp:.0} MB/s");
    println!(
        "  reading / scp:                            {:.0} %",
        read / scp * 100.0
    );
    println!(
        "  sending / scp:                            {:.0} %",
        transfer / scp * 100.0
    );
    if let Some(Lxc {
        pack,
        read,
        both: import,
        snap,
        restore,
        held,
    }) = lxc
    {
        println!("on real LXC slices (the host's tar, compressed by the agent):");
        println!(
            "  export_home (pack + SHA-256 on the node): {pack:.1} s ({:.0} MB/s of home)",
            1073.7 / pack
        );
        println!("  read off the node by the master:          {read:.0} MB/s");
        println!(
            "  read and imported into another slice:     {import:.0} MB/s (a move's transfer)"
        );
        println!(
            "  snapshot of the running slice:            {snap:.1} s ({:.0} MB held on the host)",
            held as f64 / 1e6
        );
        println!("  restore (stop, copy back, start):         {restore:.1} s");
    }
}

/// The same on real LXC slices: 1 GB written into one slice's home, packed by the host's tar
/// (compressed by the agent), read off the node, and imported into a second slice (unpacked by
/// its own tar); then a snapshot of that slice and its restore.
async fn lxc_part(ctx: &Context, ca: &Ca, links: &slices::jobs::links::Links) -> Lxc {
    use slices::domain::{DnsName, Limits, PrivateIp};
    let mut lab =
        common::lxc_node::start_with_ca("lxcarch", "slbr-barch", "10.96.0.0/24", Some(ca)).await;
    ctx.db
        .write(|tx| {
            slices::nodes::add(
                tx,
                &NodeName::parse("lxcarch").unwrap(),
                &NodeAddress::parse(&lab.address).unwrap(),
            )
        })
        .unwrap();
    let node = ctx
        .db
        .read(|c| slices::nodes::by_name(c, "lxcarch"))
        .unwrap()
        .unwrap();
    let spec = |id: u64, ip: &str| slices::slave_link::EnvSpec {
        id: VeId::new(id).unwrap(),
        template: "debian-12-ssh_amd64".parse().unwrap(),
        username: "alice".parse().unwrap(),
        ip: PrivateIp::parse(ip).unwrap(),
        hostname: DnsName::parse("alice").unwrap(),
        nameservers: vec![],
        search_domain: None,
        limits: Limits {
            disk_mb: 3072,
            ..Limits::default()
        },
        keys: vec![],
        root: true,
    };
    let (a, b) = (spec(4601, "10.96.0.11"), spec(4602, "10.96.0.12"));
    for s in [&a, &b] {
        let r = lab
            .master
            .call(&Command::CreateEnv(Box::new(s.clone())))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.text());
        let r = lab.master.call(&Command::StartEnv(s.id)).await.unwrap();
        assert_eq!(r.code, 0, "{}", r.text());
    }
    // 1 GB that does not compress, in the slice's home (written from the host: the slice
    // sees the file as root's).
    let home = lab.work.path().join("state/lxc/ve4601/rootfs/home");
    common::system::sh(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}/big.bin", home.display()),
            "bs=1M",
            "count=1024",
            "status=none",
        ],
    );
    let t = Instant::now();
    let r = lab.master.call(&Command::ExportHome(a.id)).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let pack = t.elapsed().as_secs_f64();
    let size = r.returned[1]["size"].as_u64().unwrap();
    let sha = Sha256Hex::parse(r.returned[1]["sha256"].as_str().unwrap()).unwrap();
    // Read off the node and, as a move does, straight into the other slice.
    let t = Instant::now();
    links
        .copy_archive((&node, a.id), (&node, b.id), (&sha, size))
        .await
        .unwrap();
    let both = size as f64 / 1e6 / t.elapsed().as_secs_f64();
    // The read alone.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let sink = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let t = Instant::now();
    links
        .read_archive(&node, (a.id, &sha, size), 0, tx)
        .await
        .unwrap();
    sink.await.unwrap();
    let read = size as f64 / 1e6 / t.elapsed().as_secs_f64();
    let there = lab.work.path().join("state/lxc/ve4602/rootfs/home/big.bin");
    assert_eq!(std::fs::metadata(&there).unwrap().len(), 1 << 30);
    // A snapshot of the running slice with its 1 GB, and a restore (stop, copy, start).
    let name = slices::domain::SnapshotName::parse("bench").unwrap();
    let t = Instant::now();
    let r = lab
        .master
        .call(&Command::Snapshot(a.id, name.clone()))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let snap = t.elapsed().as_secs_f64();
    let held = r.returned[1]["size"].as_u64().unwrap();
    let t = Instant::now();
    let r = lab
        .master
        .call(&Command::RestoreSnapshot(a.id, name))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.text());
    let restore = t.elapsed().as_secs_f64();
    Lxc {
        pack,
        read,
        both,
        snap,
        restore,
        held,
    }
}

/// What the LXC part measured.
struct Lxc {
    pack: f64,
    read: f64,
    both: f64,
    snap: f64,
    restore: f64,
    held: u64,
}

fn common_median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
