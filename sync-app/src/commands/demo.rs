//! `sync-app demo`: the first run on a fresh machine — an in-process fake ERP, a SQLite file,
//! the web UI.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use joblog::format::interval;
use joblog_web::BasicAuth;

use crate::configuration::{MIN_PASSWORD_CHARS, Settings};
use crate::database;
use crate::erp::ErpSource;
use crate::fake_erp::{FakeErp, FakeErpConfig};

use super::serve::{hashed_auth, serve_with};
use super::{job, reap};

/// The demo's interval unless `SYNC_INTERVAL` is set.
pub const DEMO_INTERVAL: Duration = Duration::from_secs(30);
/// Open order lines in the demo's fake ERP.
pub const DEMO_ORDERS: u64 = 2_500;

/// A password for the demo when none is configured: 16 characters from the operating
/// system's random source (about 93 bits). If that source fails, the demo does not start
/// rather than use a guessable password.
fn generated_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    const LENGTH: usize = 16;
    // Bytes at or above the largest multiple of the alphabet's size are skipped, so each
    // character is equally likely.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut out = String::with_capacity(LENGTH);
    let mut bytes = [0u8; 32];
    while out.len() < LENGTH {
        getrandom::fill(&mut bytes).map_err(|e| {
            anyhow::anyhow!("generating the demo's password: the system's random source failed: {e}")
        })?;
        out.extend(
            bytes
                .iter()
                .filter(|b| **b < limit)
                .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
                .take(LENGTH - out.len()),
        );
    }
    Ok(out)
}

/// `sync-app demo`: an in-process fake ERP, the configured (by default a SQLite file)
/// database, the web UI, a sync at once and then every 30 s.
pub async fn demo(settings: &Settings) -> anyhow::Result<()> {
    let erp = FakeErp::bind(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        FakeErpConfig {
            orders: DEMO_ORDERS,
            evolve: true,
            ..FakeErpConfig::default()
        },
    )
    .await
    .context("starting the fake ERP")?
    .spawn();
    let source = ErpSource::from_ado(&erp.ado_string())?;
    let logger = database::open(&settings.database_url).await?;
    reap(&logger).await;
    let job = job(settings, source, &logger);
    // A password the user set is theirs to choose on a demo: short ones are warned about
    // (serve refuses them), the generated one has 16 characters.
    let (auth, shown_user, shown_password) = match (&settings.admin, &settings.admin_hash) {
        (Some((user, password)), _) => {
            if password.chars().count() < MIN_PASSWORD_CHARS {
                tracing::warn!(
                    "ADMIN_PASSWORD has fewer than {MIN_PASSWORD_CHARS} characters: fine for a demo on \
                     this machine, refused by `sync-app serve`"
                );
            }
            (
                BasicAuth::new(user.clone(), password.clone()),
                user.clone(),
                "(from ADMIN_PASSWORD)".to_string(),
            )
        }
        (None, Some((user, phc))) => (
            hashed_auth(user, phc)?,
            user.clone(),
            "(from ADMIN_PASSWORD_HASH)".to_string(),
        ),
        (None, None) => {
            let password = generated_password()?;
            (
                BasicAuth::new("admin".to_string(), password.clone()),
                "admin".to_string(),
                password,
            )
        }
    };
    let every = if settings.sync_interval_set {
        settings.sync_interval
    } else {
        DEMO_INTERVAL
    };
    let db = crate::configuration::redact_url(&settings.database_url);
    let erp_addr = erp.local_addr();
    serve_with(settings, logger, job, Some(auth), every, true, move |url| {
        println!();
        println!("  sync-app demo is running");
        println!("  Web UI     {url}");
        println!("  Login      user {shown_user}, password {shown_password}");
        println!("  Database   {db}");
        println!(
            "  Fake ERP   {erp_addr} ({} open order lines that change between syncs)",
            joblog::format::count(DEMO_ORDERS)
        );
        println!(
            "  A sync runs now and then every {}. Ctrl-C stops.",
            interval(every)
        );
        println!();
    })
    .await?;
    erp.shutdown().await;
    Ok(())
}
