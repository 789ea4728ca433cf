//! The `nanny-remediator` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    nanny_common::entrypoint::service_main(nanny_remediator::BINARY, nanny_remediator::run)
}
