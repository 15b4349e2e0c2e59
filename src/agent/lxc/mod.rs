//! Real containers with LXC (cgroup v1 or v2), unprivileged: each slice has its own range of
//! host ids (`ids`), its root filesystem is an ext4 image of its own (`disk`: the plan's disk
//! is a hard limit) seen through an idmapped mount, LXC's default seccomp policy applies, the
//! dangerous capabilities are dropped, only the usual character devices are allowed, and
//! AppArmor confines it where the host has AppArmor. Its port on the bridge is isolated: it
//! reaches other slices only through the host, where the network policy decides.
//! Memory (hard and soft), processes and CPU weight are enforced through cgroups.
//!
//! Containers made by versions before (privileged, an overlay on the extracted template) are
//! converted at their next start: their files are copied into an image of their own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::driver::{
    Change, CheckItem, Counter, DResult, Driver, DriverError, EnvState, SnapshotInfo,
};
use super::run::Runner;
use super::AgentConfig;
use crate::agent::inside;
use crate::argv;
use crate::domain::{Limits, SnapshotName, Subnet, VeId};
use crate::slave_link::EnvSpec;

mod cgroup;
mod disk;
mod ids;
use cgroup::rmdir_cgroup;
pub use ids::IdPool;

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
    golden_lock: Mutex<()>,
    /// Spare disk images being made in the background.
    preparing: Arc<Mutex<HashSet<PathBuf>>>,
    /// Held from choosing a container's id range until its config is written.
    ids_lock: Mutex<()>,
    ids: IdPool,
    /// The script LXC runs when a slice's veth is up: it isolates the port on the bridge.
    isolate: PathBuf,
}

