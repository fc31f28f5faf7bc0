//! The background writer: one task per [`JobLogger`](crate::JobLogger) that turns queued
//! details and status changes into batched, ordered, transactional writes.
//!
//! Call sites never wait on it except where they ask for durability (`success()`,
//! `error()`, `flush()`). Everything a run sends goes through one channel, so a run's
//! final status is always written after every detail it sent before finishing.
//!
//! Overflow policy: at most `queue_capacity` details wait in the channel; a detail sent
//! while it is full is dropped at the call site and counted on its run. While the
//! database fails, the writer keeps what it has and retries with backoff; its retry
//! buffer is bounded by the same capacity, dropping the oldest details beyond it. Every
//! dropped detail is counted and reported as a warn detail when the run finishes, and
//! through `tracing`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, SqlErr, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::sql::{Sql, bind_limit, now};
use crate::{Error, Level, Result, RunStatus};

/// Most commands taken from the channel into one write.
const MAX_BATCH: usize = 50_000;
/// Quick retries inside one write cycle (for a locked SQLite file, a failover, …).
const QUICK_RETRIES: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(250)];
/// Longest wait between retries of a failing database.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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

/// State shared between the logger's handles and its writer task. It holds no sender,
/// so the writer ends once every logger handle is gone and the channel has drained.
#[derive(Debug)]
pub(crate) struct WriterShared {
    pub(crate) db: DatabaseConnection,
    /// Details sitting in the channel.
    pub(crate) queued: AtomicUsize,
    pub(crate) capacity: usize,
    /// Runs of this process that are still open: their heartbeat is refreshed.
    pub(crate) live: Mutex<HashSet<i64>>,
}

