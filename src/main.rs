//! The `otel-injector` binary: crypto provider, CLI, logging (and, for `serve`, tracing), then the command.

use std::process::ExitCode;

use anyhow::anyhow;
use otel_injector::cli::{self, Command, ServeArgs, audit, certs, env, preview, serve};
use otel_injector::telemetry::{self, LogFormat, traces::Setup};
use otel_injector::webhook::tls;

fn main() -> ExitCode {
    tls::install_crypto_provider();
    let cli = match cli::parse(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let log = (cli.log.log_format, cli.log.log_level.as_deref().or(rust_log.as_deref()));
    let result = match cli.command {
        Command::Serve(args) => serve_traced(args, log),
        Command::Preview(args) => logged(log).and_then(|()| preview::run_cli(&args)),
        Command::Certs(args) => logged(log).and_then(|()| certs::run(&args)),
        Command::Env(args) => logged(log).and_then(|()| env::run(&args)),
        // Exit 1 when something was found (to gate a pipeline), 2 when the audit could not run.
        Command::Audit(args) => {
            return match logged(log).and_then(|()| audit::run(&args)) {
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

/// Logs for a command (warnings and errors unless `--log-level` says otherwise), no traces.
fn logged((format, level): (LogFormat, Option<&str>)) -> anyhow::Result<()> {
    telemetry::init(format, level, "warn", None).map(drop).map_err(|e| anyhow!(e))
}

/// `serve`, with its traces set up by the `OTEL_*` variables inside the runtime (the gRPC exporter lives there).
fn serve_traced(args: ServeArgs, (format, level): (LogFormat, Option<&str>)) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let telemetry = {
        let _runtime = rt.enter();
        Setup::from_vars(|name| std::env::var(name).ok())
            .and_then(|setup| telemetry::init(format, level, "info", Some(setup)))
            .map_err(|e| anyhow!(e))?
    };
    rt.block_on(serve::run(args, telemetry))
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
