//! The recurring sync of `serve` and `demo`: one run at a time, every interval, and a
//! graceful stop.
//!
//! This is a plain in-process loop; joblog's scheduler (leases across instances, run now,
//! pause) replaces it when it lands.

use std::time::Duration;

use joblog::{Cursor, JobLogger, RunFilter};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::sync_job::{JOB_NAME, SyncOpenOrdersJob};

/// When the first sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstRun {
    /// At once.
    Now,
    /// One interval after the last recorded run of the job (at once if that is past).
    WhenDue,
}

/// The loop's parts.
#[derive(Debug)]
pub struct SyncLoop {
    /// The job.
    pub job: SyncOpenOrdersJob,
    /// Where runs are recorded.
    pub logger: JobLogger,
    /// Time between the starts of two syncs.
    pub interval: Duration,
    /// When the first sync runs.
    pub first: FirstRun,
    /// How long a running sync may go on after the stop signal.
    pub grace: Duration,
}

impl SyncLoop {
    async fn first_due(&self) -> Instant {
        if self.first == FirstRun::Now {
            return Instant::now();
        }
        let filter = RunFilter {
            job: Some(JOB_NAME.into()),
            ..RunFilter::default()
        };
        match self.logger.list_runs(&filter, Cursor::First, 1).await {
            Ok(page) => match page.runs.first() {
                Some(item) => {
                    let since = (chrono::Utc::now() - item.run.created_at)
                        .to_std()
                        .unwrap_or_default();
                    Instant::now() + self.interval.saturating_sub(since)
                }
                None => Instant::now(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not read the last sync; syncing now");
                Instant::now()
            }
        }
    }

    /// Runs until `stop` turns true. A sync running at that moment gets `grace` to
    /// finish; after that it is dropped, which records its run as error ("cancelled").
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut due = self.first_due().await;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let started = Instant::now();
            let sync = self.job.run(&self.logger);
            tokio::pin!(sync);
            let outcome = tokio::select! {
                r = &mut sync => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            };
            let outcome = match outcome {
                Some(r) => r,
                None => match tokio::time::timeout(self.grace, &mut sync).await {
                    Ok(r) => {
                        log_outcome(&r);
                        return;
                    }
                    Err(_) => {
                        tracing::warn!(
                            "the running sync did not finish within {} s; cancelling it",
                            self.grace.as_secs()
                        );
                        return; // dropping `sync` records the run as cancelled
                    }
                },
            };
            log_outcome(&outcome);
            // The next start is one interval after this one; a sync that overran its
            // interval is followed at once, never by a burst of missed ones.
            due = (started + self.interval).max(Instant::now());
        }
    }
}

fn log_outcome(r: &anyhow::Result<crate::open_orders::ImportStats>) {
    match r {
        Ok(s) => tracing::info!(rows = s.inserted, "sync succeeded"),
        Err(e) => tracing::error!(error = format!("{e:#}"), "sync failed"),
    }
}
