//! The containers' cgroups: which version the host has, where LXC put a container's cgroup
//! (it renames it when a stale one is in the way), what it uses in beancounter shape, and
//! removing what LXC leaves behind.

use std::path::{Path, PathBuf};

use super::{name, Lxc};
use crate::agent::driver::{Counter, DResult, DriverError};
use crate::argv;
use crate::domain::VeId;

impl Lxc {
    pub(super) fn cgroup_v2(&self) -> bool {
        self.cgroup_root.join("cgroup.controllers").exists()
    }

    pub(super) fn cgroup_dirs_of_hierarchies(&self) -> Vec<PathBuf> {
        if self.cgroup_v2() {
            vec![self.cgroup_root.clone()]
        } else {
            std::fs::read_dir(&self.cgroup_root)
                .map(|entries| entries.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        }
    }

    /// Every cgroup folder LXC may have left for a container: `lxc.payload.NAME` and
    /// `lxc.monitor.NAME`, and the `-1`, `-2`, ... it takes when an old one is in the way, in
    /// every hierarchy.
    pub(super) fn cgroup_dirs(&self, id: VeId) -> Vec<PathBuf> {
        let hierarchies = self.cgroup_dirs_of_hierarchies();
        let ours = |file: &str| {
            ["lxc.payload.", "lxc.monitor."].iter().any(|prefix| {
                file.strip_prefix(prefix)
                    .and_then(|rest| rest.strip_prefix(&name(id)))
                    .is_some_and(|tail| {
                        tail.is_empty()
                            || tail.strip_prefix('-').is_some_and(|n| {
                                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
                            })
                    })
            })
        };
        let mut out = Vec::new();
        for h in hierarchies {
            if let Ok(entries) = std::fs::read_dir(&h) {
                for e in entries.flatten() {
                    if ours(&e.file_name().to_string_lossy()) {
                        out.push(e.path());
                    }
                }
            }
        }
        out
    }

    /// The cgroup a running container's init is in, per controller (`memory`, `pids`, or ""
    /// for cgroup v2), as a path under the cgroup root. LXC names it `lxc.payload.NAME`, but
    /// takes `lxc.payload.NAME-1`, `-2`, ... when a stale one is in the way: ask the kernel.
    pub(super) fn live_cgroup(&self, id: VeId, controller: &str) -> PathBuf {
        let fallback = format!("lxc.payload.{}", name(id));
        let pid = self
            .lxc("lxc-info", id, argv!["-p", "-H"])
            .ok()
            .filter(|o| o.code == 0)
            .and_then(|o| o.stdout.trim().parse::<u32>().ok());
        let top = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/cgroup")).ok())
            .and_then(|text| {
                text.lines().find_map(|line| {
                    let mut parts = line.splitn(3, ':');
                    let (_, ctls, path) = (parts.next()?, parts.next()?, parts.next()?);
                    let wanted = if controller.is_empty() {
                        ctls.is_empty()
                    } else {
                        ctls.split(',').any(|c| c == controller)
                    };
                    // The first component: init may sit in a child (init.scope) of it.
                    let first = path.trim_start_matches('/').split('/').next()?;
                    (wanted && first.starts_with("lxc.payload.")).then(|| first.to_string())
                })
            })
            .unwrap_or(fallback);
        match controller {
            "" => self.cgroup_root.join(top),
            c => self.cgroup_root.join(c).join(top),
        }
    }

    pub(super) fn read_u64(path: &Path) -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                let s = s.trim();
                if s == "max" {
                    Some(u64::MAX)
                } else {
                    s.parse().ok()
                }
            })
            .unwrap_or(0)
    }

    pub(super) fn keyed(path: &Path, key: &str) -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0)
    }

    pub(super) fn read_usage(&self, id: VeId) -> DResult<Vec<Counter>> {
        if self.cgroup_v2() {
            let d = self.live_cgroup(id, "");
            let current = Self::read_u64(&d.join("memory.current"));
            return Ok(vec![
                Counter {
                    resource: "memory".into(),
                    held: current,
                    maxheld: Self::read_u64(&d.join("memory.peak")).max(current),
                    barrier: Self::read_u64(&d.join("memory.high")),
                    limit: Self::read_u64(&d.join("memory.max")),
                    failcnt: Self::keyed(&d.join("memory.events"), "max "),
                },
                Counter {
                    resource: "numproc".into(),
                    held: Self::read_u64(&d.join("pids.current")),
                    maxheld: Self::read_u64(&d.join("pids.peak")),
                    barrier: Self::read_u64(&d.join("pids.max")),
                    limit: Self::read_u64(&d.join("pids.max")),
                    failcnt: Self::keyed(&d.join("pids.events"), "max "),
                },
            ]);
        }
        let m = self.live_cgroup(id, "memory");
        let p = self.live_cgroup(id, "pids");
        if !m.is_dir() {
            return Err(DriverError::msg(format!(
                "container {id} is not running (no cgroup)"
            )));
        }
        let held = Self::read_u64(&p.join("pids.current"));
        Ok(vec![
            Counter {
                resource: "memory".into(),
                held: Self::read_u64(&m.join("memory.usage_in_bytes")),
                maxheld: Self::read_u64(&m.join("memory.max_usage_in_bytes")),
                barrier: Self::read_u64(&m.join("memory.soft_limit_in_bytes")),
                limit: Self::read_u64(&m.join("memory.limit_in_bytes")),
                failcnt: Self::read_u64(&m.join("memory.failcnt")),
            },
            Counter {
                resource: "numproc".into(),
                held,
                maxheld: held,
                barrier: Self::read_u64(&p.join("pids.max")),
                limit: Self::read_u64(&p.join("pids.max")),
                failcnt: Self::keyed(&p.join("pids.events"), "max "),
            },
        ])
    }
}

/// Removes an emptied cgroup and the cgroups under it (children first: a cgroup's files are
/// not removable, only its folder once it has no children and no processes).
pub(super) fn rmdir_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_cgroup(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
