//! The command line (clap derive): one subcommand per command, each with the settings it
//! reads — a flag, or its environment variable (`--bind 0.0.0.0:3000` is
//! `BIND=0.0.0.0:3000`; the flag wins) — grouped in [`crate::configuration`].
//!
//! [`parse`] turns the process's arguments into a [`Command`] and checked [`Settings`], or
//! prints help, the version or a usage error; [`execute`] runs the command and maps its
//! outcome to the exit code: 0 success, 1 failure (a failed sync or check, an error),
//! 2 usage or configuration error (the message names the flag or variable).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands;
use crate::commands::jobs::JobAction;
use crate::configuration::{
    ConfigError, DatabaseArgs, ErpArgs, OnCommandLine, QueryArgs, ScheduleArgs, ServerArgs, Settings,
    ShutdownArgs, WebArgs,
};
use crate::telemetry::Terminal;

/// Exit code of a usage or configuration error.
pub const USAGE_ERROR: u8 = 2;

/// The usage line.
const USAGE: &str = "sync-app <command> [options]";

/// Every setting, on the top-level help (each command's help lists its own).
const CONFIGURATION: &str = "\
Settings: each is an environment variable and a flag of the commands that read it, named
alike (BIND is --bind); the flag wins, empty values count as unset. `sync-app help <command>`
shows a command's settings.
  DATABASE_URL             sqlite://…, postgres://… or mysql://…
                           (default sqlite://sync-app.db?mode=rwc)
  MSSQL_URL                the ERP's SQL Server, as an ADO connection string
  MSSQL_ACCESS_TOKEN       an Entra ID access token for it (environment only)
  MSSQL_ACCESS_TOKEN_FILE  or a file holding one
  SOURCE_QUERY             the SELECT returning the open-order columns
  ADMIN_USER               HTTP Basic user for the pages
  ADMIN_PASSWORD           its password (environment only: `ps` shows command lines)
  ADMIN_PASSWORD_FILE      or a file holding it
  ADMIN_PASSWORD_HASH      or an Argon2 PHC string of it (`sync-app hash-password`)
  BIND                     the web UI's address (default 127.0.0.1:3000)
  PUBLIC_URL               the pages' address behind a proxy, e.g. https://jobs.example.com
  METRICS_TOKEN            a bearer token for /metrics instead of the login (environment only)
  ALERT_WEBHOOK_URL        gets a JSON POST when the sync fails, is overdue, recovers (env only)
  TLS_CERT / TLS_KEY       serve HTTPS with this PEM certificate and key
  MAX_CONNECTIONS          connections open at most (default: half the open-file limit)
  HEADER_READ_TIMEOUT      time a client has to send a request's headers (default 10s)
  KEEP_ALIVE_TIMEOUT       an idle connection is closed after this (default 30s)
  TIMEZONE                 IANA zone for the times on the pages (default UTC)
  SYNC_INTERVAL            how often the sync runs: 30s, 5m, 1h (default 5m)
  SYNC_LEASE               the scheduler's lease across instances (default 60s)
  SHUTDOWN_GRACE           time a sync gets to finish on SIGTERM / Ctrl-C (default 30s)
  RUST_LOG                 the log filter (default info)

Exit codes: 0 success; 1 failure (a failed sync or check, an error); 2 usage or
configuration error.";

/// `sync-app`: the parsed command line.
#[derive(Debug, Parser)]
#[command(
    name = "sync-app",
    version,
    about = "sync-app — syncs open orders from an ERP's SQL Server into a local database, logged with joblog",
    override_usage = USAGE,
    after_help = CONFIGURATION,
    max_term_width = 100
)]
pub struct Cli {
    /// The command; `None` is a usage error (exit 2).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// A command and its settings.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// First run: a SQLite file, an in-process fake ERP, the web UI, a sync every 30 s
    ///
    /// Works in an empty folder: creates sync-app.db in the working directory, starts a fake
    /// ERP speaking SQL Server's protocol in the same process (2,500 open order lines that
    /// change between syncs), serves the pages on BIND behind Basic auth (ADMIN_USER /
    /// ADMIN_PASSWORD if set, otherwise a generated password, printed) and syncs at once and
    /// then every 30 s (or SYNC_INTERVAL). Ctrl-C stops it.
    Demo(AppArgs),
    /// The web UI and the recurring sync every SYNC_INTERVAL
    ///
    /// Needs MSSQL_URL and ADMIN_USER with ADMIN_PASSWORD of 12 characters or more (or
    /// --admin-password-file, or ADMIN_PASSWORD_HASH). HTTPS with TLS_CERT / TLS_KEY. The
    /// sync runs through joblog's scheduler: at once, then every SYNC_INTERVAL, never twice
    /// at once across the instances sharing the database. SIGTERM / Ctrl-C: a running sync
    /// gets SHUTDOWN_GRACE to finish, then is cancelled and recorded as error.
    Serve(ServeArgs),
    /// The preflight against MSSQL_URL: exit 0 when a sync would work, 1 when not
    ///
    /// Connects with MSSQL_URL as a sync does, prints the server's version, the TLS, the
    /// login and database, runs SOURCE_QUERY for 5 rows and judges every column. Writes
    /// nothing (the local database is not opened).
    Check(CheckArgs),
    /// One sync now: exit 0 on success, 1 on error
    ///
    /// Prints the run's details as they are written (on a terminal, with a progress bar:
    /// rows, rate, batch) and, at the end, a summary line on stdout.
    Sync(SyncArgs),
    /// Create or upgrade the tables (joblog's and open_orders)
    Migrate(MigrateArgs),
    /// Delete finished runs older than DAYS days
    Prune(PruneArgs),
    /// Reads a password on stdin and prints its Argon2 PHC string, for ADMIN_PASSWORD_HASH
    ///
    /// On a terminal it asks twice without echo; piped, it reads one line (its line break is
    /// not part of the password, nothing else is trimmed). At least 12 characters.
    HashPassword,
    /// The ERP's open-orders view on a fake SQL Server (fake-mssql), for tests and demos
    ///
    /// Prints the address it listens on and an MSSQL_URL for it, then serves until Ctrl-C.
    FakeErp(FakeErpArgs),
    /// The newest runs (`runs show ID`: one run and its log; `runs tail ID`: follow it)
    ///
    /// Reads DATABASE_URL — any instance's database. `runs` lists the newest runs like the
    /// run list; `runs show ID` prints a run's summary and whole log; `runs tail ID` (or
    /// `runs tail --job JOB`, its newest run) prints the log and follows it until the run
    /// ends, then exits 0 if it succeeded and 1 if it failed. `--json` for scripts.
    Runs(RunsArgs),
    /// The jobs monitor: every job's schedule, state, last run and success, p50 / p95
    Jobs(JobsArgs),
    /// Asks the schedulers on DATABASE_URL to run JOB now (within seconds)
    RunNow(JobArgs),
    /// Pauses JOB: no new runs start until `resume` (a running one goes on)
    Pause(JobArgs),
    /// Resumes JOB: it runs on schedule again (missed occurrences collapse into one)
    Resume(JobArgs),
}

