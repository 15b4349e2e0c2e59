//! `slices-agent`: the daemon on each slave host. Its protocol and drivers are built in the
//! agent issue; until then it says so instead of pretending to run.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    eprintln!("slices-agent: not built yet (see docs/architecture.md, \"The agent\")");
    std::process::ExitCode::from(2)
}
