//! Container specs as the agent last accepted them: what makes every command idempotent.

use std::path::PathBuf;

use super::DriverError;
use crate::domain::VeId;
use crate::slave_link::EnvSpec;

/// Container specs as the agent last accepted them (`state/envs/ID.json`).
pub(super) struct Specs {
    pub(super) dir: PathBuf,
}

impl Specs {
    pub(super) fn path(&self, id: VeId) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub(super) fn get(&self, id: VeId) -> Result<Option<EnvSpec>, DriverError> {
        match std::fs::read(self.path(id)) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| DriverError::msg(format!("stored spec of {id} is damaged: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn put(&self, spec: &EnvSpec) -> Result<(), DriverError> {
        let tmp = self.path(spec.id).with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(spec).expect("serializable"))?;
        std::fs::rename(tmp, self.path(spec.id))?;
        Ok(())
    }

    pub(super) fn remove(&self, id: VeId) -> Result<(), DriverError> {
        for path in [self.path(id), self.power_path(id)] {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    }

    fn power_path(&self, id: VeId) -> PathBuf {
        self.dir.join(format!("{id}.power"))
    }

    /// Whether the master last asked the container to run (`Some(true)`) or to be stopped;
    /// `None` when no agent recorded it (made before agents kept it).
    pub(super) fn wanted_running(&self, id: VeId) -> Result<Option<bool>, DriverError> {
        match std::fs::read_to_string(self.power_path(id)) {
            Ok(s) => Ok(Some(s.trim() == "running")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn set_wanted_running(&self, id: VeId, running: bool) -> Result<(), DriverError> {
        let path = self.power_path(id);
        let tmp = path.with_extension("power-tmp");
        std::fs::write(&tmp, if running { "running\n" } else { "stopped\n" })?;
        std::fs::rename(tmp, path)?;
        Ok(())
    }

    pub(super) fn all(&self) -> Result<Vec<EnvSpec>, DriverError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".json").and_then(|n| VeId::parse(n).ok()) {
                if let Some(spec) = self.get(id)? {
                    out.push(spec);
                }
            }
        }
        out.sort_by_key(|s| s.id);
        Ok(out)
    }
}
