//! The `swarm-e2e` binary: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    swarm_e2e::cli::main()
}
