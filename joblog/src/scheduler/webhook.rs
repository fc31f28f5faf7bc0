//! Delivering the `job_alerts` outbox: each scheduler with alerts runs one delivery task
//! that claims due alerts (one conditional `UPDATE` each: two instances never send the same
//! alert), POSTs them as JSON, and on failure retries with backoff — 1 s, doubling up to
//! 5 minutes, for 24 hours — recording the error on the job's row for the monitor. A job's
//! alerts go out in order: one waits while an earlier one of the same job is undelivered.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sea_orm::DatabaseConnection;

use super::store::{db_now_plus, required_ts};
use crate::Result;
use crate::sql::{Sql, db_now};

/// A request gets this long for an answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// A claimed alert is someone else's for this long (longer than a request).
const CLAIM: Duration = Duration::from_secs(60);
/// Backoff cap.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// An alert not delivered after this is given up.
const GIVE_UP_AFTER: chrono::Duration = chrono::Duration::hours(24);
/// Alerts looked at per round.
const BATCH: u64 = 20;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP(S) client: the system's CA certificates (or, if it has none, the Mozilla set
/// compiled in), rustls with ring.
pub(crate) fn client() -> HttpsClient {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let connector = match builder.with_provider_and_native_roots(provider.clone()) {
        Ok(b) => b.https_or_http().enable_http1().build(),
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .expect("ring offers the default protocol versions")
            .https_or_http()
            .enable_http1()
            .build(),
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

/// POSTs `body` to `url`; the error says what went wrong (status, connection, timeout).
async fn post(client: &HttpsClient, url: &str, body: String) -> std::result::Result<(), String> {
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("joblog/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("bad request: {e}"))?;
    match tokio::time::timeout(TIMEOUT, client.request(request)).await {
        Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
        Ok(Err(e)) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            Err(text)
        }
        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
        Ok(Ok(resp)) => Err(format!("HTTP {}", resp.status())),
    }
}

fn backoff(attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_secs(1u64 << exp.min(16)).min(MAX_BACKOFF)
}

/// One round: claims the due alerts and sends them. Returns how many were delivered.
pub(crate) async fn deliver_due(db: &DatabaseConnection, client: &HttpsClient) -> Result<usize> {
    let backend = db.get_database_backend();
    let now = db_now(backend);
    let mut q = Sql::new(
        backend,
        "SELECT a.id, a.job, a.payload, a.webhook, a.attempts, a.created_at, ",
    );
    q.push(now)
        .push(
            " FROM job_alerts a WHERE a.delivered_at IS NULL AND a.given_up_at IS NULL AND a.next_attempt_at <= ",
        )
        .push(now)
        .push(" AND (a.claimed_until IS NULL OR a.claimed_until < ")
        .push(now)
        .push(
            ") AND NOT EXISTS (SELECT 1 FROM job_alerts e WHERE e.job = a.job AND e.id < a.id \
             AND e.delivered_at IS NULL AND e.given_up_at IS NULL)",
        )
        .push(&format!(" ORDER BY a.id LIMIT {BATCH}"));
    let mut delivered = 0;
    for row in q.all(db).await? {
        let id: i64 = row.try_get_by_index(0)?;
        let job: String = row.try_get_by_index(1)?;
        let payload: String = row.try_get_by_index(2)?;
        let webhook: String = row.try_get_by_index(3)?;
        let attempts: i32 = row.try_get_by_index(4)?;
        let created_at = required_ts(&row, 5)?;
        let db_time = required_ts(&row, 6)?;
        // The claim: of several instances, one sends it.
        let mut claim = Sql::new(backend, "UPDATE job_alerts SET claimed_until = ");
        claim
            .push(&db_now_plus(backend, CLAIM))
            .push(" WHERE id = ")
            .bind(id)
            .push(" AND delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= ")
            .push(now)
            .push(" AND (claimed_until IS NULL OR claimed_until < ")
            .push(now)
            .push(")");
        if claim.execute(db).await? != 1 {
            continue;
        }
        let attempts = attempts + 1;
        match post(client, &webhook, payload).await {
            Ok(()) => {
                let mut q = Sql::new(backend, "UPDATE job_alerts SET delivered_at = ");
                q.push(now)
                    .push(", attempts = ")
                    .bind(attempts)
                    .push(", claimed_until = NULL, last_error = NULL WHERE id = ")
                    .bind(id);
                q.execute(db).await?;
                set_error(db, &job, None).await?;
                delivered += 1;
                tracing::info!(job, alert = id, attempts, "joblog: alert delivered");
            }
            Err(error) => {
                let give_up = db_time - created_at >= GIVE_UP_AFTER;
                let wait = backoff(attempts);
                let mut q = Sql::new(backend, "UPDATE job_alerts SET attempts = ");
                q.bind(attempts)
                    .push(", claimed_until = NULL, last_error = ")
                    .bind(error.as_str())
                    .push(", next_attempt_at = ")
                    .push(&db_now_plus(backend, wait));
                if give_up {
                    q.push(", given_up_at = ").push(now);
                }
                q.push(" WHERE id = ").bind(id);
                q.execute(db).await?;
                let shown = if give_up {
                    format!("{error} (gave up after {attempts} attempts in 24 h)")
                } else {
                    format!("{error} (attempt {attempts}; next in {}s)", wait.as_secs())
                };
                set_error(db, &job, Some(&shown)).await?;
                tracing::warn!(job, alert = id, attempts, error = %error, give_up, "joblog: alert webhook failed");
            }
        }
    }
    Ok(delivered)
}

/// Records (or clears) the last delivery failure in the job's alert state, for the monitor.
async fn set_error(db: &DatabaseConnection, job: &str, error: Option<&str>) -> Result<()> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend, "UPDATE job_alert_states SET error = ");
    q.bind(error.map(str::to_owned)).push(", error_at = ");
    if error.is_some() {
        q.push(db_now(backend));
    } else {
        q.push("NULL");
    }
    q.push(" WHERE job = ").bind(job);
    q.execute(db).await?;
    Ok(())
}
