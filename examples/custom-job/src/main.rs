//! Run with: cargo run -p custom-job
//!
//! A job of its own — it "cleans up" a few temporary files — recorded with joblog.
//! Set `DATABASE_URL` to use PostgreSQL or MySQL instead of the default SQLite file.

use anyhow::Context;
use joblog::{JobLogger, RunStatus};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://custom-job.db?mode=rwc".into());
    let logger = JobLogger::connect(&url)
        .await
        .context("opening the log database")?;
    logger.migrate().await.context("creating joblog's tables")?;

    // The whole job: `run` marks it processing, then success or error (or error on panic).
    let cleaned = logger
        .run("CleanupTempFilesJob", |run| async move {
            run.detail("Scanning /tmp for stale files...");
            let found = 3;
            run.detail(format!("Found {found} stale files"));
            for i in 1..=found {
                run.detail(format!("Removed file {i}/{found}"));
            }
            Ok::<_, anyhow::Error>(found)
        })
        .await?;

    let page = logger
        .list_runs(&Default::default(), Default::default(), 1)
        .await?;
    let run = &page.runs[0].run;
    assert_eq!(run.status, RunStatus::Success);
    println!(
        "Cleaned {cleaned} files. Run {} (id {}) is recorded as {}.",
        run.name, run.id, run.status
    );
    println!(
        "Its details: {:?}",
        logger
            .details(run.id, None, 100)
            .await?
            .iter()
            .map(|d| &d.message)
            .collect::<Vec<_>>()
    );
    println!("Find all runs in {url}, tables job_logs and job_log_details.");
    Ok(())
}
