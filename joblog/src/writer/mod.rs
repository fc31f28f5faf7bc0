//! The background writer: one task per [`JobLogger`](crate::JobLogger) that turns queued
//! details and status changes into batched, ordered, transactional writes.
//!
//! Call sites never wait on it except where they ask for durability (`success()`,
//! `error()`, `flush()`, bounded by the logger's durability timeout). Everything a run
//! sends goes through one channel, so a run's final status is always written after every
//! detail it sent before finishing.
//!
//! Overflow policy: at most `queue_capacity` details wait in the channel; a detail sent
//! while it is full is dropped at the call site and counted on its run. While the
//! database fails, the writer keeps what it has and retries with backoff (at once when
//! someone waits for durability); its retry buffer holds at most 1.5 × the capacity, and
//! beyond that the oldest details (never a run's closing lines) are dropped. Every
//! dropped detail is counted and reported as a warn detail when its run finishes, and
//! through `tracing`. A row the database rejects for its content (after the writer's own
//! clean-up: NUL bytes replaced, messages capped at 32 KiB) is set aside and counted the
//! same way, so one bad row never blocks the others.

#[cfg(feature = "postgres")]
mod pg_copy;
mod store;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::db_error::is_row_error;
use crate::{Error, Level, Result, RunStatus};
pub(crate) use store::{Finished, insert_details, rollback};

/// Most commands taken from the channel into one write.
const MAX_BATCH: usize = 50_000;
/// Most message bytes taken into one write (one transaction).
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Longest message stored; longer ones are cut (on a character boundary) and marked.
pub(crate) const MAX_MESSAGE_BYTES: usize = 32 << 10;
/// Quick retries inside one write cycle (a locked SQLite file, a dropped connection, …).
const QUICK_RETRIES: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];
/// Longest wait between background retries of a failing database.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A detail as queued by a call site.
#[derive(Debug)]
pub(crate) struct DetailRow {
    pub(crate) run_id: i64,
    pub(crate) level: Level,
    pub(crate) message: String,
    pub(crate) at: DateTime<Utc>,
}

/// The end of a run, queued by `success()`, `error()` or `Drop`.
#[derive(Debug)]
pub(crate) struct FinishRow {
    pub(crate) run_id: i64,
    pub(crate) status: RunStatus,
    /// The error message stored on the run (and written as its last, error-level detail).
    pub(crate) error: Option<String>,
    /// Details this run dropped at the call site because the queue was full.
    pub(crate) dropped: u64,
    pub(crate) at: DateTime<Utc>,
}

pub(crate) type Ack = oneshot::Sender<Result<()>>;

#[derive(Debug)]
pub(crate) enum Command {
    Detail(DetailRow),
    Finish(FinishRow, Option<Ack>),
    Flush(Ack),
}

/// State shared between the logger's handles, its writer task and its heartbeat task.
/// It holds no sender, so the writer ends once every logger handle is gone and the
/// channel has drained.
#[derive(Debug)]
pub(crate) struct WriterShared {
    pub(crate) db: DatabaseConnection,
    /// Details sitting in the channel.
    pub(crate) queued: AtomicUsize,
    pub(crate) capacity: usize,
    /// Runs of this process that are still open: their heartbeat is refreshed.
    pub(crate) live: Mutex<HashSet<i64>>,
    /// Details dropped by the call sites (queue full) and by the writer (retry buffer
    /// full): `joblog_details_dropped_total`.
    pub(crate) details_dropped: prometheus_client::metrics::counter::Counter,
}

impl WriterShared {
    pub(crate) fn live(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Replaces NUL (rejected by PostgreSQL text) and caps the size (MySQL `TEXT` holds 64 KiB).
pub(crate) fn clean_message(mut message: String) -> String {
    if message.contains('\0') {
        message = message.replace('\0', "\u{FFFD}");
    }
    if message.len() > MAX_MESSAGE_BYTES {
        let total = message.len();
        let mut cut = MAX_MESSAGE_BYTES - 64;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!(" … [truncated: {total} bytes in all]"));
    }
    message
}

/// A detail in the writer's buffer.
#[derive(Debug)]
struct Buffered {
    row: DetailRow,
    /// A run's closing line (its error, or the count of lost lines): never trimmed.
    closing: bool,
}

/// What the writer holds between cycles.
#[derive(Debug, Default)]
struct Pending {
    details: Vec<Buffered>,
    finishes: Vec<(FinishRow, Option<Ack>)>,
    flushes: Vec<Ack>,
    /// Details the writer itself had to drop, per run, not yet reported.
    lost: HashMap<i64, u64>,
    /// Commands and message bytes taken in this cycle.
    commands: usize,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, cmd: Command, shared: &WriterShared) {
        self.commands += 1;
        match cmd {
            Command::Detail(mut d) => {
                shared.queued.fetch_sub(1, Ordering::Relaxed);
                d.message = clean_message(d.message);
                self.bytes += d.message.len();
                self.details.push(Buffered {
                    row: d,
                    closing: false,
                });
            }
            Command::Finish(mut f, ack) => {
                // The run's closing details go into the detail stream right here, so they
                // follow everything the run wrote before and precede the status change.
                let lost = f.dropped + self.lost.remove(&f.run_id).unwrap_or(0);
                if lost > 0 {
                    let message = format!(
                        "{lost} detail(s) of this run were lost: the log queue was full \
                         (capacity {}) or the database rejected or kept failing them",
                        shared.capacity
                    );
                    self.push_closing(f.run_id, Level::Warn, message, f.at);
                }
                if let Some(msg) = f.error.take() {
                    let msg = clean_message(msg);
                    self.push_closing(f.run_id, Level::Error, msg.clone(), f.at);
                    f.error = Some(msg);
                }
                self.finishes.push((f, ack));
            }
            Command::Flush(ack) => self.flushes.push(ack),
        }
    }

