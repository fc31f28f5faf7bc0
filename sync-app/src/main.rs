//! sync-app's command line; see `sync-app --help`, the `cli` module (the commands and
//! their settings) and the `commands` module (what each does).

use std::process::ExitCode;

use sync_app::cli::{self, Parsed};
use sync_app::telemetry::Terminal;

#[tokio::main]
async fn main() -> ExitCode {
    // `args_os`: an argument or variable that is not UTF-8 is an error message, not a panic.
    let cli::Invocation { command, settings } = match cli::parse(std::env::args_os()) {
        Parsed::Run(invocation) => *invocation,
        Parsed::Exit(code) => return code,
    };
    let terminal = Terminal::stderr();
    if let Err(e) = terminal.install(command.default_log_filter()) {
        eprintln!("warning: logging is not set up: {e}");
    }
    tracing::debug!(?settings, "configuration");
    cli::execute(command, &settings, &terminal).await
}