/// `sync-app runs [show ID | tail ID]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    /// `show` or `tail`; none lists the runs.
    #[command(subcommand)]
    pub action: Option<RunsAction>,
    /// Only runs of this job
    #[arg(long, value_name = "JOB")]
    pub job: Option<String>,
    /// Only runs with this status: new, processing, success or error
    #[arg(long, value_name = "STATUS", value_parser = parse_status)]
    pub status: Option<joblog::RunStatus>,
    /// How many of the newest runs
    #[arg(long, value_name = "N", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub limit: u64,
    /// JSON (an array of runs) instead of a table
    #[arg(long)]
    pub json: bool,
    /// `DATABASE_URL`.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `runs show` / `runs tail`.
#[derive(Debug, Subcommand)]
pub enum RunsAction {
    /// One run: its summary and its whole log
    Show {
        /// The run's id (the first column of `sync-app runs`)
        id: i64,
        /// JSON: `{"run": …, "details": […]}`
        #[arg(long)]
        json: bool,
        /// `DATABASE_URL`.
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Follows a run's log like `tail -f`; exits 0 if the run succeeds, 1 if it fails
    Tail {
        /// The run's id; or --job for the job's newest run
        #[arg(required_unless_present = "job", conflicts_with = "job")]
        id: Option<i64>,
        /// Follow the newest run of this job
        #[arg(long, value_name = "JOB")]
        job: Option<String>,
        /// JSON lines: `{"detail": …}` per line, then `{"run": …}` when it ends
        #[arg(long)]
        json: bool,
        /// `DATABASE_URL`.
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

/// `sync-app jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// JSON (an array of jobs) instead of a table
    #[arg(long)]
    pub json: bool,
    /// `DATABASE_URL`.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `sync-app run-now | pause | resume JOB`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// The scheduled job (`sync-app jobs` lists them), e.g. SyncOpenOrdersJob
    pub job: String,
    /// JSON: `{"job", "action", "paused", "next_run_at"}`
    #[arg(long)]
    pub json: bool,
    /// `DATABASE_URL`.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

fn parse_status(s: &str) -> Result<joblog::RunStatus, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a status: new, processing, success or error"))
}

/// The settings of the commands that serve the pages and schedule the sync: all of `demo`'s,
/// and `serve`'s but the ERP's.
#[derive(Debug, Args)]
pub struct AppArgs {
    /// `DATABASE_URL`.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// `SOURCE_QUERY`.
    #[command(flatten)]
    pub query: QueryArgs,
    /// The pages.
    #[command(flatten)]
    pub web: WebArgs,
    /// HTTPS and connection limits.
    #[command(flatten)]
    pub server: ServerArgs,
    /// The interval and lease.
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// `SHUTDOWN_GRACE`.
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

impl AppArgs {
    /// Checks the values and sets them on `settings`.
    pub fn apply(
        &self,
        settings: &mut Settings,
        on_command_line: OnCommandLine<'_>,
    ) -> Result<(), ConfigError> {
        self.database.apply(settings)?;
        self.query.apply(settings)?;
        self.web.apply(settings, on_command_line)?;
        self.server.apply(settings)?;
        self.schedule.apply(settings, on_command_line)?;
        self.shutdown.apply(settings)
    }
}

/// `sync-app serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Everything but the ERP.
    #[command(flatten)]
    pub app: AppArgs,
    /// `MSSQL_URL` and its token.
    #[command(flatten)]
    pub erp: ErpArgs,
}

/// `sync-app check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `MSSQL_URL` and its token.
    #[command(flatten)]
    pub erp: ErpArgs,
    /// `SOURCE_QUERY`.
    #[command(flatten)]
    pub query: QueryArgs,
}

/// `sync-app sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// `DATABASE_URL`.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// `MSSQL_URL` and its token.
    #[command(flatten)]
    pub erp: ErpArgs,
    /// `SOURCE_QUERY`.
    #[command(flatten)]
    pub query: QueryArgs,
    /// `SHUTDOWN_GRACE`.
    #[command(flatten)]
    pub shutdown: ShutdownArgs,
}

