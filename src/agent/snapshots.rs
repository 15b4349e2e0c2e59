//! The agent's side of snapshots (`snapshot`, `list_snapshots`, `restore_snapshot`,
//! `drop_snapshot`): checks what is asked against what the node has, and stops and starts the
//! slice around a restore; the driver keeps the disk images.

use serde_json::json;

use super::driver::{Change, DriverError, EnvState};
use super::Agent;
use crate::domain::{SnapshotName, VeId};
use crate::slave_link::{code, Reply};

impl Agent {
    pub(super) fn take_snapshot(
        &self,
        id: VeId,
        name: &SnapshotName,
    ) -> Result<Reply, DriverError> {
        if let Err(r) = self.existing(id)? {
            return Ok(r);
        }
        if self.driver.snapshots(id)?.iter().any(|s| &s.name == name) {
            return Ok(Reply::error(
                code::CONFLICT,
                format!("container {id} has a snapshot named {name} already"),
            ));
        }
        self.driver.snapshot(id, name)?;
        let made = self
            .driver
            .snapshots(id)?
            .into_iter()
            .find(|s| &s.name == name)
            .ok_or_else(|| DriverError::msg(format!("snapshot {name} was not kept")))?;
        Ok(Reply::ok(vec!["made".into(), json!(made)]))
    }

    pub(super) fn list_snapshots(&self, id: VeId) -> Result<Reply, DriverError> {
        if let Err(r) = self.existing(id)? {
            return Ok(r);
        }
        let list = self.driver.snapshots(id)?;
        Ok(Reply::ok(list.into_iter().map(|s| json!(s)).collect()))
    }

    /// Stops the slice if it runs, puts the disk back, gives it its plan's disk again (the
    /// plan may have grown since), and starts it again if it ran.
    pub(super) fn restore_snapshot(
        &self,
        id: VeId,
        name: &SnapshotName,
    ) -> Result<Reply, DriverError> {
        let spec = match self.existing(id)? {
            Ok(s) => s,
            Err(r) => return Ok(r),
        };
        if !self.driver.snapshots(id)?.iter().any(|s| &s.name == name) {
            return Ok(Reply::error(
                code::NOT_FOUND,
                format!("container {id} has no snapshot named {name}"),
            ));
        }
        let ran = self.driver.state(id)? == EnvState::Running;
        if ran {
            self.driver.stop(id)?;
        }
        self.driver.restore_snapshot(id, name)?;
        self.driver.set_limits(&spec, &spec.limits)?;
        if ran {
            self.driver.start(&spec)?;
        }
        Ok(Reply::ok(vec!["restored".into()]))
    }

    pub(super) fn drop_snapshot(
        &self,
        id: VeId,
        name: &SnapshotName,
    ) -> Result<Reply, DriverError> {
        if let Err(r) = self.existing(id)? {
            return Ok(r);
        }
        Ok(Reply::ok(vec![
            match self.driver.drop_snapshot(id, name)? {
                Change::AlreadySo => "absent".into(),
                Change::Done => "dropped".into(),
            },
        ]))
    }
}
