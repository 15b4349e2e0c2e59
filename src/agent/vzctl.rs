//! OpenVZ through `vzctl`, the seed's own commands. No OpenVZ kernel exists on the machines
//! this is built on, so its tests check the exact argument vectors it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::driver::{
    Change, CheckItem, Counter, DResult, Driver, DriverError, EnvState, SnapshotInfo,
};
use super::run::Runner;
use crate::argv;
use crate::domain::{Limits, SnapshotName, VeId};
use crate::slave_link::EnvSpec;

/// Where the OpenVZ tools and files are.
#[derive(Debug, Clone)]
pub struct VzPaths {
    pub vzctl: String,
    pub beancounters: PathBuf,
    /// Where `vzctl mount ID` shows a VE's files (`ROOT/ID`).
    pub root: PathBuf,
}

impl Default for VzPaths {
    fn default() -> Self {
        VzPaths {
            vzctl: "vzctl".into(),
            beancounters: "/proc/user_beancounters".into(),
            root: "/vz/root".into(),
        }
    }
}

pub struct Vzctl {
    paths: VzPaths,
    run: Arc<dyn Runner>,
}

/// `privvmpages` and friends count 4 KiB pages.
const PAGES_PER_MB: u64 = 256;

impl Vzctl {
    pub fn new(paths: VzPaths, run: Arc<dyn Runner>) -> Vzctl {
        Vzctl { paths, run }
    }

    fn vzctl(&self, args: Vec<String>) -> DResult<super::run::Output> {
        let what = format!("vzctl {}", args.first().cloned().unwrap_or_default());
        self.run.run(&self.paths.vzctl, &args)?.ok(&what)
    }

    /// The ploop snapshot id Slices gives snapshot `name` of VE `id`: a UUID made from both,
    /// so the name alone finds it again (`vzctl` knows snapshots by UUID).
    pub fn snapshot_uuid(id: VeId, name: &SnapshotName) -> String {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(format!("slices-snapshot:{id}:{name}"));
        let x: String = h[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{{{}-{}-{}-{}-{}}}",
            &x[0..8],
            &x[8..12],
            &x[12..16],
            &x[16..20],
            &x[20..32]
        )
    }

    /// The `vzctl set` arguments that apply a plan (`--save` keeps them in the config).
    pub fn limit_args(id: VeId, l: &Limits) -> Vec<String> {
        let mut a = argv![
            "set",
            id,
            "--privvmpages",
            format!(
                "{}:{}",
                l.memory_mb as u64 * PAGES_PER_MB,
                l.memory_limit_mb as u64 * PAGES_PER_MB
            ),
            "--numproc",
            format!("{}:{}", l.processes, l.processes),
            "--cpuunits",
            l.cpu_shares,
        ];
        // The plan's disk is a hard limit, as under lxc: barrier and limit alike (no grace
        // period above it).
        let kb = l.disk_limit_mb() as u64 * 1024;
        a.extend(argv!["--diskspace", format!("{kb}:{kb}")]);
        a.push("--save".into());
        a
    }

    /// `vzctl exec2 ID ARGS...` inside the VE, with optional standard input.
    fn exec(&self, id: VeId, args: &[&str], stdin: Option<&[u8]>) -> DResult<super::run::Output> {
        let mut a = argv!["exec2", id];
        a.extend(args.iter().map(|s| s.to_string()));
        self.run.run_with(&self.paths.vzctl, &a, stdin)
    }
}

