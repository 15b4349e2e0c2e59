//! OpenVZ through `vzctl`, the seed's own commands. No OpenVZ kernel exists on the machines
//! this is built on, so its tests check the exact argument vectors it runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::driver::{Change, CheckItem, Counter, DResult, Driver, DriverError, EnvState};
use super::run::Runner;
use crate::argv;
use crate::domain::{Limits, VeId};
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
