//! One trait for the ways a host runs containers: `lxc` (real), `vzctl` (OpenVZ, the seed's
//! own) and `sim` (a simulator). The agent checks every argument before a driver sees it.

use std::path::Path;

use serde::Serialize;

use crate::domain::{Limits, SnapshotName, VeId};
use crate::slave_link::EnvSpec;

/// Why a driver step failed: the lines of standard error, or one sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines.join("\n"))]
pub struct DriverError {
    pub lines: Vec<String>,
}

impl DriverError {
    pub fn msg(m: impl Into<String>) -> DriverError {
        DriverError {
            lines: vec![m.into()],
        }
    }
}

impl From<std::io::Error> for DriverError {
    fn from(e: std::io::Error) -> Self {
        DriverError::msg(e.to_string())
    }
}

pub type DResult<T> = Result<T, DriverError>;

/// Whether a step changed anything (every step is idempotent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Done,
    AlreadySo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvState {
    Running,
    Stopped,
    Absent,
}

pub use crate::domain::Counter;

/// One line of `slices-agent check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

impl CheckItem {
    pub fn new(what: &str, ok: bool, detail: impl Into<String>) -> CheckItem {
        CheckItem {
            what: what.into(),
            ok,
            detail: detail.into(),
        }
    }
}

pub trait Driver: Send + Sync {
    /// `lxc`, `vzctl` or `sim`.
    fn kind(&self) -> &'static str;
    /// The version of the container tool (or "simulated").
    fn version(&self) -> String;
    fn simulated(&self) -> bool {
        false
    }
    /// Whether the host has what this driver needs.
    fn check(&self) -> Vec<CheckItem>;
    /// Makes the container from the template, stopped. Called only when it does not exist.
    fn create(&self, spec: &EnvSpec, template: &Path) -> DResult<()>;
    /// Starts it, then makes sure the user exists with exactly `spec.keys` authorized.
    fn start(&self, spec: &EnvSpec) -> DResult<Change>;
    fn stop(&self, id: VeId) -> DResult<Change>;
    /// Stops and removes it, leaving nothing behind.
    fn destroy(&self, spec: Option<&EnvSpec>, id: VeId) -> DResult<Change>;
    fn state(&self, id: VeId) -> DResult<EnvState>;
    fn set_limits(&self, spec: &EnvSpec, limits: &Limits) -> DResult<()>;
    fn usage(&self, id: VeId) -> DResult<Vec<Counter>>;
    /// Whether the container is still of the privileged kind an earlier version made (lxc:
    /// converted at its next start).
    fn privileged(&self, _id: VeId) -> bool {
        false
    }
    /// Writes a gzip'd tar of the container's /home to `out` (owners as the slice sees
    /// them), running or stopped.
    fn export_home(&self, _id: VeId, _out: &Path) -> DResult<()> {
        Err(DriverError::msg(format!(
            "the {} driver cannot export a home",
            self.kind()
        )))
    }
    /// Unpacks such an archive into the running container's /home, over what is there.
    fn import_home(&self, _id: VeId, _archive: &Path) -> DResult<()> {
        Err(DriverError::msg(format!(
            "the {} driver cannot import a home",
            self.kind()
        )))
    }
    /// Takes a snapshot of the container's disk named `name` (not already taken), running
    /// or stopped.
    fn snapshot(&self, _id: VeId, _name: &SnapshotName) -> DResult<()> {
        Err(self.no_snapshots())
    }
    /// The container's snapshots, oldest first.
    fn snapshots(&self, _id: VeId) -> DResult<Vec<SnapshotInfo>> {
        Ok(vec![])
    }
    /// Puts the stopped container's disk back as snapshot `name` has it.
    fn restore_snapshot(&self, _id: VeId, _name: &SnapshotName) -> DResult<()> {
        Err(self.no_snapshots())
    }
    /// Removes snapshot `name` (AlreadySo when there was none).
    fn drop_snapshot(&self, _id: VeId, _name: &SnapshotName) -> DResult<Change> {
        Err(self.no_snapshots())
    }
    fn no_snapshots(&self) -> DriverError {
        DriverError::msg(format!("the {} driver takes no snapshots", self.kind()))
    }
}

/// A snapshot as a node has it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotInfo {
    pub name: SnapshotName,
    /// Bytes it holds on the node's disk (0 when the tool does not say).
    pub size: u64,
    /// When it was taken, Unix seconds.
    pub created: i64,
}
