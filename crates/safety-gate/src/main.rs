//! The `nanny-safety-gate` binary: see the library crate for what it does.

fn main() -> std::process::ExitCode {
    nanny_common::entrypoint::service_main(nanny_safety_gate::BINARY, nanny_safety_gate::run)
}
