//! Each slice's own range of host user and group ids: root in slice A is host uid
//! `first + k·65536`, root in slice B another `k`, so no two slices (and nothing on the host)
//! share an id. The range is remembered in the container's own config (`lxc.idmap`), which
//! is the one record of it: allocation reads every config under one lock.

use super::Lxc;
use crate::agent::driver::{DResult, DriverError};
use crate::domain::VeId;

/// Ids per slice: a whole 16-bit range, as Debian's subordinate ids give each user.
pub const PER_SLICE: u32 = 65536;

/// The host ids slices' ranges are taken from: above what `useradd` hands out as subordinate
/// ids (100000 to 600100000) and LXD's default (1000000 onwards), below 2^31 so that no tool
/// sees a negative id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdPool {
    pub first: u32,
    pub slices: u32,
}

impl Default for IdPool {
    fn default() -> Self {
        IdPool {
            first: 1_000_000_000,
            slices: 16384,
        }
    }
}

impl IdPool {
    pub fn check(&self) -> Result<(), String> {
        let end = self.first as u64 + self.slices as u64 * PER_SLICE as u64;
        if self.first < 65536 || self.slices == 0 || end > i32::MAX as u64 {
            return Err(format!(
                "slice ids: first must be at least 65536 and first + slices x 65536 at most \
                 2^31 - 1 (got first {}, slices {})",
                self.first, self.slices
            ));
        }
        Ok(())
    }

    pub fn range(&self, slot: u32) -> u32 {
        self.first + slot * PER_SLICE
    }

    /// The host ids it spans, for `/etc/subuid` (`root:FIRST:COUNT`).
    pub fn count(&self) -> u64 {
        self.slices as u64 * PER_SLICE as u64
    }
}

/// The first host uid of a config's id map, if it has one (`lxc.idmap = u 0 FIRST 65536`).
pub(super) fn mapped_root(config: &str) -> Option<u32> {
    config.lines().find_map(|l| {
        let rest = l.strip_prefix("lxc.idmap = u 0 ")?;
        rest.split(' ').next()?.parse().ok()
    })
}

impl Lxc {
    /// The id range for a new container: its own if its config has one, else the lowest
    /// free one. The caller holds `ids_lock` until the config is written.
    pub(super) fn allocate_ids(&self, id: VeId) -> DResult<u32> {
        if let Ok(text) = std::fs::read_to_string(self.dir(id).join("config")) {
            if let Some(first) = mapped_root(&text) {
                return Ok(first);
            }
        }
        let mut used = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&self.lxc_path)?.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path().join("config")) {
                if let Some(first) = mapped_root(&text) {
                    used.insert(first);
                }
            }
        }
        (0..self.ids.slices)
            .map(|slot| self.ids.range(slot))
            .find(|first| !used.contains(first))
            .ok_or_else(|| {
                DriverError::msg(format!(
                    "all {} id ranges of this node are taken: raise `slice_ids.slices` in agent.toml",
                    self.ids.slices
                ))
            })
    }
}

impl Lxc {
    /// An entry of `/etc/subuid` or `/etc/subgid` that hands some of the slices' ids to
    /// someone else (a user's rootless containers would share host ids with a slice), said
    /// plainly; root's own entries are the operator's reservation and fine.
    pub(super) fn subordinate_overlap(&self) -> Option<String> {
        let (lo, hi) = (
            self.ids.first as u64,
            self.ids.first as u64 + self.ids.count(),
        );
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for line in text.lines() {
                let mut f = line.split(':');
                let (Some(who), Some(start), Some(count)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                let (Ok(start), Ok(count)) = (start.parse::<u64>(), count.parse::<u64>()) else {
                    continue;
                };
                if who != "root" && start < hi && lo < start + count {
                    return Some(format!(
                        "{file}: `{line}` overlaps the slices' ids {lo} to {}: move it, or \
                         set `slice_ids` in agent.toml",
                        hi - 1
                    ));
                }
            }
        }
        None
    }
}