/// What `lxc.net.0.script.up` runs: the slice's end of the veth, on the bridge, may talk only
/// to the host (bridge port isolation), never straight to another slice.
const ISOLATE_SCRIPT: &str = "#!/bin/sh\n\
# Made by slices-agent: a slice's port on the bridge talks only to the host.\n\
PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
# LXC passes: name, net, up, veth, the bridge, the host's end of the veth.\n\
exec bridge link set dev \"$6\" isolated on\n";

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
        let isolate = lxc_path.join(".isolate-port");
        if std::fs::read_to_string(&isolate).ok().as_deref() != Some(ISOLATE_SCRIPT) {
            use std::os::unix::fs::PermissionsExt;
            let tmp = isolate.with_extension("tmp");
            std::fs::write(&tmp, ISOLATE_SCRIPT)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&tmp, &isolate)?;
        }
        Ok(Lxc {
            lxc_path,
            bases,
            bridge: cfg.bridge.clone(),
            subnet: cfg.subnet,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            run,
            extracting: Mutex::new(HashSet::new()),
            golden_lock: Mutex::new(()),
            preparing: Arc::new(Mutex::new(HashSet::new())),
            ids_lock: Mutex::new(()),
            ids: cfg.slice_ids,
            isolate,
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

    fn config_text(&self, spec: &EnvSpec, ids_first: u32) -> String {
        let l = &spec.limits;
        let apparmor = if apparmor_enabled() {
            "lxc.apparmor.profile = generated\nlxc.apparmor.allow_nesting = 0\n"
        } else {
            ""
        };
        format!(
            "# Made by slices-agent for container {id}; changes are overwritten.\n\
             lxc.include = /usr/share/lxc/config/common.conf\n\
             lxc.arch = linux64\n\
             {apparmor}\
             lxc.idmap = u 0 {ids_first} {per}\n\
             lxc.idmap = g 0 {ids_first} {per}\n\
             lxc.rootfs.path = dir:{root}\n\
             lxc.rootfs.options = idmap=container\n\
             lxc.uts.name = {host}\n\
             lxc.net.0.type = veth\n\
             lxc.net.0.link = {bridge}\n\
             lxc.net.0.flags = up\n\
             lxc.net.0.name = eth0\n\
             lxc.net.0.hwaddr = {mac}\n\
             lxc.net.0.ipv4.address = {ip}/{prefix}\n\
             lxc.net.0.ipv4.gateway = {gw}\n\
             lxc.net.0.script.up = {isolate}\n\
             {limits}\
             lxc.signal.halt = SIGRTMIN+3\n",
            id = spec.id,
            per = ids::PER_SLICE,
            root = self.mountpoint(spec.id).display(),
            host = spec.hostname,
            bridge = self.bridge,
            mac = mac(spec.id),
            ip = spec.ip,
            prefix = self.subnet.prefix(),
            gw = self.subnet.gateway(),
            isolate = self.isolate.display(),
            limits = self.limit_lines(l),
        )
    }

    /// Rewrites the container's config from the spec, keeping its id range.
    fn write_config(&self, spec: &EnvSpec) -> DResult<()> {
        let _ids = self.ids_lock.lock().expect("ids lock");
        let first = self.allocate_ids(spec.id)?;
        let path = self.dir(spec.id).join("config");
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.config_text(spec, first))?;
        std::fs::rename(tmp, path)?;
        Ok(())
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

    /// The extracted template under a container of the old, privileged kind.
    fn lower_of(&self, id: VeId) -> DResult<PathBuf> {
        let text = std::fs::read_to_string(self.dir(id).join("config"))?;
        text.lines()
            .find_map(|l| l.strip_prefix("lxc.rootfs.path = overlay:"))
            .and_then(|rest| rest.split(':').next())
            .map(PathBuf::from)
            .ok_or_else(|| DriverError::msg("the container's config has no overlay root"))
    }

    /// Files the slice sees that come from its spec (name resolution, host name), written
    /// once, into the image just made from the template (no student has touched it yet; links
    /// the template may hold are replaced, never followed).
    fn write_identity(&self, spec: &EnvSpec) -> DResult<()> {
        let etc = self.mountpoint(spec.id).join("etc");
        if !std::fs::symlink_metadata(&etc).is_ok_and(|m| m.is_dir()) {
            return Err(DriverError::msg(format!(
                "the template {} has no /etc folder",
                spec.template
            )));
        }
        let mut resolv = String::new();
        if let Some(d) = &spec.search_domain {
            resolv.push_str(&format!("search {d}\n"));
        }
        for ns in &spec.nameservers {
            resolv.push_str(&format!("nameserver {ns}\n"));
        }
        let hosts = etc.join("hosts");
        let current = match std::fs::symlink_metadata(&hosts) {
            Ok(m) if m.is_file() => std::fs::read_to_string(&hosts).unwrap_or_default(),
            _ => String::new(),
        };
        // The plan's process limit (the container's pids.max) bounds the whole slice; systemd's
        // own defaults would give sshd 15 % of it (about nine sessions with the standard plan)
        // and each user 33 %.
        const TASKS: &str = "# Written by Slices: the slice's process limit bounds it all.\n";
        for dir in [
            "systemd",
            "systemd/system",
            "systemd/system.conf.d",
            "systemd/system/user-.slice.d",
        ] {
            // Folders only, made one level at a time: a link is never followed out of the image.
            match std::fs::symlink_metadata(etc.join(dir)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(DriverError::msg(format!(
                        "the template {} has /etc/{dir} that is not a folder",
                        spec.template
                    )))
                }
                Err(_) => std::fs::create_dir(etc.join(dir))?,
            }
        }
        for (file, text) in [
            ("resolv.conf", resolv),
            ("hostname", format!("{}\n", spec.hostname)),
            ("hosts", hosts_file(&current, &spec.hostname.to_string())),
            (
                "systemd/system.conf.d/50-slices.conf",
                format!("{TASKS}[Manager]\nDefaultTasksMax=infinity\n"),
            ),
            (
                "systemd/system/user-.slice.d/50-slices.conf",
                format!("{TASKS}[Slice]\nTasksMax=infinity\n"),
            ),
        ] {
            let path = etc.join(file);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            use std::io::Write;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?
                .write_all(text.as_bytes())?;
        }
        Ok(())
    }

    /// The user, their keys and their root: one call into the container.
    fn ensure_user(&self, spec: &EnvSpec) -> DResult<()> {
        let mut args = vec!["sh", "-c", inside::SETUP];
        let rest = inside::setup_args(spec);
        args.extend(rest.iter().map(String::as_str));
        let out = self.attach(spec.id, &args, Some(inside::keys_text(spec).as_bytes()))?;
        if out.code != 0 {
            return Err(inside::setup_failed(spec, out));
        }
        Ok(())
    }

    fn flush_neighbour(&self, spec: &EnvSpec) {
        let _ = self.run.run(
            "ip",
            &argv!["neigh", "flush", "dev", self.bridge, "to", spec.ip],
        );
    }

    /// A container of the old, privileged kind becomes an unprivileged one, stopped: its files
    /// (the template below, its own changes above) are copied, owners as they are, into an
    /// image of its own; the overlay's folder goes only once the copy is whole.
    fn convert(&self, spec: &EnvSpec) -> DResult<()> {
        let id = spec.id;
        let lower = self.lower_of(id)?;
        let dir = self.dir(id);
        let (upper, work, merged) = (dir.join("delta0"), dir.join("olwork"), dir.join(".merged"));
        tracing::info!(container = %id, "converting a privileged container to an unprivileged one");
        let img = self.image(id);
        let _ = self.unmount_image(id);
        let _ = std::fs::remove_file(&img);
        let mb = spec.limits.disk_limit_mb();
        std::fs::File::create(&img)?.set_len(mb as u64 * 1024 * 1024)?;
        self.run
            .run("mkfs.ext4", &argv!["-q", "-F", "-m", "0", img.display()])?
            .ok("mkfs.ext4")?;
        self.mount_image(id, false)?;
        for d in [&work, &merged] {
            std::fs::create_dir_all(d)?;
        }
        let copied = (|| {
            self.run
                .run(
                    "mount",
                    &argv![
                        "-t",
                        "overlay",
                        "overlay",
                        "-o",
                        format!(
                            "lowerdir={},upperdir={},workdir={}",
                            lower.display(),
                            upper.display(),
                            work.display()
                        ),
                        merged.display()
                    ],
                )?
                .ok("mounting the old overlay")?;
            let out = self.run.run(
                "cp",
                &argv![
                    "-a",
                    "--one-file-system",
                    format!("{}/.", merged.display()),
                    format!("{}/", self.mountpoint(id).display())
                ],
            );
            let _ = self.run.run("umount", &argv![merged.display()]);
            out?.ok("copying the slice's files into its own disk")
        })();
        if let Err(e) = copied {
            let _ = self.unmount_image(id);
            let _ = std::fs::remove_file(&img);
            let mut lines = vec![format!(
                "container {id} stays privileged and unchanged: its files could not be copied \
                 into a {mb} MB disk of its own"
            )];
            lines.extend(e.lines);
            return Err(DriverError { lines });
        }
        self.write_config(spec)?;
        for d in [&upper, &work, &merged] {
            let _ = std::fs::remove_dir_all(d);
        }
        Ok(())
    }
}

