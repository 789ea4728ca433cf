//! The shared `main` of every service binary: flags, config, telemetry,
//! runtime, listeners, then the service's `run`.

use std::{ffi::OsString, fmt::Display, future::Future, path::PathBuf, process::ExitCode};

use crate::{
    config::{self, ServiceConfig},
    server::{self, Listeners},
    telemetry,
};

/// Exit code for an invalid config or command line.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure after start-up.
pub const EXIT_FAILURE: u8 = 1;

/// Parsed command line of a service binary.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run { config_file: Option<PathBuf> },
    Version,
    Help,
}

fn parse_args(
    args: impl IntoIterator<Item = OsString>,
    env_file: Option<OsString>,
) -> Result<Command, String> {
    let mut args = args.into_iter().skip(1);
    let mut config_file = env_file.map(PathBuf::from);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--version" | "-V") => return Ok(Command::Version),
            Some("--help" | "-h") => return Ok(Command::Help),
            Some("--config" | "-c") => {
                config_file = Some(args.next().ok_or("--config needs a file path")?.into());
            }
            Some(other) if other.starts_with("--config=") => {
                config_file = Some(PathBuf::from(&other["--config=".len()..]));
            }
            _ => return Err(format!("unexpected argument {arg:?} (try --help)")),
        }
    }
    Ok(Command::Run { config_file })
}

/// Runs a service binary to completion and returns its exit code.
///
/// `run` receives the validated config, the bound listeners and a future
/// that resolves on SIGTERM/SIGINT.
pub fn service_main<C, F, Fut, E>(binary: &'static str, run: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, Listeners, std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let command = match parse_args(
        std::env::args_os(),
        std::env::var_os(config::CONFIG_FILE_ENV),
    ) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("{binary}: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let config_file = match command {
        Command::Version => {
            println!("{binary} {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Help => {
            println!(
                "{binary} {}\n\nUSAGE: {binary} [--config FILE]\n\nConfig layers: defaults < FILE (or ${}) < NANNY_* environment\n(nested keys joined by `__`, e.g. NANNY_SERVER__GRPC_ADDR=0.0.0.0:50051).",
                env!("CARGO_PKG_VERSION"),
                config::CONFIG_FILE_ENV
            );
            return ExitCode::SUCCESS;
        }
        Command::Run { config_file } => config_file,
    };

    // A bad config is one clear line and a non-zero exit, before anything starts.
    let config: C = match config::load(config_file.as_deref(), utf8_env()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{binary}: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Telemetry before the runtime: the OTLP exporter's blocking client must
    // not be created inside it.
    let _telemetry = match telemetry::init(binary, config.telemetry()) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{binary}: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server().worker_threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{binary}: failed to start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };

    let result = runtime.block_on(async move {
        let listeners = Listeners::bind(config.server())
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            grpc_addr = %listeners.grpc_addr().map_err(|e| e.to_string())?,
            http_addr = %listeners.http_addr().map_err(|e| e.to_string())?,
            "Listening."
        );
        run(config, listeners, Box::pin(server::shutdown_signal()))
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Service failed.");
            eprintln!("{binary}: {error}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The environment's UTF-8 variables (`std::env::vars` would panic on others;
/// a non-UTF-8 `NANNY_*` value could not be a valid setting anyway).
fn utf8_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        std::iter::once("bin")
            .chain(list.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn parses_flags() {
        assert_eq!(
            parse_args(args(&[]), None),
            Ok(Command::Run { config_file: None })
        );
        assert_eq!(
            parse_args(args(&["--config", "a.yaml"]), None),
            Ok(Command::Run {
                config_file: Some("a.yaml".into())
            })
        );
        assert_eq!(
            parse_args(args(&["--config=b.yaml"]), Some("env.yaml".into())),
            Ok(Command::Run {
                config_file: Some("b.yaml".into())
            })
        );
        assert_eq!(
            parse_args(args(&[]), Some("env.yaml".into())),
            Ok(Command::Run {
                config_file: Some("env.yaml".into())
            })
        );
        assert_eq!(parse_args(args(&["--version"]), None), Ok(Command::Version));
        assert!(parse_args(args(&["--config"]), None).is_err());
        assert!(
            parse_args(args(&["--bogus"]), None)
                .unwrap_err()
                .contains("--bogus")
        );
    }
}
