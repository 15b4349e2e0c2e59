//! `slices`: the master. See `slices --help`.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = slices::cli::Cli::parse();
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