/// `/etc/hosts` with the slice's name on Debian's `127.0.1.1` line (and `localhost` there),
/// every other line as the student left it.
fn hosts_file(current: &str, hostname: &str) -> String {
    let mut out = String::new();
    let mut localhost = false;
    for line in current.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first == "127.0.1.1" {
            continue;
        }
        if first == "127.0.0.1" && line.split_whitespace().any(|w| w == "localhost") {
            localhost = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !localhost {
        out.insert_str(0, "127.0.0.1\tlocalhost\n");
    }
    out.push_str(&format!("127.0.1.1\t{hostname}\n"));
    out
}

/// Whether the host confines with AppArmor (absent on some kernels, as on the lab machines).
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim() == "Y")
        .unwrap_or(false)
}

impl Driver for Lxc {
    fn usage(&self, id: VeId) -> DResult<Vec<Counter>> {
        let mut counters = self.read_usage(id)?;
        counters.extend(self.disk_counter(id)?);
        Ok(counters)
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
        let userns = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let tools: Vec<&str> = [
            "mkfs.ext4",
            "resize2fs",
            "e2fsck",
            "losetup",
            "fsfreeze",
            "bridge",
        ]
        .into_iter()
        .filter(|t| {
            !["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(t).exists())
        })
        .collect();
        let loop_ok = Path::new("/dev/loop-control").exists();
        let aa = apparmor_enabled();
        let overlap = self.subordinate_overlap();
        let privileged: Vec<String> = std::fs::read_dir(&self.lxc_path)
            .map(|d| {
                let mut names: Vec<String> = d
                    .flatten()
                    .filter(|e| {
                        std::fs::read_to_string(e.path().join("config"))
                            .is_ok_and(|t| ids::mapped_root(&t).is_none())
                    })
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                names
            })
            .unwrap_or_default();
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
                "user namespaces",
                userns > 0,
                if userns > 0 {
                    format!(
                        "slices' roots are host ids {} to {} (65536 each)",
                        self.ids.first,
                        self.ids.first as u64 + self.ids.count() - 1
                    )
                } else {
                    "user.max_user_namespaces is 0: slices cannot be unprivileged".into()
                },
            ),
            CheckItem::new(
                "slice ids unshared",
                overlap.is_none(),
                overlap.unwrap_or_else(|| {
                    "no entry of /etc/subuid or /etc/subgid overlaps the slices' ids".into()
                }),
            ),
            CheckItem::new(
                "disk limit",
                loop_ok && tools.is_empty(),
                if !loop_ok {
                    "no /dev/loop-control: modprobe loop (each slice's disk is an ext4 image on a loop device)".to_string()
                } else if !tools.is_empty() {
                    format!(
                        "missing {}: apt-get install e2fsprogs iproute2",
                        tools.join(", ")
                    )
                } else {
                    "each slice's disk is an ext4 image of the plan's size on a loop device".into()
                },
            ),
            CheckItem::new(
                "unprivileged slices",
                privileged.is_empty(),
                if privileged.is_empty() {
                    "every slice has its own id range".to_string()
                } else {
                    format!(
                        "still privileged, made by an earlier version (each becomes \
                         unprivileged at its next start): {}",
                        privileged.join(", ")
                    )
                },
            ),
            CheckItem::new(
                "apparmor",
                true,
                if aa {
                    "slices are confined by LXC's generated AppArmor profile".to_string()
                } else {
                    "AppArmor is not enabled on this host: slices are confined by the id map, \
                     seccomp and dropped capabilities only"
                        .to_string()
                },
            ),
        ]
    }

    fn create(&self, spec: &EnvSpec, template: &Path) -> DResult<()> {
        let base = self.base_for(template)?;
        let golden = self.golden_for(&base)?;
        std::fs::create_dir_all(self.mountpoint(spec.id))?;
        self.make_image(spec.id, &golden, spec.limits.disk_limit_mb())?;
        self.mount_image(spec.id, true)?;
        self.write_identity(spec)?;
        // The config last: with it the container exists (for LXC and for `state`). LXC needs
        // nothing else of a container but its folder and config (no `lxc-create`).
        self.write_config(spec)?;
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
                if self.privileged(id) {
                    self.convert(spec)?;
                }
                // The spec may have changed since creation (limits, name servers).
                self.write_config(spec)?;
                self.mount_image(id, false)?;
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
            // Unmounted first: lxc-destroy empties the root folder it is given.
            self.unmount_image(id)?;
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

    /// From the slice's disk as the host mounts it (files keep the owners the slice sees: it
    /// sees them through an idmapped mount), so a stopped slice is packed as well as a
    /// running one.
    fn export_home(&self, id: VeId, out: &Path) -> DResult<()> {
        if self.state(id)? == EnvState::Absent {
            return Err(DriverError::msg(format!("container {id} does not exist")));
        }
        self.mount_image(id, false)?;
        crate::agent::homes::pack_home(self.run.as_ref(), &self.mountpoint(id), out)
    }

    /// Unpacked by the slice's own root (`lxc-attach`): whatever the archive holds, it can
    /// write nothing outside the slice.
    fn import_home(&self, id: VeId, archive: &Path) -> DResult<()> {
        if self.state(id)? != EnvState::Running {
            return Err(DriverError::msg(format!("container {id} is not running")));
        }
        let mut a = argv!["-P", self.p(), "-n", name(id), "--clear-env", "--"];
        a.extend(crate::agent::homes::UNPACK.iter().map(|s| s.to_string()));
        self.run
            .run_files("lxc-attach", &a, Some(archive), None)?
            .ok("tar in the slice (unpacking /home)")
            .map(|_| ())
    }

    fn snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<()> {
        let state = self.state(id)?;
        if state == EnvState::Absent {
            return Err(DriverError::msg(format!("container {id} does not exist")));
        }
        self.copy_to_snapshot(id, name, state == EnvState::Running)
    }

    fn snapshots(&self, id: VeId) -> DResult<Vec<SnapshotInfo>> {
        self.snapshot_list(id)
    }

    fn restore_snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<()> {
        if self.state(id)? != EnvState::Stopped {
            return Err(DriverError::msg(format!(
                "container {id} must be stopped to be restored"
            )));
        }
        self.copy_from_snapshot(id, name)
    }

    fn drop_snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<Change> {
        let snap = self.snapshot_dir(id).join(format!("{name}.img"));
        if !snap.exists() {
            return Ok(Change::AlreadySo);
        }
        std::fs::remove_file(snap)?;
        Ok(Change::Done)
    }

    /// One of the privileged kind older versions made: a config with no id map.
    fn privileged(&self, id: VeId) -> bool {
        std::fs::read_to_string(self.dir(id).join("config"))
            .map(|t| ids::mapped_root(&t).is_none())
            .unwrap_or(false)
    }

    fn set_limits(&self, spec: &EnvSpec, limits: &Limits) -> DResult<()> {
        let id = spec.id;
        let mut updated = spec.clone();
        updated.limits = *limits;
        if !self.privileged(id) {
            self.grow_image(id, limits.disk_limit_mb())?;
            self.write_config(&updated)?;
        }
        if self.state(id)? == EnvState::Running {
            for (key, value) in self.cgroup_settings(limits) {
                self.lxc("lxc-cgroup", id, argv![key, value])?
                    .ok("lxc-cgroup")?;
            }
        }
        Ok(())
    }
}

