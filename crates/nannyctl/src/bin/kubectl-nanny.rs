//! `kubectl-nanny`: the same CLI as `nannyctl`, found by kubectl as the plugin
//! `kubectl nanny` when this binary is on `PATH`.

fn main() -> std::process::ExitCode {
    nannyctl::main("kubectl nanny")
}
