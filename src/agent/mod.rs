//! The agent: the small daemon on each slave host. It answers the slave-link commands and
//! drives the host's containers through one [`Driver`]. It keeps each container's spec in its
//! state folder, so that every command is idempotent: the master can always retry.

pub mod beancounters;
mod config;
pub mod driver;
pub mod homes;
pub mod inside;
pub mod lxc;
pub mod netpolicy;
pub mod run;
pub mod sim;
mod snapshots;
mod specs;
pub mod vzctl;

pub use config::{AgentConfig, DriverKind, NodeIfaces};
use specs::Specs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::domain::{TemplateName, VeId};
use crate::slave_link::protocol::code;
use crate::slave_link::{Command, EnvSpec, Handler, Reply};
use crate::templates::{PutOutcome, TemplateDir, TemplateInfo};
pub use driver::{Change, CheckItem, Counter, Driver, DriverError, EnvState};

/// The agent: checks, locks per container, and hands the work to the driver.
pub struct Agent {
    pub config: AgentConfig,
    driver: Box<dyn Driver>,
    specs: Specs,
    locks: Mutex<HashMap<VeId, Arc<Mutex<()>>>>,
    templates: TemplateDir,
    archives: homes::Archives,
    /// Held while a container's address is checked (or, for a seed-form `create_env`,
    /// chosen) and its spec kept: two creates never take the same address.
    choosing: Mutex<()>,
}

impl Agent {
    pub fn new(config: AgentConfig, driver: Box<dyn Driver>) -> anyhow::Result<Agent> {
        let dir = config.state.join("envs");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let templates = TemplateDir::new(&config.templates)
            .with_context(|| format!("cannot create {}", config.templates.display()))?;
        Ok(Agent {
            archives: homes::Archives::new(&config.state)
                .with_context(|| format!("cannot create {}/exports", config.state.display()))?,
            config,
            driver,
            specs: Specs { dir },
            locks: Mutex::new(HashMap::new()),
            templates,
            choosing: Mutex::new(()),
        })
    }

    /// Builds the driver the configuration names.
    pub fn from_config(config: AgentConfig) -> anyhow::Result<Agent> {
        let timeout = Duration::from_secs(config.command_timeout_secs);
        let driver: Box<dyn Driver> = match config.driver {
            DriverKind::Sim => Box::new(sim::Sim::new(
                &config.state,
                Duration::from_millis(config.sim_op_ms),
            )?),
            DriverKind::Lxc => Box::new(lxc::Lxc::new(
                &config,
                Arc::new(run::SystemRunner { timeout }),
            )?),
            DriverKind::Vzctl => Box::new(vzctl::Vzctl::new(
                vzctl::VzPaths::default(),
                Arc::new(run::SystemRunner { timeout }),
            )),
        };
        Agent::new(config, driver)
    }

    /// Whether this agent keeps the host's network policy (not the simulator's business).
    fn keeps_network(&self) -> bool {
        self.config.network.enabled && !self.driver.simulated()
    }

    /// Puts the network policy in place (at start; idempotent). Nothing under the simulator
    /// or with `[network] enabled = false`.
    pub fn apply_network(&self) -> anyhow::Result<Option<driver::Change>> {
        if !self.keeps_network() {
            return Ok(None);
        }
        let run = run::SystemRunner {
            timeout: Duration::from_secs(30),
        };
        let change = netpolicy::apply(
            &run,
            &self.config.network,
            &self.config.bridge,
            &self.config.subnet,
            &self.config.state,
        )
        .map_err(|e| anyhow::anyhow!("network policy: {e}"))?;
        Ok(Some(change))
    }

    /// Puts the network policy back if it drifted (a firewall reload, a rule deleted by hand):
    /// what differed, a line each (empty: it was in place).
    pub fn reassert_network(&self) -> anyhow::Result<Vec<String>> {
        if !self.keeps_network() {
            return Ok(vec![]);
        }
        let run = run::SystemRunner {
            timeout: Duration::from_secs(30),
        };
        let (policy, bridge, subnet) = (
            &self.config.network,
            &self.config.bridge,
            &self.config.subnet,
        );
        let drift = netpolicy::drift(&run, policy, bridge, subnet)
            .map_err(|e| anyhow::anyhow!("network policy: {e}"))?;
        if !drift.is_empty() {
            netpolicy::apply(&run, policy, bridge, subnet, &self.config.state)
                .map_err(|e| anyhow::anyhow!("network policy: {e}"))?;
        }
        Ok(drift)
    }