/// Makes `bridge` with the subnet's first address, up, unless there is one already: what an
/// operator would type (`slices-agent check` prints the same commands). Whether it made it.
pub fn ensure_bridge(
    run: &dyn crate::agent::run::Runner,
    bridge: &str,
    subnet: &crate::domain::Subnet,
) -> DResult<bool> {
    let bridge = crate::agent::netpolicy::iface(bridge)?;
    if Path::new("/sys/class/net")
        .join(bridge)
        .join("bridge")
        .exists()
    {
        return Ok(false);
    }
    let address = format!("{}/{}", subnet.gateway(), subnet.prefix());
    for args in [
        argv!["link", "add", bridge, "type", "bridge"],
        argv!["addr", "add", address, "dev", bridge],
        argv!["link", "set", bridge, "up"],
    ] {
        let out = run.run("ip", &args)?;
        if out.code != 0 {
            return Err(DriverError::msg(format!(
                "ip {}: {}",
                args.join(" "),
                out.stderr.trim()
            )));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::hosts_file;

    #[test]
    fn the_hosts_file_names_the_slice_and_keeps_the_students_lines() {
        assert_eq!(
            hosts_file("", "alice"),
            "127.0.0.1\tlocalhost\n127.0.1.1\talice\n"
        );
        let mine = "127.0.0.1 localhost\n127.0.1.1 old-name\n10.0.0.5 db.local\n";
        let once = hosts_file(mine, "alice");
        assert_eq!(
            once,
            "127.0.0.1 localhost\n10.0.0.5 db.local\n127.0.1.1\talice\n"
        );
        assert_eq!(
            hosts_file(&once, "alice"),
            once,
            "nothing to write the second time"
        );
    }
}
