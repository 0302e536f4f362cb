//! `lantern`: one command for the whole system.

fn main() -> std::process::ExitCode {
    lantern::cli_main()
}