    /// Starts every container the master last asked to run that does not (after a host
    /// reboot, or one stopped behind the agent's back); notes, for containers made before the
    /// agent kept it, what they are doing now as what is wanted. Says what it did, a line each.
    pub fn bring_back(&self) -> Vec<String> {
        let mut said = Vec::new();
        let specs = match self.specs.all() {
            Ok(s) => s,
            Err(e) => return vec![format!("cannot read the containers' specs: {e}")],
        };
        for spec in specs {
            let lock = self.lock(spec.id);
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            let result = (|| -> Result<Option<String>, DriverError> {
                let state = self.driver.state(spec.id)?;
                match self.specs.wanted_running(spec.id)? {
                    None => {
                        self.specs
                            .set_wanted_running(spec.id, state == EnvState::Running)?;
                        Ok(None)
                    }
                    Some(true) if state == EnvState::Stopped => {
                        self.driver.start(&spec)?;
                        Ok(Some(format!(
                            "started container {}: it should run and did not",
                            spec.id
                        )))
                    }
                    _ => Ok(None),
                }
            })();
            match result {
                Ok(Some(line)) => said.push(line),
                Ok(None) => {}
                Err(e) => said.push(format!(
                    "container {} should run, and could not be started: {e}",
                    spec.id
                )),
            }
        }
        said
    }

