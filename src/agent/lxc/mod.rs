//! Real containers with LXC (privileged, cgroup v1 or v2). Each template is extracted once;
//! each container is an overlay on it with its own upper folder. Memory (hard and soft),
//! processes and CPU weight are enforced through cgroups; disk space is not enforced by this
//! driver (the overlay has no quota) and is only watched.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::driver::{Change, CheckItem, Counter, DResult, Driver, DriverError, EnvState};
use super::run::Runner;
use super::AgentConfig;
use crate::argv;
use crate::domain::{Limits, Subnet, VeId};
use crate::slave_link::EnvSpec;

mod cgroup;
use cgroup::rmdir_cgroup;

pub struct Lxc {
    /// LXC's container folder (`-P`).
    lxc_path: PathBuf,
    /// Extracted templates.
    bases: PathBuf,
    bridge: String,
    subnet: Subnet,
    cgroup_root: PathBuf,
    run: Arc<dyn Runner>,
    extracting: Mutex<HashSet<PathBuf>>,
}

fn name(id: VeId) -> String {
    format!("ve{id}")
}

/// A fixed MAC per container, so a reused IP never meets a stale neighbour entry for long.
pub fn mac(id: VeId) -> String {
    let b = id.get().to_be_bytes();
    format!("02:5c:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

impl Lxc {
    pub fn new(cfg: &AgentConfig, run: Arc<dyn Runner>) -> std::io::Result<Lxc> {
        let lxc_path = cfg.state.join("lxc");
        let bases = cfg.state.join("bases");
        std::fs::create_dir_all(&lxc_path)?;
        std::fs::create_dir_all(&bases)?;
        Ok(Lxc {
            lxc_path,
            bases,
            bridge: cfg.bridge.clone(),
            subnet: cfg.subnet,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            run,
            extracting: Mutex::new(HashSet::new()),
        })
    }

    fn dir(&self, id: VeId) -> PathBuf {
        self.lxc_path.join(name(id))
    }

    fn p(&self) -> String {
        self.lxc_path.display().to_string()
    }

    fn lxc(&self, tool: &str, id: VeId, rest: Vec<String>) -> DResult<super::run::Output> {
        let mut a = argv!["-P", self.p(), "-n", name(id)];
        a.extend(rest);
        self.run.run(tool, &a)
    }

    fn attach(&self, id: VeId, cmd: &[&str], stdin: Option<&[u8]>) -> DResult<super::run::Output> {
        let mut a = argv!["-P", self.p(), "-n", name(id), "--clear-env", "--"];
        a.extend(cmd.iter().map(|s| s.to_string()));
        self.run.run_with("lxc-attach", &a, stdin)
    }

    /// The template extracted once, keyed by its size and modification time so that a new
    /// version of the file gets a fresh base.
    fn base_for(&self, template: &Path) -> DResult<PathBuf> {
        let meta = std::fs::metadata(template)?;
        let mtime = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let stem = template
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".tar.gz"))
            .ok_or_else(|| DriverError::msg("template files end in .tar.gz"))?;
        let base = self.bases.join(format!("{stem}-{}-{mtime}", meta.len()));
        let rootfs = base.join("rootfs");
        loop {
            if base.join(".complete").exists() {
                return Ok(rootfs);
            }
            let mut busy = self.extracting.lock().expect("extract set");
            if busy.contains(&base) {
                drop(busy);
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
            busy.insert(base.clone());
            break;
        }
        let result = (|| {
            let tmp = self.bases.join(format!(
                ".extract-{}",
                base.file_name().unwrap().to_string_lossy()
            ));
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(tmp.join("rootfs"))?;
            self.run
                .run(
                    "tar",
                    &argv![
                        "-xzf",
                        template.display(),
                        "-C",
                        tmp.join("rootfs").display(),
                        "--numeric-owner"
                    ],
                )?
                .ok("extracting the template")?;
            std::fs::write(tmp.join(".complete"), template.display().to_string())?;
            let _ = std::fs::remove_dir_all(&base);
            std::fs::rename(&tmp, &base)?;
            Ok(rootfs.clone())
        })();
        self.extracting.lock().expect("extract set").remove(&base);
        result
    }

    /// The overlay root: the extracted template below, the container's own folder above.
    fn overlay(&self, id: VeId, lower: &Path) -> String {
        format!(
            "overlay:{}:{}",
            lower.display(),
            self.dir(id).join("delta0").display()
        )
    }

    fn config_text(&self, spec: &EnvSpec, root: &str) -> String {
        let l = &spec.limits;
        format!(
            "# Made by slices-agent for container {id}; changes are overwritten.\n\
             lxc.include = /usr/share/lxc/config/common.conf\n\
             lxc.arch = linux64\n\
             lxc.apparmor.profile = unconfined\n\
             lxc.rootfs.path = {root}\n\
             lxc.uts.name = {host}\n\
             lxc.net.0.type = veth\n\
             lxc.net.0.link = {bridge}\n\
             lxc.net.0.flags = up\n\
             lxc.net.0.name = eth0\n\
             lxc.net.0.hwaddr = {mac}\n\
             lxc.net.0.ipv4.address = {ip}/{prefix}\n\
             lxc.net.0.ipv4.gateway = {gw}\n\
             {limits}\
             lxc.signal.halt = SIGRTMIN+3\n",
            id = spec.id,
            host = spec.hostname,
            bridge = self.bridge,
            mac = mac(spec.id),
            ip = spec.ip,
            prefix = self.subnet.prefix(),
            gw = self.subnet.gateway(),
            limits = self.limit_lines(l),
        )
    }

    fn limit_lines(&self, l: &Limits) -> String {
        self.cgroup_settings(l)
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "lxc.cgroup{}.{k} = {v}\n",
                    if self.cgroup_v2() { "2" } else { "" }
                )
            })
            .collect()
    }

    /// The cgroup keys and values for a plan, for this host's cgroup version.
    fn cgroup_settings(&self, l: &Limits) -> Vec<(&'static str, String)> {
        let mb = 1024 * 1024u64;
        if self.cgroup_v2() {
            vec![
                ("memory.max", (l.memory_limit_mb as u64 * mb).to_string()),
                ("memory.high", (l.memory_mb as u64 * mb).to_string()),
                ("pids.max", l.processes.to_string()),
                // cpu.weight is 1..10000 with 100 the default; cpu.shares' default is 1024.
                (
                    "cpu.weight",
                    ((l.cpu_shares as u64 * 100 / 1024).clamp(1, 10_000)).to_string(),
                ),
            ]
        } else {
            vec![
                (
                    "memory.limit_in_bytes",
                    (l.memory_limit_mb as u64 * mb).to_string(),
                ),
                (
                    "memory.soft_limit_in_bytes",
                    (l.memory_mb as u64 * mb).to_string(),
                ),
                ("pids.max", l.processes.to_string()),
                ("cpu.shares", l.cpu_shares.to_string()),
            ]
        }
    }

    fn lower_of(&self, id: VeId) -> DResult<PathBuf> {
        let text = std::fs::read_to_string(self.dir(id).join("config"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("lxc.rootfs.path = overlay:"))
            .and_then(|rest| rest.split(':').next())
            .map(PathBuf::from)
            .ok_or_else(|| DriverError::msg("the container's config has no overlay root"))
    }

    /// Files the container sees that come from its spec (name resolution, host name).
    fn write_identity(&self, spec: &EnvSpec) -> DResult<()> {
        let etc = self.dir(spec.id).join("delta0/etc");
        std::fs::create_dir_all(&etc)?;
        let mut resolv = String::new();
        if let Some(d) = &spec.search_domain {
            resolv.push_str(&format!("search {d}\n"));
        }
        for ns in &spec.nameservers {
            resolv.push_str(&format!("nameserver {ns}\n"));
        }
        let _ = std::fs::remove_file(etc.join("resolv.conf"));
        std::fs::write(etc.join("resolv.conf"), resolv)?;
        std::fs::write(etc.join("hostname"), format!("{}\n", spec.hostname))?;
        Ok(())
    }

    fn ensure_user(&self, spec: &EnvSpec) -> DResult<()> {
        let id = spec.id;
        let user = spec.username.as_str();
        if self.attach(id, &["id", "-u", user], None)?.code != 0 {
            self.attach(id, &["useradd", "-m", "-s", "/bin/bash", user], None)?
                .ok("useradd")?;
        }
        // A key-only account: not locked, no password.
        self.attach(id, &["usermod", "-p", "*", user], None)?
            .ok("usermod")?;
        let ssh = format!("/home/{user}/.ssh");
        let file = format!("{ssh}/authorized_keys");
        self.attach(
            id,
            &["install", "-d", "-m", "700", "-o", user, "-g", user, &ssh],
            None,
        )?
        .ok("making .ssh")?;
        let keys: String = spec.keys.iter().map(|k| format!("{k}\n")).collect();
        self.attach(id, &["tee", &file], Some(keys.as_bytes()))?
            .ok("writing authorized_keys")?;
        self.attach(id, &["chown", &format!("{user}:{user}"), &file], None)?
            .ok("chown")?;
        self.attach(id, &["chmod", "600", &file], None)?
            .ok("chmod")?;
        Ok(())
    }

    fn flush_neighbour(&self, spec: &EnvSpec) {
        let _ = self.run.run(
            "ip",
            &argv!["neigh", "flush", "dev", self.bridge, "to", spec.ip],
        );
    }
}

