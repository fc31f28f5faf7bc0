//! The command line: a command, its arguments, and flags that stand for the environment
//! variables (`--bind 0.0.0.0:3000` is `BIND=0.0.0.0:3000`; a flag wins over the variable).

use std::collections::HashMap;

/// Flags that set an environment variable, and the variable.
pub const ENV_FLAGS: [(&str, &str); 10] = [
    ("--database-url", "DATABASE_URL"),
    ("--mssql-url", "MSSQL_URL"),
    ("--admin-user", "ADMIN_USER"),
    ("--admin-password", "ADMIN_PASSWORD"),
    ("--bind", "BIND"),
    ("--sync-interval", "SYNC_INTERVAL"),
    ("--source-query", "SOURCE_QUERY"),
    ("--timezone", "TIMEZONE"),
    ("--shutdown-grace", "SHUTDOWN_GRACE"),
    ("--sync-lease", "SYNC_LEASE"),
];

/// The usage text.
pub const USAGE: &str = "\
sync-app — syncs open orders from an ERP's SQL Server into a local database, logged with joblog

Usage: sync-app <command> [options]

Commands:
  demo                 first run: SQLite file, an in-process fake ERP, the web UI, a sync every 30 s
  serve                the web UI and the recurring sync every SYNC_INTERVAL
  check                the preflight: connects with MSSQL_URL, prints the server's version, the TLS,
                         the login and database, runs SOURCE_QUERY for 5 rows and judges every column;
                         writes nothing; exit 0 when a sync would work, 1 when not
  sync                 one sync now; exit 0 on success, 1 on error
  migrate              create or upgrade the tables
  prune [DAYS]         delete runs older than DAYS days (default 30)
  fake-erp             the ERP's open-orders view on a fake SQL Server (fake-mssql), for tests and demos:
                         --listen ADDR (default 127.0.0.1:1433) --orders N (default 1000) [--seed S]
                         [--schema modern|classic] [--evolve]
                         [--encryption off|optional|required|strict] (default optional, as SQL Server)
                         [--cert FILE --key FILE | --cert-out FILE] [--cert-name NAME]...
                         [--user U --password P --database D] (default sync / sync / erp)
                         [--access-token TOKEN] [--windows-user DOMAIN\\user --windows-password P]
                         [--instance NAME --browser-listen ADDR (default 127.0.0.1:1434)]
                         [--fail login|tls|sql|drop-after:N|stall|stall-after:N|null-at:N|
                         overflow-at:N|wrong-type]

Options (each also read from the environment variable in capitals):
  --database-url URL   DATABASE_URL    sqlite://…, postgres://… or mysql://… (default sqlite://sync-app.db?mode=rwc)
  --mssql-url ADO      MSSQL_URL       ADO connection string of the ERP's SQL Server
  --admin-user U       ADMIN_USER      HTTP Basic auth user for the web UI
  --admin-password P   ADMIN_PASSWORD  its password
  --bind ADDR          BIND            web UI address (default 127.0.0.1:3000)
  --sync-interval D    SYNC_INTERVAL   30s, 5m, 1h (default 5m)
  --source-query SQL   SOURCE_QUERY    the SELECT returning the open-order columns
  --timezone TZ        TIMEZONE        IANA zone for the pages' times (default UTC)
  --shutdown-grace D   SHUTDOWN_GRACE  time a running sync gets to finish on SIGTERM/Ctrl-C (default 30s)
  --sync-lease D       SYNC_LEASE      the scheduler's lease: another instance takes over this long after
                                       the one running the sync died (default 60s)
  -h, --help           this text
";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// The command (`serve`, `sync`, …).
    pub command: String,
    /// Positional arguments after the command.
    pub args: Vec<String>,
    /// Command options not standing for a variable (`--listen`, `--orders`, …), in order.
    pub options: Vec<(String, Option<String>)>,
    /// Variables set by flags.
    pub env: HashMap<String, String>,
}

/// Options of `fake-erp` that take no value.
const SWITCHES: [&str; 1] = ["--evolve"];

