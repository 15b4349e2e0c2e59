//! The embedded default: the `local` target, through the real job loop and simulated agents.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use slices::accounts::{self, Actor};
use slices::domain::{Role, SshPublicKey};
use slices::gateway::{Change, Gateway, Scope};
use slices::jobs::JobKind;
use slices::slices::State;

use crate::fleet::fleet;
use crate::system::wait_until;

pub const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKzC7OGd0Cq6HbB1cBdC4ktTXv4F0iYc1Hj2lqR8Dw8m alice@laptop";

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The keys the agent holds for a container (its accepted spec).
fn agent_keys(state: &Path, veid: i64) -> Vec<String> {
    let spec: serde_json::Value =
        serde_json::from_str(&read(&state.join(format!("envs/{veid}.json")))).unwrap();
    spec["keys"]
        .as_array()
        .map(|a| a.iter().map(|k| k.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_gateway_holds_each_login_and_follows_the_database() {
    let f = fleet(1, |_| "10.82.0.0/24".into(), 0).await;
    let staff = f.user("tess", Role::Staff);
    let alice = f.user("alice", Role::Student);
    let bob = f.user("bob", Role::Student);
    let key = SshPublicKey::parse(ALICE_KEY).unwrap();
    f.ctx
        .db
        .write(|tx| accounts::keys::add(tx, alice.id, &key, &Actor::default()))
        .unwrap();
    let a = f.request_and_approve(&alice, &staff);
    let b = f.request_and_approve(&bob, &staff);
    let jobs = f.run_jobs(|_| {});
    let sa = f.wait_for(a, State::Running, 30).await;
    let sb = f.wait_for(b, State::Running, 30).await;
    let (ip_a, ip_b) = (sa.ip.clone().unwrap(), sb.ip.clone().unwrap());

    let root = f.ctx.config.data.join("gateway");
    let users = root.join("home/users");
    let map_file = root.join("etc/apache2/openvz.map");
    // The login shell forwards to the slice's address with the hop key.
    let script = read(&users.join("alice.sh"));
    assert!(
        script.contains(&format!("-- alice@{ip_a} \"$2\"")),
        "{script}"
    );
    assert!(script.contains("-i /home/users/alice/.ssh/slice_ed25519"));
    assert_eq!(
        std::fs::metadata(users.join("alice.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    // The student's key is in authorized_keys; bob has none yet, so nobody logs in as bob.
    assert!(read(&users.join("alice/.ssh/authorized_keys")).contains(&key.to_string()));
    let bob_keys = read(&users.join("bob/.ssh/authorized_keys"));
    assert!(!bob_keys.contains("ssh-"), "{bob_keys}");
    // The hop key: private half 0600 on the gateway, public half in the slice (and only it).
    let private = users.join("alice/.ssh/slice_ed25519");
    assert!(read(&private).starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let hop_public = read(&users.join("alice/.ssh/slice_ed25519.pub"));
    let in_slice = agent_keys(&f.nodes[0].state, sa.veid.unwrap());
    assert_eq!(in_slice, vec![hop_public.trim().to_string()]);
    let bob_hop = read(&users.join("bob/.ssh/slice_ed25519.pub"));
    assert_ne!(hop_public, bob_hop, "each user has a hop key of their own");
    // The map: one line per slice, NAME IP.
    let map = read(&map_file);
    assert!(map.contains(&format!("\nalice {ip_a}\n")), "{map}");
    assert!(map.contains(&format!("\nbob {ip_b}\n")), "{map}");

    // Nothing differs now: a second apply changes nothing.
    let gw = Gateway::from_config(&f.ctx.config).unwrap();
    let plan = gw.plan(&f.ctx.db, &Scope::All).unwrap();
    assert!(plan.is_empty(), "{plan}");

    // Drift is put right: a deleted script, an edited map, a lost hop key.
    std::fs::remove_file(users.join("alice.sh")).unwrap();
    std::fs::write(&map_file, "alice 10.99.99.99\n").unwrap();
    std::fs::remove_file(users.join("alice/.ssh/slice_ed25519.pub")).unwrap();
    std::fs::create_dir_all(users.join("Not_A_User")).unwrap();
    let plan = gw.plan(&f.ctx.db, &Scope::All).unwrap();
    let text = plan.to_string();
    assert!(text.contains("~ alice: login shell"), "{text}");
    assert!(text.contains("+ alice: new hop key"), "{text}");
    assert!(text.contains("-alice 10.99.99.99"), "{text}");
    assert_eq!(plan.unmanaged, vec!["Not_A_User".to_string()]);
    let report = gw.apply(&f.ctx.db, &Scope::All).unwrap();
    assert_eq!(report.new_hop_keys, vec!["alice".to_string()]);
    assert!(gw.plan(&f.ctx.db, &Scope::All).unwrap().is_empty());
    assert!(
        users.join("Not_A_User").is_dir(),
        "what Slices did not make is left alone"
    );
    // The slice is sent the new hop key.
    let new_hop = read(&users.join("alice/.ssh/slice_ed25519.pub"));
    assert_ne!(new_hop, hop_public);
    f.wait_count(
        &format!("SELECT count(*) FROM jobs WHERE kind = 'keys' AND slice_id = {a} AND state = 'succeeded'"),
        1,
        20,
    )
    .await;
    assert_eq!(
        agent_keys(&f.nodes[0].state, sa.veid.unwrap()),
        vec![new_hop.trim().to_string()]
    );
    // A lost private half is found too (its public half still there), and a new pair made;
    // so is a private half that is not the public half's pair.
    for lose in [
        |p: &std::path::Path| std::fs::remove_file(p).unwrap(),
        |p: &std::path::Path| {
            let other = std::fs::read_to_string(
                p.parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .join("bob/.ssh/slice_ed25519"),
            )
            .unwrap();
            std::fs::write(p, other).unwrap()
        },
    ] {
        let before = read(&users.join("alice/.ssh/slice_ed25519.pub"));
        lose(&users.join("alice/.ssh/slice_ed25519"));
        let text = gw.plan(&f.ctx.db, &Scope::All).unwrap().to_string();
        assert!(text.contains("+ alice: new hop key"), "{text}");
        let report = gw.apply(&f.ctx.db, &Scope::All).unwrap();
        assert_eq!(report.new_hop_keys, vec!["alice".to_string()]);
        assert!(gw.plan(&f.ctx.db, &Scope::All).unwrap().is_empty());
        assert_ne!(read(&users.join("alice/.ssh/slice_ed25519.pub")), before);
    }

    // Removing a key is reflected by the user's next gateway run.
    let key_id = f
        .ctx
        .db
        .read(|c| accounts::keys::list(c, alice.id))
        .unwrap()[0]
        .id;
    f.ctx
        .db
        .write(|tx| accounts::keys::remove(tx, alice.id, key_id, &Actor::default()))
        .unwrap();
    runner_wake(&jobs);
    wait_until("the gateway follows the database", 20, || {
        !read(&users.join("alice/.ssh/authorized_keys")).contains("ssh-ed25519")
    })
    .await;

    // Disabling bob takes his gateway login and web address away at once; enabling him
    // brings them back.
    let tess = f
        .ctx
        .db
        .read(|c| accounts::users::by_username(c, "tess"))
        .unwrap()
        .unwrap();
    accounts::disable(&f.ctx.db, &tess, "bob", "left the course", "127.0.0.1").unwrap();
    runner_wake(&jobs);
    wait_until("the gateway follows the database", 20, || {
        !users.join("bob.sh").exists() && !read(&map_file).contains("bob ")
    })
    .await;
    accounts::enable(&f.ctx.db, &tess, "bob", "127.0.0.1").unwrap();
    runner_wake(&jobs);
    wait_until("the gateway follows the database", 20, || {
        users.join("bob.sh").exists() && read(&map_file).contains(&format!("bob {ip_b}"))
    })
    .await;

    // Destroying bob's slice removes his login, keys and map line.
    f.ctx
        .db
        .write(|tx| slices::slices::act(tx, &bob, b, JobKind::Destroy, ""))
        .unwrap();
    runner_wake(&jobs);
    f.wait_for(b, State::Destroyed, 30).await;
    wait_until("the gateway follows the database", 20, || {
        !users.join("bob").exists() && !users.join("bob.sh").exists()
    })
    .await;
    wait_until("the gateway follows the database", 20, || {
        !read(&map_file).contains("bob ")
    })
    .await;
    assert!(read(&map_file).contains(&format!("alice {ip_a}")));
    assert!(gw.plan(&f.ctx.db, &Scope::All).unwrap().is_empty());
    // Each run is on record for staff.
    let runs = f.ctx.db.read(|c| slices::gateway::runs(c, 100)).unwrap();
    assert!(runs.iter().all(|r| r.ok), "{runs:?}");
    assert!(runs
        .iter()
        .any(|r| r.scope == "bob" && r.summary.contains("- bob")));
    // A user-scoped plan names only that user.
    let alice_name = slices::domain::Username::parse("alice").unwrap();
    let p = gw
        .plan(&f.ctx.db, &Scope::User(alice_name.clone()))
        .unwrap();
    assert!(p
        .changes
        .iter()
        .all(|c| !matches!(c, Change::RemoveUser { .. })));
    jobs.stop().await;

    // A run for one user reads and writes only the map lines its slices' names could hold
    // (its cost does not grow with the number of slices); a line nobody should have is put
    // right by the next run for all.
    let map = read(&map_file) + "zed 10.99.0.1\n";
    std::fs::write(&map_file, &map).unwrap();
    let p = gw
        .plan(&f.ctx.db, &Scope::User(alice_name.clone()))
        .unwrap();
    assert!(p.is_empty(), "{p}");
    std::fs::write(
        &map_file,
        map.replace(&format!("alice {ip_a}"), "alice 10.99.0.2"),
    )
    .unwrap();
    let p = gw
        .plan(&f.ctx.db, &Scope::User(alice_name.clone()))
        .unwrap();
    assert!(
        p.to_string()
            .contains(&format!("+alice {ip_a} -alice 10.99.0.2")),
        "{p}"
    );
    gw.apply(&f.ctx.db, &Scope::User(alice_name)).unwrap();
    let now = read(&map_file);
    assert!(now.contains(&format!("\nalice {ip_a}\n")), "{now}");
    assert!(now.contains("\nzed 10.99.0.1\n"), "{now}");
    let p = gw.plan(&f.ctx.db, &Scope::All).unwrap();
    assert!(p.to_string().contains("~ map: -zed 10.99.0.1"), "{p}");
    gw.apply(&f.ctx.db, &Scope::All).unwrap();
    assert!(!read(&map_file).contains("zed"));
    assert!(gw.plan(&f.ctx.db, &Scope::All).unwrap().is_empty());
}

fn runner_wake(jobs: &crate::fleet::Running) {
    jobs.runner.wake();
}
