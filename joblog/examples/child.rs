//! Run with: cargo run -p joblog --example child -- <starts|hang> DATABASE_URL [ARGS]
//!
//! A helper process for the multi-process tests (and a demonstration of a crash):
//! - `starts URL N AT_MS`: waits until the Unix time AT_MS, then starts N runs at once
//!   and prints each run's id and name.
//! - `hang URL`: starts a run with a 100 ms heartbeat, prints its id and waits to be killed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use joblog::JobLogger;

#[tokio::main]
async fn main() -> joblog::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args.get(1).expect("usage: child <starts|hang> URL ...");
    match args[0].as_str() {
        "starts" => {
            let n: usize = args[2].parse().expect("N");
            let at_ms: u128 = args[3].parse().expect("AT_MS");
            let logger = JobLogger::builder()
                .max_connections(n as u32)
                .connect(url)
                .await?;
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis();
            tokio::time::sleep(Duration::from_millis(at_ms.saturating_sub(now_ms) as u64)).await;
            let mut tasks: Vec<tokio::task::JoinHandle<joblog::Result<(i64, String)>>> = Vec::new();
            for _ in 0..n {
                let logger = logger.clone();
                tasks.push(tokio::spawn(async move {
                    let run = logger.start("ConcurrentStartJob").await?;
                    let out = (run.id(), run.name().to_owned());
                    run.success().await?;
                    Ok(out)
                }));
            }
            for t in tasks {
                let (id, name) = t.await.expect("task")?;
                println!("{id} {name}");
            }
            logger.flush().await?;
        }
        "hang" => {
            let logger = JobLogger::builder()
                .heartbeat_interval(Duration::from_millis(100))
                .connect(url)
                .await?;
            let mut run = logger.start("HangingJob").await?;
            run.processing().await?;
            run.detail("working forever");
            logger.flush().await?;
            println!("{}", run.id());
            std::future::pending::<()>().await;
        }
        other => panic!("unknown mode {other}"),
    }
    Ok(())
}