/// Parses `args` (without the program name). `Err` carries a message for the user.
pub fn parse(args: &[String]) -> Result<Cli, String> {
    let mut command = None;
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let mut env = HashMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "-h" || arg == "--help" {
            return Err(String::new());
        }
        if let Some(flag) = arg.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (format!("--{n}"), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            if SWITCHES.contains(&name.as_str()) {
                options.push((name, None));
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            match ENV_FLAGS.iter().find(|(f, _)| *f == name) {
                Some((_, var)) => {
                    env.insert((*var).to_string(), value);
                }
                None => options.push((name, Some(value))),
            }
        } else if command.is_none() {
            command = Some(arg.clone());
        } else {
            positional.push(arg.clone());
        }
    }
    let command = command.ok_or_else(|| "no command given".to_string())?;
    const COMMANDS: [&str; 7] = ["demo", "serve", "check", "sync", "migrate", "prune", "fake-erp"];
    if !COMMANDS.contains(&command.as_str()) {
        return Err(format!("unknown command `{command}`"));
    }
    let known: &[&str] = if command == "fake-erp" {
        &[
            "--listen",
            "--orders",
            "--seed",
            "--fail",
            "--evolve",
            "--schema",
            "--encryption",
            "--cert",
            "--key",
            "--cert-out",
            "--cert-name",
            "--user",
            "--password",
            "--database",
            "--access-token",
            "--windows-user",
            "--windows-password",
            "--instance",
            "--browser-listen",
        ]
    } else {
        &[]
    };
    if let Some((name, _)) = options.iter().find(|(n, _)| !known.contains(&n.as_str())) {
        return Err(format!("unknown option {name} for `{command}`"));
    }
    Ok(Cli {
        command,
        args: positional,
        options,
        env,
    })
}

impl Cli {
    /// The value of a command option.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether a switch was given.
    pub fn switch(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| n == name)
    }

    /// The process environment with the flags applied on top.
    pub fn environment(&self, mut vars: HashMap<String, String>) -> HashMap<String, String> {
        vars.extend(self.env.clone());
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_stand_for_variables() {
        let cli = parse(&args("serve --bind 0.0.0.0:8080 --sync-interval=30s")).unwrap();
        assert_eq!(cli.command, "serve");
        assert_eq!(cli.env["BIND"], "0.0.0.0:8080");
        assert_eq!(cli.env["SYNC_INTERVAL"], "30s");
        let env = cli.environment(HashMap::from([("BIND".to_string(), "1.2.3.4:1".to_string())]));
        assert_eq!(env["BIND"], "0.0.0.0:8080", "a flag wins over the variable");
    }

    #[test]
    fn fake_erp_options_and_errors() {
        let cli = parse(&args(
            "fake-erp --listen 127.0.0.1:0 --orders 5 --fail drop-after:3 --evolve",
        ))
        .unwrap();
        assert_eq!(cli.option("--orders"), Some("5"));
        assert_eq!(cli.option("--fail"), Some("drop-after:3"));
        assert!(cli.switch("--evolve"));
        assert_eq!(parse(&args("prune 7")).unwrap().args, vec!["7"]);
        let check = parse(&args("check --source-query x")).unwrap();
        assert_eq!(
            (check.command.as_str(), check.env["SOURCE_QUERY"].as_str()),
            ("check", "x")
        );
        assert_eq!(
            parse(&args("check --orders 5")).unwrap_err(),
            "unknown option --orders for `check`"
        );
        assert_eq!(
            parse(&args("frobnicate")).unwrap_err(),
            "unknown command `frobnicate`"
        );
        assert_eq!(
            parse(&args("sync --orders 5")).unwrap_err(),
            "unknown option --orders for `sync`"
        );
        assert_eq!(parse(&args("serve --bind")).unwrap_err(), "--bind needs a value");
        assert_eq!(parse(&args("")).unwrap_err(), "no command given");
        assert_eq!(parse(&args("serve --help")).unwrap_err(), "");
    }
}