impl Driver for Vzctl {
    fn kind(&self) -> &'static str {
        "vzctl"
    }

    fn version(&self) -> String {
        self.run
            .run(&self.paths.vzctl, &argv!["--version"])
            .map(|o| o.stdout.trim().to_string())
            .unwrap_or_else(|_| "unknown".into())
    }

    fn check(&self) -> Vec<CheckItem> {
        let v = self.run.run(&self.paths.vzctl, &argv!["--version"]);
        vec![
            CheckItem::new(
                "vzctl",
                matches!(&v, Ok(o) if o.code == 0),
                match &v {
                    Ok(o) => o.stdout.trim().to_string(),
                    Err(e) => e.to_string(),
                },
            ),
            CheckItem::new(
                "OpenVZ kernel (/proc/user_beancounters)",
                self.paths.beancounters.exists(),
                self.paths.beancounters.display().to_string(),
            ),
        ]
    }

    fn create(&self, spec: &EnvSpec, _template: &Path) -> DResult<()> {
        let id = spec.id;
        self.vzctl(argv!["create", id, "--ostemplate", spec.template])?;
        let mut set = argv!["set", id, "--ipadd", spec.ip, "--hostname", spec.hostname];
        for ns in &spec.nameservers {
            set.extend(argv!["--nameserver", ns]);
        }
        if let Some(d) = &spec.search_domain {
            set.extend(argv!["--searchdomain", d]);
        }
        set.push("--save".into());
        self.vzctl(set)?;
        self.vzctl(Self::limit_args(id, &spec.limits))?;
        Ok(())
    }

    fn start(&self, spec: &EnvSpec) -> DResult<Change> {
        let id = spec.id;
        let change = match self.state(id)? {
            EnvState::Running => Change::AlreadySo,
            EnvState::Stopped => {
                self.vzctl(argv!["start", id])?;
                Change::Done
            }
            EnvState::Absent => {
                return Err(DriverError::msg(format!("container {id} does not exist")))
            }
        };
        super::inside::ensure_user(
            &|args: &[&str], stdin: Option<&[u8]>| self.exec(id, args, stdin),
            spec,
        )?;
        Ok(change)
    }

    fn stop(&self, id: VeId) -> DResult<Change> {
        if self.state(id)? != EnvState::Running {
            return Ok(Change::AlreadySo);
        }
        self.vzctl(argv!["stop", id])?;
        Ok(Change::Done)
    }

    fn destroy(&self, _: Option<&EnvSpec>, id: VeId) -> DResult<Change> {
        match self.state(id)? {
            EnvState::Absent => return Ok(Change::AlreadySo),
            EnvState::Running => {
                self.vzctl(argv!["stop", id])?;
            }
            EnvState::Stopped => {}
        }
        self.vzctl(argv!["destroy", id])?;
        Ok(Change::Done)
    }

    fn state(&self, id: VeId) -> DResult<EnvState> {
        // `CTID 101 exist mounted running` / `... exist unmounted down` / `... deleted ...`
        let out = self.vzctl(argv!["status", id])?;
        let words: Vec<&str> = out.stdout.split_whitespace().collect();
        Ok(if words.contains(&"deleted") {
            EnvState::Absent
        } else if words.contains(&"running") {
            EnvState::Running
        } else if words.contains(&"exist") {
            EnvState::Stopped
        } else {
            return Err(DriverError::msg(format!(
                "cannot read vzctl status: {}",
                out.stdout.trim()
            )));
        })
    }

    fn set_limits(&self, spec: &EnvSpec, limits: &Limits) -> DResult<()> {
        self.vzctl(Self::limit_args(spec.id, limits))?;
        Ok(())
    }

    /// A running VE packs its own /home (`vzctl exec2`); a stopped one is mounted and packed
    /// from the host as the lxc driver does, then unmounted.
    fn export_home(&self, id: VeId, out: &Path) -> DResult<()> {
        match self.state(id)? {
            EnvState::Absent => Err(DriverError::msg(format!("container {id} does not exist"))),
            EnvState::Running => super::homes::tar_into(
                self.run.as_ref(),
                &self.paths.vzctl,
                argv![
                    "exec2",
                    id,
                    "tar",
                    "--create",
                    "--numeric-owner",
                    "--one-file-system",
                    "--directory",
                    "/home",
                    "."
                ],
                out,
            ),
            EnvState::Stopped => {
                self.vzctl(argv!["mount", id])?;
                let packed = super::homes::pack_home(
                    self.run.as_ref(),
                    &self.paths.root.join(id.to_string()),
                    out,
                );
                self.vzctl(argv!["umount", id])?;
                packed
            }
        }
    }

    fn import_home(&self, id: VeId, archive: &Path) -> DResult<()> {
        if self.state(id)? != EnvState::Running {
            return Err(DriverError::msg(format!("container {id} is not running")));
        }
        self.run
            .run_files(
                &self.paths.vzctl,
                &{
                    let mut a = argv!["exec2", id];
                    a.extend(super::homes::UNPACK.iter().map(|s| s.to_string()));
                    a
                },
                Some(archive),
                None,
            )?
            .ok("vzctl exec2 tar (unpacking /home)")
            .map(|_| ())
    }

    /// A ploop snapshot of the disk only (`--skip-suspend`: the VE runs on, no memory
    /// dump; `--skip-config`: its config is its own).
    fn snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<()> {
        self.vzctl(argv![
            "snapshot",
            id,
            "--id",
            Self::snapshot_uuid(id, name),
            "--name",
            name,
            "--skip-suspend",
            "--skip-config"
        ])?;
        Ok(())
    }

    /// `vzctl snapshot-list ID -H -o uuid,name,date`: Slices' own (by UUID), oldest first.
    fn snapshots(&self, id: VeId) -> DResult<Vec<SnapshotInfo>> {
        let out = self.vzctl(argv!["snapshot-list", id, "-H", "-o", "uuid,name,date"])?;
        let mut list = Vec::new();
        for line in out.stdout.lines() {
            let mut f = line.split_whitespace();
            let (Some(uuid), Some(name)) = (f.next(), f.next()) else {
                continue;
            };
            let Ok(name) = SnapshotName::parse(name) else {
                continue;
            };
            if uuid != Self::snapshot_uuid(id, &name) {
                continue; // made by someone else
            }
            let date = f.collect::<Vec<_>>().join(" ");
            list.push(SnapshotInfo {
                name,
                size: 0,
                created: crate::clock::parse_time(&date).unwrap_or(0),
            });
        }
        Ok(list)
    }

    /// Switches the stopped VE's disk to the snapshot (`--skip-resume`: it stays stopped).
    fn restore_snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<()> {
        self.vzctl(argv![
            "snapshot-switch",
            id,
            "--id",
            Self::snapshot_uuid(id, name),
            "--skip-resume"
        ])?;
        Ok(())
    }

    fn drop_snapshot(&self, id: VeId, name: &SnapshotName) -> DResult<Change> {
        if !self.snapshots(id)?.iter().any(|s| &s.name == name) {
            return Ok(Change::AlreadySo);
        }
        self.vzctl(argv![
            "snapshot-delete",
            id,
            "--id",
            Self::snapshot_uuid(id, name)
        ])?;
        Ok(Change::Done)
    }

    fn usage(&self, id: VeId) -> DResult<Vec<Counter>> {
        let text = std::fs::read_to_string(&self.paths.beancounters).map_err(|e| {
            DriverError::msg(format!(
                "cannot read {}: {e}",
                self.paths.beancounters.display()
            ))
        })?;
        let all = super::beancounters::parse(&text).map_err(|e| DriverError::msg(e.to_string()))?;
        Ok(all.get(&id.get()).cloned().unwrap_or_default())
    }
}
