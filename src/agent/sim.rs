//! The simulator: containers that exist only as small files, each operation taking a set
//! time. For the embedded default, demos and scale tests. It says it is simulated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::driver::{
    Change, CheckItem, Counter, DResult, Driver, DriverError, EnvState, SnapshotInfo,
};
use crate::domain::{Limits, SnapshotName, VeId};
use crate::slave_link::EnvSpec;

pub struct Sim {
    dir: PathBuf,
    op_time: Duration,
}

#[derive(Serialize, Deserialize)]
struct SimEnv {
    running: bool,
    limits: Limits,
    username: String,
    keys: usize,
}

impl Sim {
    pub fn new(state_dir: &Path, op_time: Duration) -> std::io::Result<Sim> {
        let dir = state_dir.join("sim");
        std::fs::create_dir_all(&dir)?;
        Ok(Sim { dir, op_time })
    }

    fn path(&self, id: VeId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn load(&self, id: VeId) -> DResult<Option<SimEnv>> {
        match std::fs::read(self.path(id)) {
            Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
                super::driver::DriverError::msg(format!("simulated state of {id} is damaged: {e}"))
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn save(&self, id: VeId, env: &SimEnv) -> DResult<()> {
        let tmp = self.path(id).with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(env).expect("serializable"))?;
        std::fs::rename(tmp, self.path(id))?;
        Ok(())
    }

    /// Where a simulated slice's snapshots are: a copy of its /home each.
    fn snapshot_dir(&self, id: VeId) -> PathBuf {
        self.dir.join(format!("{id}.snapshots"))
    }

    /// The simulated slice's /home: a real folder, made at its first export or import.
    fn home(&self, id: VeId, username: &str) -> DResult<PathBuf> {
        let home = self.dir.join(format!("{id}.home"));
        if !home.exists() {
            let user = home.join(username);
            std::fs::create_dir_all(&user)?;
            std::fs::write(
                user.join("README.txt"),
                format!(
                    "This slice ({id}) is simulated: it has no files but this one and what was \
                     imported into it.\n"
                ),
            )?;
        }
        Ok(home)
    }

    fn work(&self) {
        if !self.op_time.is_zero() {
            std::thread::sleep(self.op_time);
        }
    }
}

impl Driver for Sim {
    fn kind(&self) -> &'static str {
        "sim"
    }

    fn version(&self) -> String {
        "simulated".into()
    }

    fn simulated(&self) -> bool {
        true
    }

    fn check(&self) -> Vec<CheckItem> {
        vec![CheckItem::new(
            "simulator state folder",
            self.dir.is_dir(),
            self.dir.display().to_string(),
        )]
    }

    fn create(&self, spec: &EnvSpec, template: &Path) -> DResult<()> {
        self.work();
        if !template.is_file() {
            return Err(super::driver::DriverError::msg(format!(
                "no template at {}",
                template.display()
            )));
        }
        self.save(
            spec.id,
            &SimEnv {
                running: false,
                limits: spec.limits,
                username: spec.username.to_string(),
                keys: spec.keys.len(),
            },
        )
    }

    fn start(&self, spec: &EnvSpec) -> DResult<Change> {
        let mut env = self
            .load(spec.id)?
            .ok_or_else(|| super::driver::DriverError::msg("no such container"))?;
        env.keys = spec.keys.len();
        if env.running {
            self.save(spec.id, &env)?;
            return Ok(Change::AlreadySo);
        }
        self.work();
        env.running = true;
        self.save(spec.id, &env)?;
        Ok(Change::Done)
    }

    fn stop(&self, id: VeId) -> DResult<Change> {
        match self.load(id)? {
            Some(mut env) if env.running => {
                self.work();
                env.running = false;
                self.save(id, &env)?;
                Ok(Change::Done)
            }
            _ => Ok(Change::AlreadySo),
        }
    }

    fn destroy(&self, _: Option<&EnvSpec>, id: VeId) -> DResult<Change> {
        if self.load(id)?.is_none() {
            return Ok(Change::AlreadySo);
        }
        self.work();
        for folder in [format!("{id}.home"), format!("{id}.snapshots")] {
            let path = self.dir.join(folder);
            if path.exists() {
                std::fs::remove_dir_all(path)?;
            }
        }
        std::fs::remove_file(self.path(id))?;
        Ok(Change::Done)
    }

    fn state(&self, id: VeId) -> DResult<EnvState> {
        Ok(match self.load(id)? {
            None => EnvState::Absent,
            Some(e) if e.running => EnvState::Running,
            Some(_) => EnvState::Stopped,
        })
    }

    fn export_home(&self, id: VeId, out: &Path) -> DResult<()> {
        let env = self
            .load(id)?
            .ok_or_else(|| super::driver::DriverError::msg("no such container"))?;
        let home = self.home(id, &env.username)?;
        let gz =
            flate2::write::GzEncoder::new(std::fs::File::create(out)?, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.follow_symlinks(false);
        tar.append_dir_all(".", &home)?;
        tar.into_inner()?.finish()?.sync_all()?;
        Ok(())
    }

    fn import_home(&self, id: VeId, archive: &Path) -> DResult<()> {
        let env = self
            .load(id)?
            .ok_or_else(|| super::driver::DriverError::msg("no such container"))?;
        if !env.running {
            return Err(super::driver::DriverError::msg(format!(
                "container {id} is not running"
            )));
        }
        let home = self.home(id, &env.username)?;
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(archive)?);
        tar::Archive::new(gz)
            .unpack(&home)
            .map_err(|e| super::driver::DriverError::msg(format!("unpacking: {e}")))
    }

    /// A copy of the simulated /home (the simulator has no disk of its own).
    fn snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<()> {
        let env = self
            .load(id)?
            .ok_or_else(|| DriverError::msg("no such container"))?;
        self.work();
        let home = self.home(id, &env.username)?;
        let dir = self.snapshot_dir(id);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        copy_tree(&home, &tmp)?;
        std::fs::rename(&tmp, dir.join(name.as_str()))?;
        Ok(())
    }

    fn snapshots(&self, id: VeId) -> DResult<Vec<SnapshotInfo>> {
        let mut list = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.snapshot_dir(id)) else {
            return Ok(list);
        };
        for e in entries.flatten() {
            let Some(name) = e
                .file_name()
                .to_str()
                .and_then(|n| SnapshotName::parse(n).ok())
            else {
                continue;
            };
            let meta = e.metadata()?;
            list.push(SnapshotInfo {
                name,
                size: tree_bytes(&e.path()),
                created: mtime(&meta),
            });
        }
        list.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(list)
    }