    fn push_closing(&mut self, run_id: i64, level: Level, message: String, at: DateTime<Utc>) {
        self.bytes += message.len();
        let row = DetailRow {
            run_id,
            level,
            message,
            at,
        };
        self.details.push(Buffered { row, closing: true });
    }

    fn full(&self) -> bool {
        self.commands >= MAX_BATCH || self.bytes >= MAX_BATCH_BYTES
    }

    fn has_writes(&self) -> bool {
        !self.details.is_empty() || !self.finishes.is_empty()
    }

    fn has_waiters(&self) -> bool {
        !self.flushes.is_empty() || self.finishes.iter().any(|(_, ack)| ack.is_some())
    }

    fn lose(&mut self, run_id: i64) {
        *self.lost.entry(run_id).or_default() += 1;
    }

    /// Keeps the retry buffer within 1.5 × the capacity by dropping the oldest details
    /// (not closing lines). Amortised: it trims down to the capacity in one pass.
    fn trim(&mut self, shared: &WriterShared) {
        let capacity = shared.capacity;
        if self.details.len() <= capacity + capacity / 2 {
            return;
        }
        let mut excess = self.details.len() - capacity;
        let mut dropped = 0;
        let mut lost = std::mem::take(&mut self.lost);
        self.details.retain(|d| {
            if excess == 0 || d.closing {
                return true;
            }
            excess -= 1;
            dropped += 1;
            *lost.entry(d.row.run_id).or_default() += 1;
            false
        });
        self.lost = lost;
        shared.details_dropped.inc_by(dropped);
        tracing::error!(
            dropped,
            "joblog: the database keeps failing and the retry buffer is full; dropped the oldest details"
        );
    }

    /// Answers every waiter with `result` (the writes themselves stay pending).
    fn answer_waiters(&mut self, result: impl Fn() -> Result<()>) {
        for (_, ack) in &mut self.finishes {
            if let Some(ack) = ack.take() {
                let _ = ack.send(result());
            }
        }
        for ack in self.flushes.drain(..) {
            let _ = ack.send(result());
        }
    }
}

/// The writer task's main loop.
pub(crate) async fn run(shared: Arc<WriterShared>, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut pending = Pending::default();
    let mut backoff = Duration::from_millis(500);
    let mut retry_at: Option<Instant> = None;
    let mut open = true;

    while open || pending.has_writes() {
        if open {
            tokio::select! {
                cmd = rx.recv() => match cmd {
                    Some(cmd) => pending.push(cmd, &shared),
                    None => open = false,
                },
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
            }
        }
        while !pending.full() {
            match rx.try_recv() {
                Ok(cmd) => pending.push(cmd, &shared),
                Err(_) => break,
            }
        }
        if !pending.has_writes() {
            // Nothing to write: answer flushes, and there is nothing left to retry.
            pending.answer_waiters(|| Ok(()));
            retry_at = None;
            pending.commands = 0;
            pending.bytes = 0;
            continue;
        }
        if let Some(at) = retry_at {
            // Backing off from a failing database: write early only for a waiter.
            if Instant::now() < at && open && !pending.has_waiters() {
                pending.trim(&shared);
                continue;
            }
        }
        match write_with_retries(&shared, &mut pending).await {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                retry_at = None;
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, retry_in = ?backoff, "joblog: could not write run logs; will retry");
                pending.answer_waiters(|| Err(Error::Write(msg.clone())));
                pending.trim(&shared);
                if !open {
                    let lost = pending.details.len() + pending.finishes.len();
                    tracing::error!(lost, "joblog: writer stopping with unwritten logs");
                    break;
                }
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        pending.commands = 0;
        pending.bytes = 0;
    }
}