/// `sync-app migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// `DATABASE_URL`.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `sync-app prune [DAYS]`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Runs that finished more than this many days ago are deleted, with their details
    #[arg(default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=36_500))]
    pub days: u64,
    /// `DATABASE_URL`.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// `sync-app fake-erp`: the fake's own options (no variables: it is a test tool). Values
/// in the fake's own grammar (`--fail`, `--schema`, `--encryption`) are checked when it
/// starts (exit 1, naming the flag).
#[derive(Debug, Args)]
pub struct FakeErpArgs {
    /// Where it listens (port 0: any free port; the address is printed)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1433")]
    pub listen: SocketAddr,
    /// Open order lines it serves
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub orders: u64,
    /// Seed of the generated orders [default: the fake's own, the same every time]
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// The view's column types: modern, or classic as an older ERP stores them (MONEY,
    /// DATETIME, padded char, code page 1252, …) [default: modern]
    #[arg(long, value_name = "modern|classic")]
    pub schema: Option<String>,
    /// The orders change between syncs
    #[arg(long)]
    pub evolve: bool,
    /// TLS as SQL Server does it: off, optional (TLS for the login), required, strict (TDS
    /// 8.0) [default: optional]
    #[arg(long, value_name = "off|optional|required|strict")]
    pub encryption: Option<String>,
    /// Certificate (PEM) to serve, with --key [default: a self-signed one for localhost,
    /// 127.0.0.1 and the host name]
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Writes the served certificate (PEM) here, for a client to trust
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
    /// A further name for the generated certificate (repeatable)
    #[arg(long = "cert-name", value_name = "NAME")]
    pub cert_names: Vec<String>,
    /// SQL login user [default: sync]
    #[arg(long, value_name = "U")]
    pub user: Option<String>,
    /// SQL login password (a test credential) [default: sync]
    #[arg(long, value_name = "P")]
    pub password: Option<String>,
    /// Database name [default: erp]
    #[arg(long, value_name = "D")]
    pub database: Option<String>,
    /// Accepts this Entra ID access token too
    #[arg(long, value_name = "TOKEN")]
    pub access_token: Option<String>,
    /// A Windows (NTLM) login, with --windows-password
    #[arg(long, value_name = "DOMAIN\\user")]
    pub windows_user: Option<String>,
    /// The Windows login's password
    #[arg(long, value_name = "P")]
    pub windows_password: Option<String>,
    /// A named instance, announced by a SQL Server Browser on --browser-listen
    #[arg(long, value_name = "NAME")]
    pub instance: Option<String>,
    /// Where the SQL Server Browser listens (UDP), with --instance
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1434")]
    pub browser_listen: SocketAddr,
    /// A fault: login, tls, sql, drop-after:N, stall, stall-after:N, null-at:N,
    /// overflow-at:N, wrong-type
    #[arg(long, value_name = "MODE")]
    pub fail: Option<String>,
}

