//! The `lantern` command, built inside the test package so tests can start and SIGKILL it.

fn main() -> std::process::ExitCode {
    lantern::cli_main()
}
