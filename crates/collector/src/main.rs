//! The `nanny-collector` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    nanny_common::entrypoint::service_main(nanny_collector::BINARY, nanny_collector::run)
}
