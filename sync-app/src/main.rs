//! sync-app's command line; see `sync-app --help` and the `commands` module.

use std::process::ExitCode;

use sync_app::configuration::Settings;
use sync_app::{cli, commands};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The demo talks to its in-process fake ERP without TLS by design: tiberius's warning
    // about it would repeat at every sync.
    let default_filter = if args.first().is_some_and(|c| c == "demo") {
        "info,sqlx=warn,tiberius=error,sea_orm_migration=warn"
    } else {
        "info,sqlx=warn,tiberius=warn,sea_orm_migration=warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match cli::parse(&args) {
        Ok(cli) => cli,
        Err(message) if message.is_empty() => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::from_map(&cli.environment(std::env::vars().collect())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing::debug!(?settings, "configuration");
    let result = match cli.command.as_str() {
        "migrate" => commands::migrate(&settings).await,
        "prune" => commands::prune(&settings, cli.args.first().map(String::as_str)).await,
        "check" => match commands::check(&settings).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        "sync" => match commands::sync(&settings).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        "serve" => commands::serve(&settings).await,
        "demo" => commands::demo(&settings).await,
        "fake-erp" => commands::fake_erp(&cli).await,
        _ => unreachable!("cli::parse accepts only known commands"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A configuration error is the user's to fix: exit 2, the message only.
            if let Some(config) = e.downcast_ref::<sync_app::configuration::ConfigError>() {
                eprintln!("error: {config}");
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
