//! `nanny-fault`: fails on purpose, the way real workloads do, so tests on
//! a real node see real kubelet and kernel behaviour. Each mode is chosen
//! by flags or the matching `NANNY_FAULT_*` environment variables:
//!
//! - `exit`: exits with `--exit-code` after `--after` seconds (a crash
//!   loop under a Deployment);
//! - `memory`: touches `--mib` MiB, then `--grow-mib-per-sec` more each
//!   second (a leak), staying up while the limit allows (an OOM kill when
//!   it does not);
//! - `serve`: HTTP on `--port`: `/ready` answers 503 until `--ready-after`
//!   seconds (a slow start), then 200; `/healthz` answers 200 until
//!   `--unhealthy-after` seconds, then 500 (a failing liveness probe).

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    process::ExitCode,
    time::{Duration, Instant},
};

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Exit,
    Memory,
    Serve,
}

#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// What to do.
    #[arg(long, env = "NANNY_FAULT_MODE", value_enum)]
    mode: Mode,
    /// exit: the exit code.
    #[arg(long, env = "NANNY_FAULT_EXIT_CODE", default_value_t = 1)]
    exit_code: u8,
    /// exit: seconds to run first.
    #[arg(long, env = "NANNY_FAULT_AFTER", default_value_t = 0.0)]
    after: f64,
    /// memory: MiB to allocate and touch at start.
    #[arg(long, env = "NANNY_FAULT_MIB", default_value_t = 0)]
    mib: usize,
    /// memory: MiB more each second.
    #[arg(long, env = "NANNY_FAULT_GROW_MIB_PER_SEC", default_value_t = 0)]
    grow_mib_per_sec: usize,
    /// serve: the port.
    #[arg(long, env = "NANNY_FAULT_PORT", default_value_t = 8080)]
    port: u16,
    /// serve: seconds before `/ready` answers 200.
    #[arg(long, env = "NANNY_FAULT_READY_AFTER", default_value_t = 0.0)]
    ready_after: f64,
    /// serve: seconds after which `/healthz` answers 500 (never when absent).
    #[arg(long, env = "NANNY_FAULT_UNHEALTHY_AFTER")]
    unhealthy_after: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    for (name, value) in [
        ("--after", args.after),
        ("--ready-after", args.ready_after),
        ("--unhealthy-after", args.unhealthy_after.unwrap_or(0.0)),
    ] {
        if !(0.0..=86_400.0).contains(&value) {
            eprintln!("nanny-fault: {name} must be between 0 and 86400 seconds, not {value}");
            return ExitCode::from(2);
        }
    }
    println!("nanny-fault: {:?}", args.mode);
    match args.mode {
        Mode::Exit => {
            std::thread::sleep(Duration::from_secs_f64(args.after));
            println!("nanny-fault: exiting with {}", args.exit_code);
            ExitCode::from(args.exit_code)
        }
        Mode::Memory => memory(args.mib, args.grow_mib_per_sec),
        Mode::Serve => serve(&args),
    }
}

const MIB: usize = 1 << 20;

/// Allocates and touches `mib` MiB, then `grow` more each second, forever.
fn memory(mib: usize, grow: usize) -> ExitCode {
    let mut held: Vec<Vec<u8>> = Vec::new();
    // Non-zero bytes: every page is really backed.
    held.extend((0..mib).map(|_| vec![0x5a_u8; MIB]));
    println!("nanny-fault: holding {mib} MiB");
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if grow > 0 {
            held.extend((0..grow).map(|_| vec![0x5a_u8; MIB]));
            println!("nanny-fault: holding {} MiB", held.len());
        }
    }
}

fn serve(args: &Args) -> ExitCode {
    let listener = match TcpListener::bind(("0.0.0.0", args.port)) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("nanny-fault: cannot listen on port {}: {error}", args.port);
            return ExitCode::from(2);
        }
    };
    println!("nanny-fault: serving on port {}", args.port);
    let started = Instant::now();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut request = [0u8; 1024];
        let n = stream.read(&mut request).unwrap_or(0);
        let line = String::from_utf8_lossy(&request[..n]);
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        let age = started.elapsed().as_secs_f64();
        let (status, body) = match path {
            "/ready" if age < args.ready_after => ("503 Service Unavailable", "starting"),
            "/ready" => ("200 OK", "ready"),
            "/healthz" if args.unhealthy_after.is_some_and(|at| age >= at) => {
                ("500 Internal Server Error", "unhealthy")
            }
            "/healthz" => ("200 OK", "ok"),
            _ => ("404 Not Found", "not found"),
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    ExitCode::SUCCESS
}