impl Command {
    /// The checked settings this command reads; `on_command_line` tells which were flags.
    pub fn settings(&self, on_command_line: OnCommandLine<'_>) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        match self {
            Command::Demo(a) => a.apply(&mut s, on_command_line)?,
            Command::Serve(a) => {
                a.app.apply(&mut s, on_command_line)?;
                a.erp.apply(&mut s, on_command_line)?;
            }
            Command::Check(a) => {
                a.erp.apply(&mut s, on_command_line)?;
                a.query.apply(&mut s)?;
            }
            Command::Sync(a) => {
                a.database.apply(&mut s)?;
                a.erp.apply(&mut s, on_command_line)?;
                a.query.apply(&mut s)?;
                a.shutdown.apply(&mut s)?;
            }
            Command::Migrate(a) => a.database.apply(&mut s)?,
            Command::Prune(a) => a.database.apply(&mut s)?,
            Command::Runs(a) => match &a.action {
                None => a.database.apply(&mut s)?,
                Some(RunsAction::Show { database, .. } | RunsAction::Tail { database, .. }) => {
                    database.apply(&mut s)?;
                }
            },
            Command::Jobs(a) => a.database.apply(&mut s)?,
            Command::RunNow(a) | Command::Pause(a) | Command::Resume(a) => a.database.apply(&mut s)?,
            Command::FakeErp(_) | Command::HashPassword => {}
        }
        Ok(s)
    }

    /// The log filter when `RUST_LOG` is not set.
    #[must_use]
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            // The demo talks to its in-process fake ERP without TLS by design: tiberius's
            // warning about it would repeat at every sync.
            Command::Demo(_) => "info,sqlx=warn,tiberius=error,sea_orm_migration=warn",
            _ => "info,sqlx=warn,tiberius=warn,sea_orm_migration=warn",
        }
    }
}

/// What [`parse`] found.
#[derive(Debug)]
pub enum Parsed {
    /// Run a command.
    Run(Box<Invocation>),
    /// Help, the version or an error was printed: exit with this code.
    Exit(ExitCode),
}

/// A command to run and its checked settings.
#[derive(Debug)]
pub struct Invocation {
    /// The command.
    pub command: Command,
    /// Its settings.
    pub settings: Settings,
}

