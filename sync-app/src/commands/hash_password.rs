//! `sync-app hash-password`: a password from stdin to the Argon2 PHC string
//! `ADMIN_PASSWORD_HASH` takes, so that no plain password needs to be stored.

use std::io::{BufRead, IsTerminal, Write};
use std::process::{Command, Stdio};

use anyhow::bail;

use crate::configuration::{ConfigError, MIN_PASSWORD_CHARS};

/// Reads the password (on a terminal: twice, without echo; piped: one line) and prints its
/// PHC string on stdout. A password shorter than 12 characters is a usage error (exit 2).
pub fn hash_password() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = prompt("Password: ")?;
        let again = prompt("Once more: ")?;
        if first != again {
            bail!(ConfigError {
                variable: "password",
                expected: "the same password twice; the two differ".into(),
            });
        }
        first
    } else {
        read_line(&mut stdin.lock())?
    };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!(ConfigError {
            variable: "password",
            expected: format!("at least {MIN_PASSWORD_CHARS} characters (serve refuses shorter ones)"),
        });
    }
    let phc =
        joblog_web::hash_password(&password).map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
    println!("{phc}");
    Ok(())
}

/// Asks on stderr and reads a line from the terminal with its echo off (`stty -echo`, so
/// no terminal code of our own; if `stty` is missing the password is echoed, as a plain
/// `read` would).
fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let echo_off = stty("-echo");
    let line = read_line(&mut std::io::stdin().lock());
    if echo_off {
        stty("echo");
    }
    eprintln!();
    line
}

/// Runs `stty ARG` on our terminal; whether it worked.
fn stty(arg: &str) -> bool {
    Command::new("stty")
        .arg(arg)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One line: its line break (`\n` or `\r\n`) dropped, nothing else trimmed.
fn read_line(input: &mut impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    let read = input.read_line(&mut line).map_err(|e| {
        anyhow::anyhow!(ConfigError {
            variable: "password",
            expected: format!("a line of UTF-8 text on stdin ({e})"),
        })
    })?;
    if read == 0 {
        bail!(ConfigError {
            variable: "password",
            expected: "a line on stdin (e.g. `sync-app hash-password < file`); stdin was empty".into(),
        });
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_keeps_its_spaces_and_loses_its_line_break() {
        let mut input = std::io::Cursor::new(" two  spaces \r\nnext\n");
        assert_eq!(read_line(&mut input).unwrap(), " two  spaces ");
        assert_eq!(read_line(&mut input).unwrap(), "next");
        assert!(read_line(&mut input).is_err());
    }
}
