use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use slices::accounts::{self, Event, Grant, SignUpForm, User};
use slices::agent::{sim::Sim, Agent, AgentConfig, DriverKind};
use slices::config::Config;
use slices::context::Context;
use slices::domain::{NodeAddress, NodeName, Role, Subnet, TemplateName};
use slices::jobs::{JobRunner, RunnerConfig};
use slices::slave_link::pki::{self, Ca};
use slices::slave_link::{server, ServerOptions};
use slices::slices::{Slice, State};
use tokio::sync::watch;

pub const TEMPLATE: &str = "debian-12-ssh_amd64";

/// The real master process (`slices serve --driver off`) on a fleet's data; killed on drop.
pub struct Master(pub std::process::Child);

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Node {
    pub name: String,
    pub address: String,
    pub state: std::path::PathBuf,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    counted: Arc<Counted>,
}

/// The agent, counting the commands about a container it is working on at once.
struct Counted {
    agent: Arc<Agent>,
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl server::Handler for Counted {
    fn handle(&self, command: slices::slave_link::Command) -> slices::slave_link::Reply {
        use slices::slave_link::Command as C;
        let counts = matches!(
            command,
            C::CreateEnv(_) | C::StartEnv(_) | C::StopEnv(_) | C::RestartEnv(_) | C::DestroyEnv(_)
        );
        if counts {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
        }
        let reply = self.agent.handle(command);
        if counts {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }
        reply
    }
}

impl Node {
    /// The most container commands the agent was working on at once.
    pub fn busiest(&self) -> usize {
        self.counted.peak.load(Ordering::SeqCst)
    }

