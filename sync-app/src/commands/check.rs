//! `sync-app check`: the preflight against `MSSQL_URL` (the report is [`crate::check`]).

use crate::configuration::Settings;
use crate::erp::DEFAULT_SOURCE_QUERY;

use super::source;

/// `sync-app check`: the preflight. Prints the report ([`crate::check`]) and returns whether
/// a sync would work (exit 0 / 1); a missing or malformed `MSSQL_URL` is a configuration
/// error (exit 2). The local database is not opened.
pub async fn check(settings: &Settings) -> anyhow::Result<bool> {
    let source = source(settings)?;
    let (query, default_query) = match &settings.source_query {
        Some(q) => (q.as_str(), false),
        None => (DEFAULT_SOURCE_QUERY, true),
    };
    let report = crate::check::run(&source, query, default_query).await;
    print!("{report}");
    Ok(report.ok())
}