    fn restore_snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<()> {
        let snap = self.snapshot_dir(id).join(name.as_str());
        if !snap.is_dir() {
            return Err(DriverError::msg(format!("no snapshot {name}")));
        }
        self.work();
        let home = self.dir.join(format!("{id}.home"));
        let tmp = self.dir.join(format!("{id}.home.restoring"));
        let _ = std::fs::remove_dir_all(&tmp);
        copy_tree(&snap, &tmp)?;
        if home.exists() {
            std::fs::remove_dir_all(&home)?;
        }
        std::fs::rename(&tmp, &home)?;
        Ok(())
    }

    fn drop_snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<Change> {
        let snap = self.snapshot_dir(id).join(name.as_str());
        if !snap.exists() {
            return Ok(Change::AlreadySo);
        }
        std::fs::remove_dir_all(snap)?;
        Ok(Change::Done)
    }

    fn set_limits(&self, spec: &EnvSpec, limits: &Limits) -> DResult<()> {
        let mut env = self
            .load(spec.id)?
            .ok_or_else(|| super::driver::DriverError::msg("no such container"))?;
        env.limits = *limits;
        self.save(spec.id, &env)
    }

    fn usage(&self, id: VeId) -> DResult<Vec<Counter>> {
        let env = self
            .load(id)?
            .ok_or_else(|| super::driver::DriverError::msg("no such container"))?;
        // Simulated: a running slice holds a tenth of its soft limit and a few processes.
        let mb = 1024 * 1024;
        let held = if env.running {
            env.limits.memory_mb as u64 * mb / 10
        } else {
            0
        };
        let procs = if env.running { 12 } else { 0 };
        Ok(vec![
            Counter {
                resource: "memory".into(),
                held,
                maxheld: held,
                barrier: env.limits.memory_mb as u64 * mb,
                limit: env.limits.memory_limit_mb as u64 * mb,
                failcnt: 0,
            },
            Counter {
                resource: "numproc".into(),
                held: procs,
                maxheld: procs,
                barrier: env.limits.processes as u64,
                limit: env.limits.processes as u64,
                failcnt: 0,
            },
        ])
    }
}

/// Copies a folder's tree (links as links), for the simulator's snapshots.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type()?;
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// Bytes in the regular files under `root`.
fn tree_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root)
        .map(|d| {
            d.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => tree_bytes(&e.path()),
                    Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// A file's modification time, Unix seconds.
pub(crate) fn mtime(meta: &std::fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    meta.mtime()
}