impl WriterShared {
    pub(crate) fn live(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the writer holds between cycles.
#[derive(Debug, Default)]
struct Pending {
    details: Vec<DetailRow>,
    finishes: Vec<(FinishRow, Option<Ack>)>,
    flushes: Vec<Ack>,
    /// Details the writer itself had to drop, per run, not yet reported.
    lost: HashMap<i64, u64>,
    commands: usize,
}

impl Pending {
    fn push(&mut self, cmd: Command, shared: &WriterShared) {
        self.commands += 1;
        match cmd {
            Command::Detail(d) => {
                shared.queued.fetch_sub(1, Ordering::Relaxed);
                self.details.push(d);
            }
            Command::Finish(f, ack) => {
                // The run's closing details go into the detail stream right here, so they
                // follow everything the run wrote before and precede the status change.
                let lost = f.dropped + self.lost.remove(&f.run_id).unwrap_or(0);
                if lost > 0 {
                    self.details.push(DetailRow {
                        run_id: f.run_id,
                        level: Level::Warn,
                        message: format!(
                            "{lost} detail(s) of this run were lost: the log queue was full \
                             (capacity {}) or the database kept failing",
                            shared.capacity
                        ),
                        at: f.at,
                    });
                }
                if let Some(msg) = &f.error {
                    self.details.push(DetailRow {
                        run_id: f.run_id,
                        level: Level::Error,
                        message: msg.clone(),
                        at: f.at,
                    });
                }
                self.finishes.push((f, ack));
            }
            Command::Flush(ack) => self.flushes.push(ack),
        }
    }

    fn has_writes(&self) -> bool {
        !self.details.is_empty() || !self.finishes.is_empty()
    }

    fn is_empty(&self) -> bool {
        !self.has_writes() && self.flushes.is_empty()
    }

    /// Keeps the retry buffer within the capacity by dropping the oldest details.
    fn trim(&mut self, capacity: usize) {
        if self.details.len() <= capacity {
            return;
        }
        let excess = self.details.len() - capacity;
        for d in self.details.drain(..excess) {
            *self.lost.entry(d.run_id).or_default() += 1;
        }
        tracing::error!(
            dropped = excess,
            "joblog: database unavailable and retry buffer full; dropped oldest details"
        );
    }

    /// Answers every waiter with `result`.
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
pub(crate) async fn run(
    shared: Arc<WriterShared>,
    mut rx: mpsc::UnboundedReceiver<Command>,
    heartbeat_every: Duration,
) {
    let mut pending = Pending::default();
    let mut heartbeat = tokio::time::interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Duration::from_secs(1);
    let mut retry_at: Option<Instant> = None;
    let mut open = true;

    while open || pending.has_writes() {
        tokio::select! {
            biased;
            cmd = rx.recv(), if open => match cmd {
                Some(cmd) => pending.push(cmd, &shared),
                None => open = false,
            },
            _ = heartbeat.tick() => {
                if let Err(e) = refresh_heartbeats(&shared).await {
                    tracing::warn!(error = %e, "joblog: heartbeat update failed");
                }
                if retry_at.is_none() {
                    continue;
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {}
        }
        while pending.commands < MAX_BATCH {
            match rx.try_recv() {
                Ok(cmd) => pending.push(cmd, &shared),
                Err(_) => break,
            }
        }
        if pending.is_empty() {
            continue;
        }
        if let Some(at) = retry_at {
            // Still waiting out a backoff: keep collecting, write when it is due.
            if Instant::now() < at && open {
                pending.trim(shared.capacity);
                continue;
            }
        }
        match write_with_retries(&shared, &mut pending).await {
            Ok(()) => {
                backoff = Duration::from_secs(1);
                retry_at = None;
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, retry_in = ?backoff, "joblog: could not write run logs; will retry");
                pending.answer_waiters(|| Err(Error::Write(msg.clone())));
                pending.trim(shared.capacity);
                if !open {
                    // Nobody is left to send more; give up after a last failed attempt.
                    let lost = pending.details.len() + pending.finishes.len();
                    tracing::error!(lost, "joblog: writer stopping with unwritten logs");
                    break;
                }
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        pending.commands = 0;
    }
}

async fn write_with_retries(shared: &WriterShared, pending: &mut Pending) -> Result<()> {
    let mut delays = QUICK_RETRIES.iter();
    let mut orphans_dropped = false;
    loop {
        let err = match write_once(shared, pending).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let is_fk = matches!(&err, Error::Db(e)
            if matches!(e.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))));
        if is_fk && !orphans_dropped {
            // A detail for a run that no longer exists (pruned, or deleted by hand)
            // would poison every retry: drop those and try again.
            drop_orphans(shared, pending).await?;
            orphans_dropped = true;
            continue;
        }
        let Some(delay) = delays.next() else {
            return Err(err);
        };
        tracing::debug!(error = %err, "joblog: write failed, retrying");
        tokio::time::sleep(*delay).await;
    }
}

/// One transaction: every pending detail in order, then every pending status change.
async fn write_once(shared: &WriterShared, pending: &mut Pending) -> Result<()> {
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
    let mut live = shared.live();
    for ((f, ack), outcome) in pending.finishes.drain(..).zip(outcomes) {
        live.remove(&f.run_id);
        if let Some(ack) = ack {
            let _ = ack.send(match outcome {
                Finished::Applied => Ok(()),
                Finished::AlreadyEnded(from) => Err(Error::InvalidTransition {
                    run_id: f.run_id,
                    from,
                    to: f.status,
                }),
                Finished::Missing => Err(Error::RunNotFound(f.run_id)),
            });
        }
    }
    drop(live);
    for ack in pending.flushes.drain(..) {
        let _ = ack.send(Ok(()));
    }
    Ok(())
}

async fn write_in(txn: &DatabaseTransaction, pending: &Pending) -> Result<Vec<Finished>> {
    insert_details(txn, &pending.details).await?;
    let mut outcomes = Vec::with_capacity(pending.finishes.len());
    for (f, _) in &pending.finishes {
        outcomes.push(apply_finish(txn, f).await?);
    }
    Ok(outcomes)
}

/// Rolls back at once rather than leaving it to `Drop`, which only queues the rollback
/// until the connection is next used: meanwhile an idle pooled SQLite connection would
/// keep the write lock and every other writer would wait out its busy timeout.
pub(crate) async fn rollback(txn: DatabaseTransaction) {
    if let Err(e) = txn.rollback().await {
        tracing::warn!(error = %e, "joblog: rollback failed");
    }
}

/// Multi-row inserts, each as large as the backend's bind limit allows.
pub(crate) async fn insert_details(db: &impl ConnectionTrait, details: &[DetailRow]) -> Result<()> {
    const COLS: usize = 4;
    let backend = db.get_database_backend();
    let rows_per_stmt = bind_limit(backend) / COLS;
    for chunk in details.chunks(rows_per_stmt) {
        let mut q = Sql::new(
            backend,
            "INSERT INTO job_log_details (job_log_id, level, message, created_at) VALUES ",
        );
        for (i, d) in chunk.iter().enumerate() {
            q.push(if i == 0 { "(" } else { ", (" });
            q.bind(d.run_id)
                .push(", ")
                .bind(d.level.as_str())
                .push(", ")
                .bind(d.message.as_str())
                .push(", ")
                .bind(d.at)
                .push(")");
        }
        q.execute(db).await?;
    }
    Ok(())
}

/// What ending a run did.
#[derive(Debug, Clone, Copy)]
enum Finished {
    Applied,
    /// It had already ended (e.g. reaped as abandoned): nothing changed.
    AlreadyEnded(RunStatus),
    /// The run does not exist.
    Missing,
}

/// Ends a run unless it has ended already.
async fn apply_finish(db: &impl ConnectionTrait, f: &FinishRow) -> Result<Finished> {
    let backend = db.get_database_backend();
    let mut q = Sql::new(backend, "UPDATE job_logs SET status = ");
    q.bind(f.status.code())
        .push(", finished_at = ")
        .bind(f.at)
        .push(", updated_at = ")
        .bind(f.at)
        .push(", started_at = COALESCE(started_at, created_at), error = ")
        .bind(f.error.clone())
        .push(" WHERE id = ")
        .bind(f.run_id)
        .push(" AND status IN (0, 1)");
    if q.execute(db).await? == 1 {
        return Ok(Finished::Applied);
    }
    let mut q = Sql::new(backend, "SELECT status FROM job_logs WHERE id = ");
    q.bind(f.run_id);
    Ok(match q.one(db).await? {
        Some(row) => Finished::AlreadyEnded(
            RunStatus::from_code(row.try_get_by_index::<i16>(0)?).unwrap_or(RunStatus::Error),
        ),
        None => Finished::Missing,
    })
}

async fn drop_orphans(shared: &WriterShared, pending: &mut Pending) -> Result<()> {
    let mut ids: Vec<i64> = pending.details.iter().map(|d| d.run_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut existing = HashSet::new();
    for chunk in ids.chunks(1000) {
        let mut q = Sql::new(
            shared.db.get_database_backend(),
            "SELECT id FROM job_logs WHERE id IN ",
        );
        q.bind_list(chunk);
        for row in q.all(&shared.db).await? {
            existing.insert(row.try_get_by_index::<i64>(0)?);
        }
    }
    let before = pending.details.len();
    pending.details.retain(|d| existing.contains(&d.run_id));
    tracing::warn!(
        dropped = before - pending.details.len(),
        "joblog: dropped details of runs that no longer exist"
    );
    Ok(())
}

async fn refresh_heartbeats(shared: &WriterShared) -> Result<()> {
    let ids: Vec<i64> = shared.live().iter().copied().collect();
    let at = now();
    for chunk in ids.chunks(1000) {
        let mut q = Sql::new(
            shared.db.get_database_backend(),
            "UPDATE job_logs SET heartbeat_at = ",
        );
        q.bind(at)
            .push(" WHERE status IN (0, 1) AND id IN ")
            .bind_list(chunk);
        q.execute(&shared.db).await?;
    }
    Ok(())
}