impl Driver for Lxc {
    fn usage(&self, id: VeId) -> DResult<Vec<Counter>> {
        self.read_usage(id)
    }

    fn kind(&self) -> &'static str {
        "lxc"
    }

    fn version(&self) -> String {
        self.run
            .run("lxc-info", &argv!["--version"])
            .map(|o| o.stdout.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    }

    fn check(&self) -> Vec<CheckItem> {
        let v = self.run.run("lxc-info", &argv!["--version"]);
        let bridge = Path::new("/sys/class/net")
            .join(&self.bridge)
            .join("bridge");
        let (mem, pids) = if self.cgroup_v2() {
            let ctl = std::fs::read_to_string(self.cgroup_root.join("cgroup.controllers"))
                .unwrap_or_default();
            (ctl.contains("memory"), ctl.contains("pids"))
        } else {
            (
                self.cgroup_root.join("memory").is_dir(),
                self.cgroup_root.join("pids").is_dir(),
            )
        };
        vec![
            CheckItem::new(
                "lxc installed",
                matches!(&v, Ok(o) if o.code == 0),
                match &v {
                    Ok(o) if o.code == 0 => format!("LXC {}", o.stdout.trim()),
                    _ => "lxc-info not found: apt-get install lxc".into(),
                },
            ),
            CheckItem::new(
                "bridge",
                bridge.exists(),
                if bridge.exists() {
                    format!("{} is a bridge", self.bridge)
                } else {
                    format!(
                        "no bridge {b}: ip link add {b} type bridge; ip addr add {gw}/{p} dev {b}; ip link set {b} up",
                        b = self.bridge,
                        gw = self.subnet.gateway(),
                        p = self.subnet.prefix()
                    )
                },
            ),
            CheckItem::new("memory cgroup", mem, self.cgroup_root.display().to_string()),
            CheckItem::new("pids cgroup", pids, self.cgroup_root.display().to_string()),
            CheckItem::new(
                "disk limit",
                true,
                "not enforced by the lxc driver (overlay has no quota); usage is only watched",
            ),
        ]
    }

    fn create(&self, spec: &EnvSpec, template: &Path) -> DResult<()> {
        let lower = self.base_for(template)?;
        let dir = self.dir(spec.id);
        std::fs::create_dir_all(dir.join("delta0"))?;
        // `lxc-create -t none` accepts only a plain folder as the root: it is made with the
        // template's folder, then the config gets the overlay, which lxc-start mounts.
        let conf = self.lxc_path.join(format!(".{}.conf", name(spec.id)));
        let plain = format!("dir:{}", lower.display());
        std::fs::write(&conf, self.config_text(spec, &plain))?;
        let out = self.lxc(
            "lxc-create",
            spec.id,
            argv!["-t", "none", "-f", conf.display()],
        );
        let _ = std::fs::remove_file(&conf);
        out?.ok("lxc-create")?;
        std::fs::write(
            dir.join("config"),
            self.config_text(spec, &self.overlay(spec.id, &lower)),
        )?;
        self.write_identity(spec)?;
        Ok(())
    }

    fn start(&self, spec: &EnvSpec) -> DResult<Change> {
        let id = spec.id;
        let change = match self.state(id)? {
            EnvState::Absent => {
                return Err(DriverError::msg(format!("container {id} does not exist")))
            }
            EnvState::Running => Change::AlreadySo,
            EnvState::Stopped => {
                // The spec may have changed since creation (limits, name servers).
                let lower = self.lower_of(id)?;
                std::fs::write(
                    self.dir(id).join("config"),
                    self.config_text(spec, &self.overlay(id, &lower)),
                )?;
                self.write_identity(spec)?;
                self.flush_neighbour(spec);
                self.lxc("lxc-start", id, argv!["-d"])?.ok("lxc-start")?;
                self.lxc("lxc-wait", id, argv!["-s", "RUNNING", "-t", "30"])?
                    .ok("lxc-wait")?;
                Change::Done
            }
        };
        self.ensure_user(spec)?;
        Ok(change)
    }

    fn stop(&self, id: VeId) -> DResult<Change> {
        if self.state(id)? != EnvState::Running {
            return Ok(Change::AlreadySo);
        }
        let out = self.lxc("lxc-stop", id, argv!["-t", "30"])?;
        if out.code != 0 {
            // It did not halt cleanly in time: kill it.
            self.lxc("lxc-stop", id, argv!["-k"])?.ok("lxc-stop -k")?;
        }
        Ok(Change::Done)
    }

    fn destroy(&self, spec: Option<&EnvSpec>, id: VeId) -> DResult<Change> {
        let dir = self.dir(id);
        let existed = dir.exists();
        if existed {
            if self.state(id)? == EnvState::Running {
                self.stop(id)?;
            }
            if dir.join("config").exists() {
                self.lxc("lxc-destroy", id, argv![])?.ok("lxc-destroy")?;
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
        }
        for cg in self.cgroup_dirs(id) {
            rmdir_cgroup(&cg);
        }
        // LXC's shared `lxc.pivot` folders: removing one fails harmlessly while in use.
        for h in self.cgroup_dirs_of_hierarchies() {
            let _ = std::fs::remove_dir(h.join("lxc.pivot"));
        }
        if let Some(spec) = spec {
            self.flush_neighbour(spec);
        }
        Ok(if existed {
            Change::Done
        } else {
            Change::AlreadySo
        })
    }

    fn state(&self, id: VeId) -> DResult<EnvState> {
        if !self.dir(id).join("config").exists() {
            return Ok(EnvState::Absent);
        }
        let out = self
            .lxc("lxc-info", id, argv!["-s", "-H"])?
            .ok("lxc-info")?;
        Ok(match out.stdout.trim() {
            "RUNNING" | "STARTING" | "STOPPING" => EnvState::Running,
            _ => EnvState::Stopped,
        })
    }

    fn set_limits(&self, spec: &EnvSpec, limits: &Limits) -> DResult<()> {
        let id = spec.id;
        let mut updated = spec.clone();
        updated.limits = *limits;
        let lower = self.lower_of(id)?;
        std::fs::write(
            self.dir(id).join("config"),
            self.config_text(&updated, &self.overlay(id, &lower)),
        )?;
        if self.state(id)? == EnvState::Running {
            for (key, value) in self.cgroup_settings(limits) {
                self.lxc("lxc-cgroup", id, argv![key, value])?
                    .ok("lxc-cgroup")?;
            }
        }
        Ok(())
    }
}
