//! The `nanny-collector` binary: see the library crate for what it does.

/// Snapshots clone and drop hundreds of thousands of small projections;
/// mimalloc makes that markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nanny_common::entrypoint::service_main(nanny_collector::BINARY, nanny_collector::run)
}
