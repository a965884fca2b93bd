//! The command line both service binaries share: `<name> [command]`, `--help`, `--version`.

use std::process::ExitCode;

/// The command a binary was asked to run (the first of `commands` when none is given), or the exit it should make at
/// once: 0 after printing `help` or the version, 2 for an unknown command.
pub fn command(name: &str, version: &str, help: &str, commands: &[&str]) -> Result<String, ExitCode> {
    let default = commands.first().copied().unwrap_or("serve");
    let command = std::env::args().nth(1).unwrap_or_else(|| default.to_owned());
    match command.as_str() {
        "--help" | "-h" | "help" => {
            println!("{help}");
            Err(ExitCode::SUCCESS)
        }
        "--version" | "-V" => {
            println!("{name} {version}");
            Err(ExitCode::SUCCESS)
        }
        known if commands.contains(&known) => Ok(command),
        other => {
            eprintln!("{name}: unknown command `{other}`; try --help");
            Err(ExitCode::from(2))
        }
    }
}