    /// Containers the simulator holds.
    pub fn containers(&self) -> usize {
        std::fs::read_dir(self.state.join("sim"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Stops the agent and closes its connections (the node goes down).
    pub fn kill(&self) {
        self.task.abort();
    }
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub ctx: Arc<Context>,
    pub nodes: Vec<Node>,
    pub ca: Ca,
}

pub fn config(dir: &std::path::Path) -> Config {
    config_with(dir, &[])
}

/// The test configuration with some settings added or changed.
pub fn config_with(dir: &std::path::Path, extra: &[(&str, String)]) -> Config {
    let mut flags = vec![
        ("data", dir.join("data").display().to_string()),
        ("listen", "127.0.0.1:0".to_string()),
        ("job_retry_base_secs", "1".to_string()),
        ("node_health_secs", "1".to_string()),
        ("job_lease_secs", "10".to_string()),
        ("template_sync_minutes", "0".to_string()),
    ];
    flags.extend(extra.iter().cloned());
    Config::load(None, Vec::<(String, String)>::new(), &flags).unwrap()
}

/// Starts one simulated agent with its own certificate from the fleet's CA.
pub async fn start_agent(
    dir: &std::path::Path,
    ca: &Ca,
    name: &str,
    subnet: &str,
    op_ms: u64,
) -> Node {
    let root = dir.join(name);
    let id = ca.issue_node(&NodeName::parse(name).unwrap()).unwrap();
    pki::write_bundle(&root, ca.cert_pem(), &id).unwrap();
    start_agent_on(dir, ca, name, subnet, op_ms, "127.0.0.1:0").await
}

/// Starts it again listening on `listen`, with the certificate and state it had: a node that
/// comes back on its address.
pub async fn start_agent_on(
    dir: &std::path::Path,
    ca: &Ca,
    name: &str,
    subnet: &str,
    op_ms: u64,
    listen: &str,
) -> Node {
    let node = NodeName::parse(name).unwrap();
    let root = dir.join(name);
    let id = pki::load_identity(&root.join("agent.pem"), &root.join("agent.key")).unwrap();
    let cfg = AgentConfig {
        name: node,
        listen: "127.0.0.1:0".parse().unwrap(),
        ca: root.join("ca.pem"),
        cert: root.join("agent.pem"),
        key: root.join("agent.key"),
        driver: DriverKind::Sim,
        templates: root.join("templates"),
        state: root.join("state"),
        bridge: "unused".into(),
        subnet: Subnet::parse(subnet).unwrap(),
        sim_op_ms: op_ms,
        command_timeout_secs: 30,
        network: slices::agent::netpolicy::NetworkPolicy::off(),
        slice_ids: Default::default(),
    };
    std::fs::create_dir_all(&cfg.templates).unwrap();
    std::fs::write(
        cfg.templates.join(format!("{TEMPLATE}.tar.gz")),
        b"template",
    )
    .unwrap();
    let state = cfg.state.clone();
    let driver = Box::new(Sim::new(&cfg.state, Duration::from_millis(op_ms)).unwrap());
    let agent = Arc::new(Agent::new(cfg, driver).unwrap());
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let tls = pki::server_config(ca.cert_pem(), &id).unwrap();
    let counted = Arc::new(Counted {
        agent,
        now: AtomicUsize::new(0),
        peak: AtomicUsize::new(0),
    });
    let task = tokio::spawn(server::serve(
        listener,
        tls,
        counted.clone(),
        ServerOptions::default(),
    ));
    Node {
        name: name.into(),
        address,
        state,
        task,
        counted,
    }
}

/// A master database with `n` registered nodes, each with a running simulated agent.
pub async fn fleet(n: usize, subnet: impl Fn(usize) -> String, op_ms: u64) -> Fleet {
    fleet_with(n, subnet, op_ms, &[]).await
}

/// A fleet whose master has some settings added or changed.
pub async fn fleet_with(
    n: usize,
    subnet: impl Fn(usize) -> String,
    op_ms: u64,
    extra: &[(&str, String)],
) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let ctx = Context::open(config_with(dir.path(), extra)).unwrap();
    let ca = Ca::open_or_create(&ctx.config.data.join("ca")).unwrap();
    let mut nodes = Vec::new();
    for i in 0..n {
        let node = start_agent(dir.path(), &ca, &format!("node{i}"), &subnet(i), op_ms).await;
        ctx.db
            .write(|tx| {
                slices::nodes::add(
                    tx,
                    &NodeName::parse(&node.name).unwrap(),
                    &NodeAddress::parse(&node.address).unwrap(),
                )
            })
            .unwrap();
        nodes.push(node);
    }
    ctx.db
        .write(|tx| {
            slices::slices::add_template(
                tx,
                &TemplateName::parse(TEMPLATE).unwrap(),
                "Debian 12 with sshd",
            )
        })
        .unwrap();
    Fleet {
        dir,
        ctx,
        nodes,
        ca,
    }
}

/// The job loop running in this test. When it ends (dropped or stopped) it fails the test if
/// jobs were left failed, or left queued or running for a slice or a user, unless the test
/// said it expects that (`expect_leftovers`): no test forgets a job.
pub struct Running {
    pub runner: Arc<JobRunner>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    expected: std::sync::atomic::AtomicBool,
}

impl Running {
    /// Lets the jobs under way finish (unless the test expects leftovers), stops the loop and
    /// waits for it to end; then the leftover check runs (on drop). Stopping mid-job would
    /// leave that job 'running' (as a crash does, which the next start takes again).
    pub async fn stop(mut self) {
        if !self.expected.load(std::sync::atomic::Ordering::SeqCst) {
            self.drain(120).await;
        }
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// This test means to leave jobs failed or waiting (a node kept down, a retry limit).
    pub fn expect_leftovers(&self) {
        self.expected
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Jobs that are not done: failed ones, and queued or running ones for a slice or a
    /// user (the periodic node and whole-gateway runs come back by design).
    pub fn leftovers(&self) -> Vec<String> {
        let db = &self.runner.env.ctx.db;
        let jobs = db
            .read(|c| slices::records::jobs::list(c, None, 10_000))
            .unwrap();
        jobs.into_iter()
            .filter(|j| {
                j.state == "failed"
                    || (matches!(j.state.as_str(), "queued" | "running")
                        && (j.slice_id.is_some() || j.user_id.is_some()))
            })
            .map(|j| format!("job {} {} {} ({})", j.id, j.kind, j.state, j.last_error))
            .collect()
    }

    /// Waits until no job for a slice or a user is due or running (the queue is drained):
    /// what is left waits for later (a retry's back-off) or is done.
    pub async fn drain(&self, secs: u64) {
        let db = self.runner.env.ctx.db.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let busy: i64 = db
                .read(|c| {
                    Ok::<_, slices::error::Error>(c.query_row(
                        "SELECT count(*) FROM jobs WHERE (slice_id IS NOT NULL OR user_id IS NOT NULL)
                           AND (state = 'running' OR (state = 'queued' AND run_after <= strftime('%s','now')))",
                        [],
                        |r| r.get(0),
                    )?)
                })
                .unwrap();
            if busy == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the queue did not drain in {secs} s: {:?}",
                self.leftovers()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if std::thread::panicking() || self.expected.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let left = self.leftovers();
        assert!(
            left.is_empty(),
            "the test left jobs not done (call expect_leftovers if it means to): {left:?}"
        );
    }
}

impl Fleet {
    /// Waits until every node has answered a health check (the master knows its state).
    pub async fn wait_for_health_checks(&self, secs: u64) {
        let start = std::time::Instant::now();
        while self.count("SELECT count(*) FROM nodes WHERE info IS NULL") > 0 {
            assert!(start.elapsed().as_secs() < secs, "no health check");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the real master on this fleet's data: jobs retried after 1 s, health checked
    /// every second, no template sync, no built-in SSH gateway; `env` adds or changes settings.
    pub fn start_master(&self, env: &[(&str, String)]) -> Master {
        self.start_master_on("127.0.0.1:0", env)
    }

    /// The real master listening on `listen` (for a test that talks to its pages).
    pub fn start_master_on(&self, listen: &str, env: &[(&str, String)]) -> Master {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_slices"));
        cmd.args(["serve", "--driver", "off", "--listen", listen, "--data"])
            .arg(&self.ctx.config.data)
            .env("SLICES_JOB_RETRY_BASE_SECS", "1")
            .env("SLICES_NODE_HEALTH_SECS", "1")
            .env("SLICES_TEMPLATE_SYNC_MINUTES", "0")
            .env("SLICES_SSH_LISTEN", "")
            .env_remove("SLICES_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Master(cmd.spawn().unwrap())
    }

    /// Starts the master's job loop in this process.
    pub fn run_jobs(&self, adjust: impl FnOnce(&mut RunnerConfig)) -> Running {
        let mut cfg = RunnerConfig::from_config(&self.ctx.config).unwrap();
        cfg.tick = Duration::from_millis(50);
        adjust(&mut cfg);
        let runner = JobRunner::new(self.ctx.clone(), cfg).unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(runner.clone().run(rx));
        Running {
            runner,
            stop,
            task: Some(task),
            expected: Default::default(),
        }
    }

    pub fn user(&self, name: &str, role: Role) -> User {
        let pw = "correct horse battery".to_string();
        let form = SignUpForm {
            username: name.into(),
            email: format!("{name}@example.edu"),
            display_name: name.into(),
            password: pw.clone(),
            password_confirm: pw,
        };
        accounts::create_account(
            &self.ctx.db,
            &self.ctx.policy,
            form.check().unwrap(),
            Grant {
                role,
                event: Event::AccountCreated,
                creator: None,
                origin: None,
                invite: None,
            },
        )
        .unwrap()
        .0
    }

    /// Registers a node (an agent of the test's) by name and address.
    #[allow(dead_code)]
    pub fn add_node(&self, name: &str, address: &str) {
        self.ctx
            .db
            .write(|tx| {
                slices::nodes::add(
                    tx,
                    &NodeName::parse(name).unwrap(),
                    &NodeAddress::parse(address).unwrap(),
                )
            })
            .unwrap();
    }

    /// A student asks for a slice and staff approve it; returns the slice id.
    pub fn request_and_approve(&self, student: &User, staff: &User) -> i64 {
        self.ctx
            .db
            .write(|tx| {
                let s = slices::slices::request(
                    tx,
                    student,
                    &slices::slices::Request {
                        template: TemplateName::parse(TEMPLATE).unwrap(),
                        plan_id: None,
                        course: "CS 3650".into(),
                        purpose: "systems homework".into(),
                        name: String::new(),
                    },
                )?;
                slices::slices::approve(tx, staff, s.id, None, "127.0.0.1")
            })
            .unwrap()
            .id
    }

    pub fn slice(&self, id: i64) -> Slice {
        self.ctx
            .db
            .read(|c| slices::slices::get(c, id))
            .unwrap()
            .unwrap()
    }

    /// Waits until the slice is in `state` (panics with its story after `secs`).
    pub async fn wait_for(&self, id: i64, state: State, secs: u64) -> Slice {
        let start = std::time::Instant::now();
        loop {
            let s = self.slice(id);
            if s.state == state {
                return s;
            }
            if start.elapsed().as_secs() >= secs {
                let events = self
                    .ctx
                    .db
                    .read(|c| slices::slices::events(c, id, 50))
                    .unwrap();
                let jobs = self
                    .ctx
                    .db
                    .read(|c| slices::jobs::queue::list(c, None, 50))
                    .unwrap();
                for j in jobs.iter().filter(|j| j.slice_id == Some(id)) {
                    eprintln!(
                        "job {} {} {}: attempt {}, {}",
                        j.id, j.kind, j.state, j.attempts, j.last_error
                    );
                }
                panic!(
                    "slice {id} is {:?} (step `{}`), not {state:?}: {events:#?}",
                    s.state, s.step
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until a count query gives `want` (the job's own record follows its last step).
    pub async fn wait_count(&self, sql: &str, want: i64, secs: u64) {
        let start = std::time::Instant::now();
        while self.count(sql) != want {
            assert!(
                start.elapsed().as_secs() < secs,
                "`{sql}` is {}, not {want}",
                self.count(sql)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Messages that told someone a provision failed.
    pub fn failure_mails(&self) -> i64 {
        self.count("SELECT count(*) FROM outbox WHERE kind LIKE 'provisioning_failed%'")
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.ctx
            .db
            .read(|c| Ok::<_, slices::error::Error>(c.query_row(sql, [], |r| r.get(0))?))
            .unwrap()
    }
}
