//! The `otel-injector` binary: crypto provider, CLI, logging, then the command.

use std::process::ExitCode;

use otel_injector::cli::{self, Command, audit, certs, preview, serve};
use otel_injector::{telemetry, webhook::tls};

fn main() -> ExitCode {
    tls::install_crypto_provider();
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let default_filter = if matches!(cli.command, Command::Serve(_)) { "info" } else { "warn" };
    if let Err(e) = telemetry::init(cli.log.log_format, cli.log.log_level.as_deref(), default_filter) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Command::Serve(args) => {
            tokio::runtime::Runtime::new().map_err(anyhow::Error::from).and_then(|rt| rt.block_on(serve::run(args)))
        }
        Command::Preview(args) => preview::run_cli(&args),
        Command::Certs(args) => certs::run(&args),
        // Exit 1 when something was found (to gate a pipeline), 2 when the audit could not run.
        Command::Audit(args) => {
            return match audit::run(&args) {
                Ok(found) => ExitCode::from(u8::from(found)),
                Err(e) => {
                    eprintln!("error: {}", report(&e));
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause said once (a message that already ends with its cause's text,
/// as `cannot read X: No such file…` does, is not followed by it again).
fn report(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.is_empty() {
            line = text;
        } else if !line.ends_with(&text) {
            line = format!("{line}: {text}");
        }
    }
    line
}
