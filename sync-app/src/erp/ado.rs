//! The parts of an ADO.NET connection string that tiberius leaves to us.

use std::time::Duration;

/// Default TCP connect + handshake timeout (ADO.NET's `Connect Timeout` default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default per-response timeout while reading results (ADO.NET's `Command Timeout`).
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Timeouts read from the connection string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect and TDS handshake.
    pub connect: Duration,
    /// Longest wait for the server's next response while a query runs.
    pub command: Duration,
}

/// Splits `key=value;…` into lower-cased, trimmed keys and trimmed values (values in
/// single or double quotes keep their `;`).
pub fn pairs(ado: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = ado;
    while !rest.trim().is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq]
            .trim()
            .trim_start_matches(';')
            .trim()
            .to_ascii_lowercase();
        let after = rest[eq + 1..].trim_start();
        let (value, next) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // Quoted: a doubled quote stands for one quote character.
                let mut value = String::new();
                let mut chars = after[1..].char_indices().peekable();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    if c == q {
                        if chars.peek().map(|(_, n)| *n) == Some(q) {
                            value.push(q);
                            chars.next();
                        } else {
                            end = Some(i + 1);
                            break;
                        }
                    } else {
                        value.push(c);
                    }
                }
                match end {
                    Some(end) => {
                        let tail = &after[1 + end..];
                        (value, tail.find(';').map_or("", |i| &tail[i + 1..]))
                    }
                    None => (value, ""),
                }
            }
            _ => match after.find(';') {
                Some(i) => (after[..i].trim().to_string(), &after[i + 1..]),
                None => (after.trim().to_string(), ""),
            },
        };
        if !key.is_empty() {
            out.push((key, value));
        }
        rest = next;
    }
    out
}

fn seconds(value: &str, key: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(format!("`{key}` must be at least 1 second")),
        Ok(s) => Ok(Duration::from_secs(s)),
        Err(_) => Err(format!(
            "`{key}` must be a whole number of seconds, got `{value}`"
        )),
    }
}

/// Reads `Connect Timeout` (also `Connection Timeout`, `Timeout`) and `Command Timeout`
/// in seconds.
pub fn timeouts(ado: &str) -> Result<Timeouts, String> {
    let mut t = Timeouts {
        connect: DEFAULT_CONNECT_TIMEOUT,
        command: DEFAULT_COMMAND_TIMEOUT,
    };
    for (key, value) in pairs(ado) {
        match key.as_str() {
            "connect timeout" | "connection timeout" | "timeout" => t.connect = seconds(&value, &key)?,
            "command timeout" => t.command = seconds(&value, &key)?,
            _ => {}
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_timeouts_and_quoted_values() {
        let ado = "Server=tcp:erp.example.com,1433; Database=ERP; User Id=sync; \
                   Password='a;b=c'; Connect Timeout=5;command timeout = 120";
        let p = pairs(ado);
        assert!(p.contains(&("password".into(), "a;b=c".into())), "{p:?}");
        assert!(p.contains(&("database".into(), "ERP".into())));
        let t = timeouts(ado).unwrap();
        assert_eq!(t.connect, Duration::from_secs(5));
        assert_eq!(t.command, Duration::from_secs(120));
        assert_eq!(timeouts("server=x").unwrap().connect, DEFAULT_CONNECT_TIMEOUT);
        assert!(
            timeouts("Connect Timeout=soon")
                .unwrap_err()
                .contains("connect timeout")
        );
        assert!(timeouts("Command Timeout=0").is_err());
        let escaped = pairs("password='it''s;secret';database=ERP;timeout=5");
        assert_eq!(escaped[0], ("password".to_string(), "it's;secret".to_string()));
        assert_eq!(escaped[1], ("database".to_string(), "ERP".to_string()));
        assert_eq!(
            timeouts("password='p''w;timeout=x';timeout=5").unwrap().connect,
            Duration::from_secs(5)
        );
    }
}
