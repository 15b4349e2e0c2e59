//! Running host tools: always an argument vector, never a shell, with a time limit. The
//! `Runner` trait lets the vzctl driver be checked against the exact commands it would run on
//! an OpenVZ host, which cannot exist here.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::driver::{DResult, DriverError};

/// What a finished command left.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The output, or the failure as the lines of standard error.
    pub fn ok(self, what: &str) -> DResult<Output> {
        if self.code == 0 {
            Ok(self)
        } else {
            let mut lines: Vec<String> = self
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string)
                .collect();
            if lines.is_empty() {
                lines = self
                    .stdout
                    .lines()
                    .rev()
                    .take(5)
                    .map(str::to_string)
                    .collect();
                lines.reverse();
            }
            lines.insert(0, format!("{what} failed (exit {})", self.code));
            Err(DriverError { lines })
        }
    }
}

pub trait Runner: Send + Sync {
    /// Runs `program` with `args`, feeding `stdin` if given.
    fn run_with(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> DResult<Output>;

    fn run(&self, program: &str, args: &[String]) -> DResult<Output> {
        self.run_with(program, args, None)
    }

    /// Runs `program` with standard input read from the file `stdin` and standard output
    /// written to the file `stdout` (created or emptied): bulk data (an archive) never passes
    /// through memory. The `Output` carries standard error only.
    fn run_files(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&Path>,
        stdout: Option<&Path>,
    ) -> DResult<Output>;

    /// Runs `program` with its standard output written into `sink` as it comes (an archive
    /// compressed on the way to its file). The `Output` carries standard error only.
    fn run_into(&self, program: &str, args: &[String], sink: &mut dyn Write) -> DResult<Output>;
}

/// Runs real processes.
pub struct SystemRunner {
    pub timeout: Duration,
}

impl Runner for SystemRunner {
    fn run_with(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> DResult<Output> {
        let input = if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        self.spawn_and_wait(program, args, (input, stdin), Stdio::piped())
    }

    fn run_files(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&Path>,
        stdout: Option<&Path>,
    ) -> DResult<Output> {
        let input = match stdin {
            Some(p) => Stdio::from(std::fs::File::open(p)?),
            None => Stdio::null(),
        };
        let output = match stdout {
            Some(p) => Stdio::from(std::fs::File::create(p)?),
            None => Stdio::null(),
        };
        self.spawn_and_wait(program, args, (input, None), output)
    }

    fn run_into(&self, program: &str, args: &[String], sink: &mut dyn Write) -> DResult<Output> {
        self.copy_out(program, args, sink)
    }
}

impl SystemRunner {
    fn copy_out(&self, program: &str, args: &[String], sink: &mut dyn Write) -> DResult<Output> {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| DriverError::msg(format!("cannot run {program}: {e}")))?;
        let mut out = child.stdout.take().expect("piped");
        let err_t = read_all(child.stderr.take());
        // The time limit: a watchdog kills it if the copy is not over by then.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let pid = child.id().to_string();
        let timeout = self.timeout;
        let watchdog = std::thread::spawn(move || {
            if wait.recv_timeout(timeout) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                // Not yet waited for, so the pid is still this child's.
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
                return true;
            }
            false
        });
        let copied = std::io::copy(&mut out, sink);
        let status = child.wait();
        let _ = done.send(());
        let killed = watchdog.join().unwrap_or(false);
        if killed {
            return Err(too_long(program, self.timeout));
        }
        copied.map_err(|e| DriverError::msg(format!("writing what {program} made: {e}")))?;
        let output = Output {
            code: status?.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: err_t.join().unwrap_or_default(),
        };
        ran(program, args, started, output)
    }

    /// Runs it to the end (or the time limit): `stdin` fed from the bytes if given, standard
    /// output read into `Output` when it is a pipe, standard error always.
    fn spawn_and_wait(
        &self,
        program: &str,
        args: &[String],
        (input, bytes): (Stdio, Option<&[u8]>),
        output: Stdio,
    ) -> DResult<Output> {
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .stdin(input)
            .stdout(output)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| DriverError::msg(format!("cannot run {program}: {e}")))?;
        if let (Some(input), Some(mut pipe)) = (bytes, child.stdin.take()) {
            pipe.write_all(input)?;
        }
        let out_t = read_all(child.stdout.take());
        let err_t = read_all(child.stderr.take());
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(too_long(program, self.timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = Output {
            code: status.code().unwrap_or(-1),
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
        };
        ran(program, args, started, output)
    }
}

/// Reads a pipe to its end on a thread of its own (so that a child filling one pipe never
/// blocks on the other).
fn read_all<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut s);
        }
        s
    })
}

fn too_long(program: &str, timeout: Duration) -> DriverError {
    DriverError::msg(format!(
        "{program} did not finish within {} s and was stopped",
        timeout.as_secs()
    ))
}

/// Logs a finished command and hands its output on.
fn ran(program: &str, args: &[String], started: Instant, output: Output) -> DResult<Output> {
    tracing::debug!(
        program,
        ?args,
        code = output.code,
        ms = started.elapsed().as_millis() as u64,
        "ran"
    );
    Ok(output)
}

/// One recorded command: program, arguments, standard input.
pub type Call = (String, Vec<String>, Option<String>);

/// Records the commands instead of running them, answering from a script of outputs: the
/// stand-in for an OpenVZ host in tests.
#[derive(Default)]
pub struct RecordingRunner {
    pub calls: Mutex<Vec<Call>>,
    /// Answers by program and the start of the argument line; the latest match wins;
    /// anything else succeeds with no output.
    pub answers: Mutex<Vec<(String, String, Output)>>,
}

impl RecordingRunner {
    pub fn answer(&self, program: &str, args_start: &str, out: Output) {
        self.answers
            .lock()
            .unwrap()
            .push((program.into(), args_start.into(), out));
    }

    /// Every command line run so far, joined with spaces (for comparing in tests).
    pub fn lines(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(p, a, _)| {
                std::iter::once(p.clone())
                    .chain(a.iter().cloned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

impl Runner for RecordingRunner {
    /// Recorded with `<FILE` and `>FILE` after the arguments; `FILE` is made, empty.
    fn run_files(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&Path>,
        stdout: Option<&Path>,
    ) -> DResult<Output> {
        if let Some(p) = stdout {
            // As a redirection would: the file is there, empty.
            std::fs::File::create(p)?;
        }
        let mut a = args.to_vec();
        a.extend(stdin.map(|p| format!("<{}", p.display())));
        a.extend(stdout.map(|p| format!(">{}", p.display())));
        self.run_with(program, &a, None)
    }

    /// Recorded with `|` after the arguments; nothing is written into `sink`.
    fn run_into(&self, program: &str, args: &[String], _sink: &mut dyn Write) -> DResult<Output> {
        let mut a = args.to_vec();
        a.push("|".into());
        self.run_with(program, &a, None)
    }

    fn run_with(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> DResult<Output> {
        self.calls.lock().unwrap().push((
            program.to_string(),
            args.to_vec(),
            stdin.map(|s| String::from_utf8_lossy(s).into_owned()),
        ));
        let answers = self.answers.lock().unwrap();
        let line = args.join(" ");
        let found = answers
            .iter()
            .rev()
            .find(|(p, a, _)| p == program && line.starts_with(a.as_str()));
        Ok(found.map(|(_, _, o)| o.clone()).unwrap_or_default())
    }
}

/// Builds an argument vector from anything printable.
#[macro_export]
macro_rules! argv {
    ($($a:expr),* $(,)?) => {{
        let v: Vec<String> = Vec::from([$($a.to_string()),*]);
        v
    }};
}