/// Parses the command line (`args` with the program name first, as `std::env::args_os`
/// gives it) and the environment. Prints help (exit 0), the version (exit 0), or a usage
/// or configuration error (exit 2) itself. Never panics on arguments or variables that are
/// not UTF-8: an unrelated variable is not looked at, one of ours is a configuration error.
#[must_use = "the command to run, or the exit code"]
pub fn parse<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = match Cli::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return Parsed::Exit(print_clap_error(&e)),
    };
    let command = match Cli::from_arg_matches(&matches) {
        Ok(Cli { command: Some(c) }) => c,
        Ok(Cli { command: None }) => {
            eprintln!("error: no command given\n\n{}", Cli::command().render_help());
            return Parsed::Exit(ExitCode::from(USAGE_ERROR));
        }
        Err(e) => return Parsed::Exit(print_clap_error(&e)),
    };
    let sub = matches.subcommand().map(|(_, m)| m);
    let on_command_line = |id: &str| sub.is_some_and(|m| given_on_command_line(m, id));
    match command.settings(&on_command_line) {
        Ok(settings) => Parsed::Run(Box::new(Invocation { command, settings })),
        Err(e) => {
            eprintln!("error: {e}");
            Parsed::Exit(ExitCode::from(USAGE_ERROR))
        }
    }
}

