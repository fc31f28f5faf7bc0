//! Run with: cargo run -p mount-web
//!
//! Your own poem app, with joblog's pages mounted under `/admin/jobs` behind HTTP Basic
//! auth, and a job of its own that runs every few seconds so there is something to see.
//! Open http://127.0.0.1:3000/admin/jobs/ (user `admin`, password `admin`).

use std::time::Duration;

use joblog::JobLogger;
use joblog_web::{BasicAuth, NavLink, WebConfig};
use poem::listener::TcpListener;
use poem::{EndpointExt, Route, Server, get, handler};

#[handler]
fn home() -> &'static str {
    "Your app. The job logs are at /admin/jobs/\n"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let logger = JobLogger::connect("sqlite://mount-web.db?mode=rwc").await?;
    logger.migrate().await?;

    // A job of our own, every 5 seconds; every third run fails.
    let jobs = logger.clone();
    tokio::spawn(async move {
        for n in 1u64.. {
            let _ = jobs
                .run("ExampleReportJob", |run| async move {
                    run.detail("Collecting figures...");
                    for step in 1..=3 {
                        tokio::time::sleep(Duration::from_millis(700)).await;
                        run.detail(format!("Step {step}/3 done"));
                    }
                    if n % 3 == 0 {
                        anyhow::bail!("the report server answered 503");
                    }
                    run.detail("Report sent");
                    Ok(())
                })
                .await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });

    let pages = joblog_web::router(
        logger,
        WebConfig::default()
            .title("My App · Jobs")
            .nav_link(NavLink::new("Home", "/").icon("document"))
            .nav_link(
                NavLink::new("Jobs Monitor", "/admin/jobs/jobs")
                    .colour("blue")
                    .icon("clipboard"),
            ),
    );
    let app = Route::new()
        .at("/", get(home))
        .nest("/admin/jobs", pages.with(BasicAuth::new("admin", "admin")));
    println!("Open http://127.0.0.1:3000/admin/jobs/ (user admin, password admin)");
    Server::new(TcpListener::bind("127.0.0.1:3000")).run(app).await?;
    Ok(())
}