async fn write_with_retries(shared: &WriterShared, pending: &mut Pending) -> Result<()> {
    let mut delays = QUICK_RETRIES.iter();
    loop {
        let err = match write_once(shared, pending).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if matches!(&err, Error::Db(e) if is_row_error(e)) {
            // The database answers but refuses some row: write row by row and set the
            // refused ones aside, so they cannot block everything else forever.
            return salvage(shared, pending).await;
        }
        let Some(delay) = delays.next() else {
            return Err(err);
        };
        tracing::debug!(error = %err, "joblog: write failed, retrying");
        tokio::time::sleep(*delay).await;
    }
}

/// One transaction: every pending detail in order, then every pending status change.
/// On PostgreSQL the details go through COPY ([`pg_copy`]); elsewhere through
/// multi-row INSERTs in a sea-orm transaction.
async fn write_once(shared: &WriterShared, pending: &mut Pending) -> Result<()> {
    #[cfg(feature = "postgres")]
    if let Some(pool) = pg_copy::pool(&shared.db) {
        let outcomes = pg_copy::write(pool, pending).await?;
        pending.details.clear();
        settle(shared, pending, outcomes);
        return Ok(());
    }
    let txn = shared.db.begin().await?;
    let outcomes = match write_in(&txn, pending).await {
        Ok(outcomes) => outcomes,
        Err(e) => {
            rollback(txn).await;
            return Err(e);
        }
    };
    txn.commit().await?;
    pending.details.clear();
    settle(shared, pending, outcomes);
    Ok(())
}

async fn write_in(txn: &sea_orm::DatabaseTransaction, pending: &Pending) -> Result<Vec<Finished>> {
    let rows: Vec<&DetailRow> = pending.details.iter().map(|d| &d.row).collect();
    insert_details(txn, &rows).await?;
    let mut outcomes = Vec::with_capacity(pending.finishes.len());
    for (f, _) in &pending.finishes {
        outcomes.push(store::apply_finish(txn, f).await?);
    }
    Ok(outcomes)
}

/// After the finishes were written: forget their runs and answer their waiters.
fn settle(shared: &WriterShared, pending: &mut Pending, outcomes: Vec<Finished>) {
    let mut live = shared.live();
    for ((f, ack), outcome) in pending.finishes.drain(..).zip(outcomes) {
        live.remove(&f.run_id);
        pending.lost.remove(&f.run_id);
        if let Some(ack) = ack {
            let _ = ack.send(outcome.into_result(&f));
        }
    }
    drop(live);
    for ack in pending.flushes.drain(..) {
        let _ = ack.send(Ok(()));
    }
}

/// Row-by-row writing after the database refused a batch for its content.
async fn salvage(shared: &WriterShared, pending: &mut Pending) -> Result<()> {
    let details = std::mem::take(&mut pending.details);
    let mut rest = details.into_iter();
    while let Some(d) = rest.next() {
        match insert_details(&shared.db, &[&d.row]).await {
            Ok(()) => {}
            Err(Error::Db(e)) if is_row_error(&e) => {
                tracing::error!(run_id = d.row.run_id, error = %e, "joblog: the database refused a detail; dropped");
                pending.lose(d.row.run_id);
            }
            Err(e) => {
                // The database itself fails now: keep this row and the rest for later.
                pending.details.push(d);
                pending.details.extend(rest);
                return Err(e);
            }
        }
    }
    let mut outcomes = Vec::with_capacity(pending.finishes.len());
    for (f, _) in &pending.finishes {
        let outcome = match store::apply_finish(&shared.db, f).await {
            Err(Error::Db(e)) if is_row_error(&e) => {
                // Store the status without the refused error text.
                tracing::error!(run_id = f.run_id, error = %e, "joblog: the database refused a run's error text");
                let plain = FinishRow {
                    run_id: f.run_id,
                    status: f.status,
                    error: Some(format!("(the error text could not be stored: {e})")),
                    dropped: 0,
                    at: f.at,
                };
                store::apply_finish(&shared.db, &plain).await?
            }
            other => other?,
        };
        outcomes.push(outcome);
    }
    settle(shared, pending, outcomes);
    Ok(())
}

/// Refreshes the heartbeat of this process's open runs every `every`, on a task of its
/// own so that a busy or stuck writer cannot starve it. Ends with the logger.
pub(crate) async fn heartbeat(shared: Weak<WriterShared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else { return };
        let ids: Vec<i64> = shared.live().iter().copied().collect();
        if let Err(e) = store::refresh_heartbeats(&shared.db, &ids).await {
            tracing::warn!(error = %e, "joblog: heartbeat update failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_cleaned() {
        assert_eq!(clean_message("a\0b".into()), "a\u{FFFD}b");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cleaned = clean_message(long);
        assert!(cleaned.len() <= MAX_MESSAGE_BYTES);
        assert!(cleaned.ends_with(&format!("[truncated: {} bytes in all]", 2 * MAX_MESSAGE_BYTES)));
        assert_eq!(clean_message("short".into()), "short");
    }
}
