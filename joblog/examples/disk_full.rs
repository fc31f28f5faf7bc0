//! Run with: cargo run -p joblog --example disk_full -- /mnt/tiny/joblog.db
//!
//! A fault experiment: logs runs into a SQLite file on a tiny filesystem until the disk
//! is full, and reports what the job saw — whether `detail()` ever blocked, what
//! `success()` and `flush()` returned — and that nothing panicked. Make the filesystem
//! with e.g. `mount -t tmpfs -o size=2m tmpfs /mnt/tiny`.

use std::time::{Duration, Instant};

use joblog::JobLogger;

#[tokio::main]
async fn main() -> joblog::Result<()> {
    let path = std::env::args()
        .nth(1)
        .expect("usage: disk_full PATH_ON_A_TINY_FS");
    let logger = JobLogger::builder()
        .durability_timeout(Duration::from_secs(2))
        .connect(&format!("sqlite://{path}?mode=rwc"))
        .await?;
    logger.migrate().await?;
    let line = "x".repeat(1_000);
    let mut slowest_detail = Duration::ZERO;
    let (mut ok, mut failed) = (0, 0);
    for i in 0..40 {
        let run = match logger.start("DiskFillerJob").await {
            Ok(run) => run,
            Err(e) => {
                failed += 1;
                if failed <= 5 {
                    println!("run {i}: start() failed: {e}");
                }
                continue;
            }
        };
        for _ in 0..100 {
            let t = Instant::now();
            run.detail(line.as_str());
            slowest_detail = slowest_detail.max(t.elapsed());
        }
        let t = Instant::now();
        match run.success().await {
            Ok(()) => ok += 1,
            Err(e) => {
                failed += 1;
                if failed <= 5 {
                    println!("run {i}: success() returned after {:?}: {e}", t.elapsed());
                }
            }
        }
    }
    println!("runs recorded: {ok}, runs whose logs could not be made durable: {failed}");
    println!("slowest detail() call: {slowest_detail:?}");
    println!("flush(): {:?}", logger.flush().await);
    Ok(())
}
