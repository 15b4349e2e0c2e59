//! The simulator: containers that exist only as small files, each operation taking a set
//! time. For the embedded default, demos and scale tests. It says it is simulated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::driver::{Change, CheckItem, Counter, DResult, Driver, EnvState};
use crate::domain::{Limits, VeId};
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
        let home = self.dir.join(format!("{id}.home"));
        if home.exists() {
            std::fs::remove_dir_all(home)?;
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
