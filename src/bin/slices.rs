//! `slices`: the master. See `slices --help`.
#![deny(unsafe_code)]

use clap::Parser;

/// How often freed memory is given back to the system.
const GIVE_BACK_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

/// glibc's malloc keeps what a burst freed (a restart's gateway run over every user, log-ins
/// hashing at once) in its per-thread arenas, counted as the process's memory until reused:
/// 113 MB idle at 100,000 slices, 33 MB after `malloc_trim`. The only unsafe code in Slices: a
/// call with no arguments that points at nothing.
#[allow(unsafe_code)]
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes a size and touches only the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn main() -> std::process::ExitCode {
    let cli = slices::cli::Cli::parse();
    std::thread::Builder::new()
        .name("give-back".into())
        .spawn(|| loop {
            std::thread::sleep(GIVE_BACK_EVERY);
            give_back_freed_memory();
        })
        .ok();
    // The reader went away (`slices gateway runs | head`): end quietly, with the status a
    // program stopped by SIGPIPE has, instead of a panic message.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    // The server logs what it does; a one-shot command prints its own result, and its log
    // says only what went wrong (RUST_LOG asks for more).
    let default_filter = if matches!(cli.command, slices::cli::Command::Serve { .. }) {
        "info,actix_server=warn"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        // A log that cannot be written (its disk full) loses lines; it never stops the
        // service (reporting the failure on stderr would panic in the request being served).
        .log_internal_errors(false)
        // Colours only for a person at a terminal: a log file or the journal gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match actix_web::rt::System::new().block_on(slices::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
