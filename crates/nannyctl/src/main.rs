//! The `nannyctl` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    nannyctl::main("nannyctl")
}