/// Whether the argument `id` was given as a flag (not by its variable).
fn given_on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.ids().any(|i| i.as_str() == id) && matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// Prints clap's message — help and version on stdout, errors on stderr — and returns the
/// exit code. An unknown command is called that, by name.
fn print_clap_error(e: &clap::Error) -> ExitCode {
    if e.kind() == ErrorKind::InvalidSubcommand
        && let Some(ContextValue::String(name)) = e.get(ContextKind::InvalidSubcommand)
    {
        // clap's "unrecognized subcommand" line, then its tips and usage unchanged.
        let rendered = e.render().to_string();
        let rest = rendered.split_once('\n').map_or("", |(_, rest)| rest);
        eprint!("error: unknown command `{name}`\n{rest}");
        return ExitCode::from(USAGE_ERROR);
    }
    // Printing can only fail on a closed stdout / stderr, when there is no one to tell.
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(USAGE_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// `run-now`, `pause`, `resume`.
async fn act(settings: &Settings, a: &JobArgs, action: JobAction) -> anyhow::Result<bool> {
    commands::jobs::act(settings, &a.job, action, a.json)
        .await
        .map(|()| true)
}

/// Runs `command` and maps its outcome to the exit code: 0 success, 1 a failed sync or
/// check or an error (printed with its causes), 2 a configuration error found while
/// starting (a busy `BIND`, a missing `MSSQL_URL`, …).
pub async fn execute(command: Command, settings: &Settings, terminal: &Terminal) -> ExitCode {
    let result = match command {
        Command::Demo(_) => commands::demo(settings).await.map(|()| true),
        Command::Serve(_) => commands::serve(settings).await.map(|()| true),
        Command::Check(_) => commands::check(settings).await,
        Command::Sync(_) => commands::sync(settings, terminal).await,
        Command::Migrate(_) => commands::migrate(settings).await.map(|()| true),
        Command::Prune(a) => commands::prune(settings, a.days).await.map(|()| true),
        Command::FakeErp(a) => commands::fake_erp(&a).await.map(|()| true),
        Command::HashPassword => commands::hash_password().map(|()| true),
        Command::Runs(a) => match a.action {
            None => {
                let options = commands::runs::ListOptions {
                    job: a.job,
                    status: a.status,
                    limit: a.limit,
                    json: a.json,
                };
                commands::runs::list(settings, &options).await.map(|()| true)
            }
            Some(RunsAction::Show { id, json, .. }) => {
                commands::runs::show(settings, id, json).await.map(|()| true)
            }
            Some(RunsAction::Tail { id, job, json, .. }) => {
                commands::runs::tail(settings, id, job.as_deref(), json).await
            }
        },
        Command::Jobs(a) => commands::jobs::list(settings, a.json).await.map(|()| true),
        Command::RunNow(a) => act(settings, &a, JobAction::RunNow).await,
        Command::Pause(a) => act(settings, &a, JobAction::Pause).await,
        Command::Resume(a) => act(settings, &a, JobAction::Resume).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            // `sync-app runs show 1 | head`: the reader went away; nothing to report.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            // A configuration error is the user's to fix: exit 2, the message only.
            if let Some(config) = e.downcast_ref::<ConfigError>() {
                eprintln!("error: {config}");
                return ExitCode::from(USAGE_ERROR);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("sync-app").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_stand_for_variables() {
        let Some(Command::Serve(serve)) = parse_args("serve --bind 0.0.0.0:8080 --sync-interval=30s")
            .unwrap()
            .command
        else {
            panic!("serve")
        };
        assert_eq!(serve.app.web.bind.as_deref(), Some("0.0.0.0:8080".as_ref()));
        let settings = Command::Serve(serve).settings(&|_| true).unwrap();
        assert_eq!(settings.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(settings.sync_interval.as_secs(), 30);
        assert!(settings.sync_interval_set);
    }

    #[test]
    fn each_command_takes_its_own_options() {
        let Some(Command::FakeErp(erp)) = parse_args(
            "fake-erp --listen 127.0.0.1:0 --orders 5 --fail drop-after:3 --evolve --cert-name a --cert-name b",
        )
        .unwrap()
        .command
        else {
            panic!("fake-erp")
        };
        assert_eq!(
            (erp.orders, erp.fail.as_deref(), erp.evolve),
            (5, Some("drop-after:3"), true)
        );
        assert_eq!(erp.cert_names, ["a", "b"]);
        assert_eq!(erp.browser_listen.to_string(), "127.0.0.1:1434");
        let Some(Command::Prune(prune)) = parse_args("prune 7").unwrap().command else {
            panic!("prune")
        };
        assert_eq!(prune.days, 7);
        let Some(Command::Prune(prune)) = parse_args("prune").unwrap().command else {
            panic!("prune")
        };
        assert_eq!(prune.days, 30);
        let Some(Command::Check(check)) = parse_args("check --source-query x").unwrap().command else {
            panic!("check")
        };
        assert_eq!(check.query.source_query.as_deref(), Some("x".as_ref()));

        for (line, kind) in [
            ("check --orders 5", ErrorKind::UnknownArgument),
            ("sync --orders 5", ErrorKind::UnknownArgument),
            ("migrate --bind 1.2.3.4:5", ErrorKind::UnknownArgument),
            ("frobnicate", ErrorKind::InvalidSubcommand),
            ("serve --bind", ErrorKind::InvalidValue),
            ("prune 0", ErrorKind::ValueValidation),
            ("prune soon", ErrorKind::ValueValidation),
            ("fake-erp --orders many", ErrorKind::ValueValidation),
            ("serve --help", ErrorKind::DisplayHelp),
            ("--version", ErrorKind::DisplayVersion),
        ] {
            assert_eq!(parse_args(line).unwrap_err().kind(), kind, "{line}");
        }
        assert!(parse_args("").unwrap().command.is_none());
    }

    #[test]
    fn a_password_flag_is_refused_naming_the_alternatives() {
        let Some(command) = parse_args("serve --admin-user ops --admin-password hunter2")
            .unwrap()
            .command
        else {
            panic!("serve")
        };
        let e = command.settings(&|id| id == "admin_password").unwrap_err();
        assert_eq!(e.variable, "ADMIN_PASSWORD");
        assert!(e.to_string().contains("--admin-password-file"), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn help_names_every_variable_and_hides_secrets() {
        let help = Cli::command().render_help().to_string();
        for variable in [
            "DATABASE_URL",
            "MSSQL_URL",
            "MSSQL_ACCESS_TOKEN_FILE",
            "ADMIN_USER",
            "ADMIN_PASSWORD",
            "ADMIN_PASSWORD_FILE",
            "ADMIN_PASSWORD_HASH",
            "PUBLIC_URL",
            "TLS_CERT",
            "TLS_KEY",
            "MAX_CONNECTIONS",
            "HEADER_READ_TIMEOUT",
            "KEEP_ALIVE_TIMEOUT",
            "BIND",
            "SYNC_INTERVAL",
            "SOURCE_QUERY",
            "TIMEZONE",
            "SHUTDOWN_GRACE",
            "SYNC_LEASE",
            "METRICS_TOKEN",
            "ALERT_WEBHOOK_URL",
        ] {
            assert!(help.contains(variable), "{variable} missing from\n{help}");
        }
        assert!(help.contains("Usage: sync-app <command> [options]"), "{help}");
        let mut cmd = Cli::command();
        let serve = cmd
            .find_subcommand_mut("serve")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            serve.contains("--admin-password-file") && !serve.contains("--admin-password "),
            "{serve}"
        );
        assert!(serve.contains("[env: SYNC_INTERVAL"), "{serve}");
    }
}