    /// Takes away what the agent put on its host (the network policy, forwarding as it was
    /// found); says what it did and what it left (containers are never removed here).
    pub fn uninstall(&self) -> anyhow::Result<Vec<String>> {
        let mut said = Vec::new();
        if self.keeps_network() {
            let run = run::SystemRunner {
                timeout: Duration::from_secs(30),
            };
            said = netpolicy::uninstall(&run, &self.config.bridge, &self.config.state)
                .map_err(|e| anyhow::anyhow!("network policy: {e}"))?;
        }
        let left = self.specs.all().map_err(|e| anyhow::anyhow!("{e}"))?;
        if left.is_empty() {
            said.push("no containers were left".into());
        } else {
            said.push(format!(
                "left {} container(s), untouched: {} (destroy them from the master first)",
                left.len(),
                left.iter()
                    .map(|s| s.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(said)
    }

    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }

    fn lock(&self, id: VeId) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .expect("lock map")
            .entry(id)
            .or_default()
            .clone()
    }

    pub fn template_path(&self, name: &TemplateName) -> PathBuf {
        self.templates.path(name)
    }

    /// The templates in the folder, with their hashes.
    pub fn templates(&self) -> std::io::Result<Vec<TemplateInfo>> {
        self.templates.list()
    }

    /// Which of the master's templates this node lacks or has another version of.
    /// Where the master's last template manifest is kept (for the seed's `sync_templates []`).
    fn manifest_path(&self) -> PathBuf {
        self.config.state.join("templates-manifest.json")
    }

    fn sync_templates(&self, manifest: &[TemplateInfo]) -> Result<Reply, DriverError> {
        // Kept for a later `sync_templates` in the seed's form, which names none.
        let kept = serde_json::to_vec(manifest).map_err(|e| DriverError::msg(e.to_string()))?;
        let path = self.manifest_path();
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, kept)?;
        std::fs::rename(&tmp, &path)?;
        let mut out = Vec::new();
        for want in manifest {
            let have = self.templates.info(&want.name)?;
            let current = have.as_ref().is_some_and(|h| h.sha256 == want.sha256);
            out.push(json!({
                "name": want.name,
                "state": if current { "current" } else { "needed" },
                "have": have.map(|h| h.sha256),
            }));
        }
        Ok(Reply::ok(out))
    }

    /// The seed's `sync_templates` with no arguments: "check template files for changes". The
    /// agent never calls the master (only the master opens links), so it checks against the
    /// manifest the master last sent it and says what it lacks or has another version of (the
    /// master then sends those); with no manifest yet it reports the templates it has.
    fn sync_templates_as_seed(&self) -> Result<Reply, DriverError> {
        match std::fs::read(self.manifest_path()) {
            Ok(bytes) => {
                let manifest: Vec<TemplateInfo> = serde_json::from_slice(&bytes)
                    .map_err(|e| DriverError::msg(format!("the kept manifest: {e}")))?;
                self.sync_templates(&manifest)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Reply::ok(
                self.templates
                    .list()?
                    .into_iter()
                    .map(|t| json!({"name": t.name, "state": "present", "have": t.sha256, "size": t.size}))
                    .collect(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The seed's `create_env [id, template, username]`: what the seed leaves out is chosen as
    /// its daemon would have (the next free address of this node's subnet, hostname =
    /// username, the default limits, no keys yet, root in the slice as on OpenVZ), then the
    /// container is made and started (the seed's table ends with `vzctl start id`). The answer
    /// says what was chosen. Asked again for the same id, user and template, it answers the
    /// same.
    fn create_as_seed(
        &self,
        id: VeId,
        template: TemplateName,
        username: crate::domain::Username,
    ) -> Result<Reply, DriverError> {
        let choosing = self.choosing.lock().unwrap_or_else(|p| p.into_inner());
        let spec = match self.specs.get(id)? {
            Some(old) if old.template == template && old.username == username => old,
            Some(_) => {
                return Ok(Reply::error(
                    code::CONFLICT,
                    format!("create_env: container {id} exists for another user or template"),
                ))
            }
            None => {
                let used: std::collections::HashSet<std::net::Ipv4Addr> =
                    self.specs.all()?.iter().map(|s| s.ip.addr()).collect();
                let Some(ip) = self.config.subnet.assignable().find(|a| !used.contains(a)) else {
                    return Ok(Reply::error(
                        code::CONFLICT,
                        format!("create_env: no free address left in {}", self.config.subnet),
                    ));
                };
                let (Ok(ip), Ok(hostname)) = (
                    crate::domain::PrivateIp::parse(&ip.to_string()),
                    crate::domain::DnsName::parse(username.as_str()),
                ) else {
                    return Ok(Reply::error(
                        code::BAD_ARGUMENTS,
                        format!("create_env: `{username}` cannot be a host name (give the 4-argument form)"),
                    ));
                };
                EnvSpec {
                    id,
                    template,
                    username,
                    ip,
                    hostname,
                    nameservers: vec![],
                    search_domain: None,
                    limits: crate::domain::Limits::default(),
                    keys: vec![],
                    root: true,
                }
            }
        };
        // The address is taken (the spec kept) before the lock goes; the container is made
        // after.
        let reserved = self.reserve(&spec)?;
        drop(choosing);
        match reserved {
            Ok(template_file) => {
                let made = self.make(&spec, &template_file)?;
                if made.code != code::OK {
                    return Ok(made);
                }
            }
            Err(reply) if reply.code == code::OK => {} // made before: the same answer again
            Err(reply) => return Ok(reply),
        }
        self.specs.set_wanted_running(id, true)?;
        self.driver.start(&spec)?;
        Ok(Reply::ok(vec![
            "created".into(),
            json!({
                "id": spec.id,
                "ip": spec.ip,
                "hostname": spec.hostname,
                "limits": spec.limits,
                "root": spec.root,
                "state": self.driver.state(id)?,
            }),
        ]))
    }

    fn put_template(&self, want: &TemplateInfo, offset: u64, data: &[u8]) -> Reply {
        match self.templates.put(want, offset, data) {
            Ok(PutOutcome::Partial(n)) => Reply::ok(vec!["partial".into(), n.into()]),
            Ok(PutOutcome::Installed) => Reply::ok(vec!["installed".into()]),
            Ok(PutOutcome::Resume(n)) => Reply {
                raw: None,
                code: code::CONFLICT,
                returned: vec![
                    format!("put_template: resume from offset {n}").into(),
                    n.into(),
                ],
            },
            Err(e) => Reply::error(code::FAILED, format!("put_template: {e}")),
        }
    }

    fn node_info(&self) -> Result<Value, DriverError> {
        let specs = self.specs.all()?;
        let (mem_total, mem_free) = meminfo();
        Ok(json!({
            "name": self.config.name,
            "driver": self.driver.kind(),
            "simulated": self.driver.simulated(),
            "driver_version": self.driver.version(),
            "agent_version": env!("CARGO_PKG_VERSION"),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "memory_mb": mem_total / 1024,
            "memory_free_mb": mem_free / 1024,
            "disk_free_mb": disk_free_mb(&self.config.state),
            "subnet": self.config.subnet,
            "slices": specs.len(),
            // Made privileged by an earlier version, converted at their next start.
            "privileged": specs
                .iter()
                .filter(|s| self.driver.privileged(s.id))
                .map(|s| s.id)
                .collect::<Vec<_>>(),
            "templates": self.templates()?,
        }))
    }

    /// Makes a container: its address checked against the others' and its spec kept as one
    /// step (under `choosing`, so two creates never take one address), then the container
    /// made (outside it: creates of different containers go on side by side).
    fn create(&self, spec: &EnvSpec) -> Result<Reply, DriverError> {
        let template = {
            let _choosing = self.choosing.lock().unwrap_or_else(|p| p.into_inner());
            match self.reserve(spec)? {
                Ok(t) => t,
                Err(reply) => return Ok(reply),
            }
        };
        self.make(spec, &template)
    }

    /// Checks a new container's spec against the node and keeps it: its template's file, or
    /// the answer to give instead (refused, or `exists`). The caller holds `choosing`.
    fn reserve(&self, spec: &EnvSpec) -> Result<Result<PathBuf, Reply>, DriverError> {
        if !self.config.subnet.is_assignable(spec.ip.addr()) {
            return Ok(Err(Reply::error(
                code::BAD_ARGUMENTS,
                format!(
                    "create_env: {} is not an assignable address of this node's subnet {}",
                    spec.ip, self.config.subnet
                ),
            )));
        }
        let template = self.template_path(&spec.template);
        if !template.is_file() {
            return Ok(Err(Reply::error(
                code::NO_TEMPLATE,
                format!("create_env: no template `{}` on this node", spec.template),
            )));
        }
        // A record whose container is gone (lost, removed by hand) is made anew from this
        // spec; only a container that is there can conflict.
        match self.specs.get(spec.id)? {
            Some(old) if self.driver.state(spec.id)? != EnvState::Absent => {
                return Ok(Err(if &old != spec {
                    Reply::error(
                        code::CONFLICT,
                        format!("create_env: container {} exists with another spec", spec.id),
                    )
                } else {
                    Reply::ok(vec!["exists".into()])
                }));
            }
            _ => {}
        }
        if let Some(other) = self
            .specs
            .all()?
            .into_iter()
            .find(|s| s.id != spec.id && s.ip == spec.ip)
        {
            return Ok(Err(Reply::error(
                code::CONFLICT,
                format!(
                    "create_env: {} is already used by container {}",
                    spec.ip, other.id
                ),
            )));
        }
        // Record the spec first: a crash mid-way leaves something a retry can finish or undo.
        self.specs.put(spec)?;
        self.specs.set_wanted_running(spec.id, false)?;
        Ok(Ok(template))
    }

    /// Makes the container of a kept spec (undone if it fails).
    fn make(&self, spec: &EnvSpec, template: &Path) -> Result<Reply, DriverError> {
        if let Err(e) = self.driver.create(spec, template) {
            let _ = self.driver.destroy(Some(spec), spec.id);
            let _ = self.specs.remove(spec.id);
            return Err(e);
        }
        Ok(Reply::ok(vec!["created".into()]))
    }

    fn existing(&self, id: VeId) -> Result<Result<EnvSpec, Reply>, DriverError> {
        Ok(match self.specs.get(id)? {
            Some(s) => Ok(s),
            None => Err(Reply::error(
                code::NOT_FOUND,
                format!("no container {id} on this node"),
            )),
        })
    }

    fn status(&self, spec: &EnvSpec) -> Result<Value, DriverError> {
        let mut status = json!({
            "id": spec.id,
            "state": self.driver.state(spec.id)?,
            "ip": spec.ip,
            "hostname": spec.hostname,
            "username": spec.username,
            "template": spec.template,
            "limits": spec.limits,
            "root": spec.root,
            "wanted": match self.specs.wanted_running(spec.id)? {
                Some(true) => "running",
                Some(false) => "stopped",
                None => "unknown",
            },
        });
        if self.driver.privileged(spec.id) {
            status["privileged"] = json!(true);
        }
        Ok(status)
    }

    fn dispatch(&self, cmd: Command) -> Result<Reply, DriverError> {
        let said = |c: Change, done: &str, already: &str| {
            Reply::ok(vec![match c {
                Change::Done => done.into(),
                Change::AlreadySo => already.into(),
            }])
        };
        Ok(match cmd {
            Command::Ping => crate::slave_link::server::pong(),
            Command::NodeInfo => Reply::ok(vec![self.node_info()?]),
            Command::Retire => Reply::ok(
                self.uninstall()
                    .map_err(|e| DriverError::msg(format!("{e:#}")))?
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            ),
            Command::CreateEnv(spec) => self.create(&spec)?,
            Command::CreateEnvAsSeed {
                id,
                template,
                username,
            } => self.create_as_seed(id, template, username)?,
            Command::SyncTemplatesAsSeed => self.sync_templates_as_seed()?,
            // What the master asks for is kept with the spec, first: after a host reboot
            // (or a container stopped behind the agent's back) the agent knows what to bring
            // back.
            Command::StartEnv(id) => match self.existing(id)? {
                Ok(spec) => {
                    self.specs.set_wanted_running(id, true)?;
                    said(self.driver.start(&spec)?, "started", "already running")
                }
                Err(r) => r,
            },
            Command::StopEnv(id) => match self.existing(id)? {
                Ok(_) => {
                    self.specs.set_wanted_running(id, false)?;
                    said(self.driver.stop(id)?, "stopped", "already stopped")
                }
                Err(r) => r,
            },
            Command::RestartEnv(id) => match self.existing(id)? {
                Ok(spec) => {
                    self.specs.set_wanted_running(id, true)?;
                    self.driver.stop(id)?;
                    self.driver.start(&spec)?;
                    Reply::ok(vec!["restarted".into()])
                }
                Err(r) => r,
            },
            Command::DestroyEnv(id) => {
                let spec = self.specs.get(id)?;
                let change = self.driver.destroy(spec.as_ref(), id)?;
                self.forget_archives(id);
                self.specs.remove(id)?;
                match (change, spec) {
                    (Change::AlreadySo, None) => Reply::ok(vec!["absent".into()]),
                    _ => Reply::ok(vec!["destroyed".into()]),
                }
            }
            Command::EnvStatus(id) => match self.specs.get(id)? {
                Some(spec) => Reply::ok(vec![self.status(&spec)?]),
                None => Reply::ok(vec![json!({"id": id, "state": EnvState::Absent})]),
            },
            Command::ListEnvs => {
                let mut list = Vec::new();
                for spec in self.specs.all()? {
                    list.push(self.status(&spec)?);
                }
                Reply::ok(list)
            }
            Command::SetLimits(id, limits) => match self.existing(id)? {
                Ok(mut spec) => {
                    self.driver.set_limits(&spec, &limits)?;
                    spec.limits = limits;
                    self.specs.put(&spec)?;
                    Reply::ok(vec!["applied".into()])
                }
                Err(r) => r,
            },
            Command::SetKeys(id, keys) => match self.existing(id)? {
                Ok(mut spec) => {
                    spec.keys = keys;
                    self.specs.put(&spec)?;
                    // Starting a running slice changes nothing but the user and its keys.
                    if self.driver.state(id)? == EnvState::Running {
                        self.driver.start(&spec)?;
                        Reply::ok(vec!["applied".into()])
                    } else {
                        Reply::ok(vec!["saved; applied at the next start".into()])
                    }
                }
                Err(r) => r,
            },
            Command::Usage(Some(id)) => match self.existing(id)? {
                Ok(_) => Reply::ok(vec![json!({"id": id, "counters": self.driver.usage(id)?})]),
                Err(r) => r,
            },
            Command::SyncTemplates(manifest) => self.sync_templates(&manifest)?,
            Command::PutTemplate { info, offset, data } => self.put_template(&info, offset, &data),
            Command::ExportHome(id) => self.export_home(id)?,
            Command::ReadExport {
                id,
                sha256,
                offset,
                len,
                raw,
            } => self.read_export(id, &sha256, offset, (len, raw))?,
            Command::DropExport(id) => self.drop_export(id)?,
            Command::ImportHome {
                id,
                sha256,
                size,
                offset,
                data,
            } => self.import_home(id, (&sha256, size), offset, &data)?,
            Command::Snapshot(id, name) => self.take_snapshot(id, &name)?,
            Command::ListSnapshots(id) => self.list_snapshots(id)?,
            Command::RestoreSnapshot(id, name) => self.restore_snapshot(id, &name)?,
            Command::DropSnapshot(id, name) => self.drop_snapshot(id, &name)?,
            Command::Usage(None) => {
                // Each container under its own lock (a destroy or stop in progress finishes
                // first); one that is gone by then, or cannot be read, is left out of this
                // sample rather than failing the node's whole sample.
                let mut out = Vec::new();
                for spec in self.specs.all()? {
                    let lock = self.lock(spec.id);
                    let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
                    if self.specs.get(spec.id)?.is_none() {
                        continue;
                    }
                    let sample = self.driver.state(spec.id).and_then(|state| {
                        Ok(if state == EnvState::Running {
                            Some(self.driver.usage(spec.id)?)
                        } else {
                            None
                        })
                    });
                    match sample {
                        Ok(Some(counters)) => {
                            out.push(json!({"id": spec.id, "counters": counters}))
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(id = %spec.id, error = %e, "usage: left out of this sample")
                        }
                    }
                }
                Reply::ok(out)
            }
        })
    }

    /// What `slices-agent check` reports: the driver's needs and the agent's own files.
    pub fn check(&self) -> Vec<CheckItem> {
        let mut items = vec![
            CheckItem::new(
                "template folder",
                self.config.templates.is_dir(),
                self.config.templates.display().to_string(),
            ),
            CheckItem::new(
                "CA certificate",
                self.config.ca.is_file(),
                self.config.ca.display().to_string(),
            ),
            CheckItem::new(
                "agent certificate",
                self.config.cert.is_file(),
                self.config.cert.display().to_string(),
            ),
            CheckItem::new(
                "agent key",
                self.config.key.is_file(),
                self.config.key.display().to_string(),
            ),
        ];
        match self.templates() {
            Ok(t) => items.push(CheckItem::new(
                "templates",
                !t.is_empty(),
                if t.is_empty() {
                    "none yet: put NAME.tar.gz files in the template folder".to_string()
                } else {
                    t.iter()
                        .map(|t| t.name.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            )),
            Err(e) => items.push(CheckItem::new("templates", false, e.to_string())),
        }
        items.extend(self.driver.check());
        if self.driver.kind() != "sim" {
            // Slices reach out, and the gateway reaches them, only through a forwarding host.
            let on = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .map(|v| v.trim() == "1")
                .unwrap_or(false);
            items.push(match (on, self.keeps_network()) {
                (true, _) => CheckItem::new("IPv4 forwarding", true, "on".to_string()),
                (false, true) => CheckItem::new(
                    "IPv4 forwarding",
                    true,
                    "off now: the agent turns it on when it starts (uninstall puts it back)"
                        .to_string(),
                ),
                (false, false) => CheckItem::new(
                    "IPv4 forwarding",
                    false,
                    "off, and [network] is disabled: turn it on (sysctl -w \
                     net.ipv4.ip_forward=1, and in /etc/sysctl.d/) or slices are cut off"
                        .to_string(),
                ),
            });
        }
        if self.keeps_network() {
            let run = run::SystemRunner {
                timeout: Duration::from_secs(30),
            };
            let n = &self.config.network;
            items.push(
                match netpolicy::drift(&run, n, &self.config.bridge, &self.config.subnet) {
                    Ok(d) if d.is_empty() => CheckItem::new(
                        "network policy",
                        true,
                        format!(
                            "in place: TCP {} open to slices{}",
                            n.open_ports
                                .iter()
                                .map(u16::to_string)
                                .collect::<Vec<_>>()
                                .join(","),
                            if n.uplink.is_empty() {
                                String::new()
                            } else {
                                format!(", NAT through {}", n.uplink)
                            }
                        ),
                    ),
                    Ok(d) => CheckItem::new(
                        "network policy",
                        false,
                        format!("{} (slices-agent run puts it right)", d.join("; ")),
                    ),
                    Err(e) => CheckItem::new("network policy", false, e.to_string()),
                },
            );
        }
        items
    }
}

impl Handler for Agent {
    fn handle(&self, cmd: Command) -> Reply {
        let lock = cmd.target().map(|id| self.lock(id));
        let _guard = lock
            .as_ref()
            .map(|l| l.lock().unwrap_or_else(|p| p.into_inner()));
        match self.dispatch(cmd) {
            Ok(reply) => reply,
            Err(e) => Reply {
                raw: None,
                code: code::FAILED,
                returned: e.lines.into_iter().map(Value::String).collect(),
            },
        }
    }
}

/// `(MemTotal, MemAvailable)` in KiB.
fn meminfo() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("MemTotal:"), get("MemAvailable:"))
}

/// Free space under `path`, in MiB, from `df` (no unsafe statvfs call needed).
fn disk_free_mb(path: &Path) -> u64 {
    std::process::Command::new("df")
        .args(["-Pk", "--"])
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}
