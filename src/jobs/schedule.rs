//! The periodic work, in one table: what is queued how often (from the settings), per node or
//! once. The claim loop asks `Schedule::due` each time it wakes and queues what is due, in
//! one transaction.

use super::{JobKind, RunnerConfig};
use crate::error::Result;
use crate::records::jobs as queue;
use crate::store::now;

/// One line of the table.
struct Periodic {
    kind: JobKind,
    /// How often, in seconds, from the settings (0: never).
    every: fn(&RunnerConfig) -> i64,
    /// One job per enabled node, or one in all.
    per_node: bool,
    /// Also right at start (the gateway is put right once when the master starts).
    at_start: bool,
}

const TABLE: &[Periodic] = &[
    Periodic {
        kind: JobKind::NodeHealth,
        every: |c| c.health_secs,
        per_node: true,
        at_start: false,
    },
    Periodic {
        kind: JobKind::TemplateSync,
        every: |c| c.template_sync_secs,
        per_node: true,
        at_start: false,
    },
    Periodic {
        kind: JobKind::Usage,
        every: |c| c.usage_secs,
        per_node: true,
        at_start: false,
    },
    Periodic {
        kind: JobKind::Reconcile,
        every: |c| c.reconcile_secs,
        per_node: true,
        at_start: false,
    },
    Periodic {
        kind: JobKind::Gateway,
        every: |c| c.gateway_sync_secs,
        per_node: false,
        at_start: true,
    },
    // Slices' ends; at start too, so a master that was down catches up at once.
    Periodic {
        kind: JobKind::Term,
        every: |c| c.term_check_secs,
        per_node: false,
        at_start: true,
    },
    // The directory's accounts looked up again (when there is a directory to ask).
    Periodic {
        kind: JobKind::Directory,
        every: |c| c.directory_check_secs,
        per_node: false,
        at_start: false,
    },
];

/// When each line last ran (in this process).
pub struct Schedule {
    last: Vec<i64>,
}

impl Schedule {
    /// Starts the clock: lines that run at start are due at once, the others one period on.
    pub fn new() -> Schedule {
        let t = now();
        Schedule {
            last: TABLE
                .iter()
                .map(|p| if p.at_start { 0 } else { t })
                .collect(),
        }
    }

    /// The kinds due now (each marked as run).
    pub fn due(&mut self, cfg: &RunnerConfig) -> Vec<JobKind> {
        let t = now();
        let mut due = Vec::new();
        for (p, last) in TABLE.iter().zip(self.last.iter_mut()) {
            let every = (p.every)(cfg);
            if every > 0 && t - *last >= every {
                *last = t;
                due.push(p.kind);
            }
        }
        due
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::new()
    }
}

/// Queues the due kinds: per enabled node (unless one is already waiting), or once; and
/// prunes health checks older than an hour with their log lines.
pub fn queue_due(tx: &rusqlite::Transaction, due: &[JobKind]) -> Result<()> {
    let t = now();
    let nodes = crate::records::nodes::list(tx)?;
    for kind in due {
        let per_node = TABLE.iter().any(|p| p.kind == *kind && p.per_node);
        if per_node {
            for node in nodes.iter().filter(|n| n.enabled) {
                queue::enqueue_for_node(tx, *kind, node.id, t)?;
            }
        } else if *kind == JobKind::Gateway {
            queue::enqueue_gateway(tx, None)?;
        } else {
            queue::enqueue_once(tx, *kind)?;
        }
    }
    if due.contains(&JobKind::NodeHealth) {
        queue::prune_checks(tx, t - 3600)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_periodic_kind_is_either_per_node_or_one_in_all() {
        for p in TABLE {
            assert!(
                p.per_node
                    || [JobKind::Gateway, JobKind::Term, JobKind::Directory].contains(&p.kind),
                "{:?}",
                p.kind
            );
        }
    }
}
