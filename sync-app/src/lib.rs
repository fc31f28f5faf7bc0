//! sync-app: pulls open orders from an ERP's SQL Server into a local database every
//! 5 minutes, logs each step with joblog and serves the run pages.
//!
//! The binary (`src/main.rs`) is a thin command line over these modules:
//!
//! - [`cli`] and [`commands`]: the command line (clap) and what each command does.
//! - [`check`]: `sync-app check`, the preflight against `MSSQL_URL` and `SOURCE_QUERY`.
//! - [`configuration`]: settings from the environment and flags, checked.
//! - [`telemetry`]: the terminal — log lines, each run's details as they are written, and
//!   `sync`'s progress bar.
//! - [`database`]: the local database, joblog's and sync-app's migrations.
//! - [`erp`]: the source — SQL Server through tiberius, rows mapped by column name.
//! - [`open_orders`]: the local table — record, atomic importer, page queries.
//! - [`sync_job`]: `SyncOpenOrdersJob`, one sync logged step by step (joblog's scheduler
//!   repeats it in `serve` and `demo`).
//! - [`web`]: the run pages, the Open Orders page, `/metrics` and `/healthz`, behind Basic auth.
//! - [`metrics`]: sync-app's own Prometheus metrics, beside joblog's.
//! - [`fake_erp`]: a SQL Server look-alike speaking TDS, for tests, benchmarks and the demo.

pub mod check;
pub mod cli;
pub mod commands;
pub mod configuration;
pub mod database;
pub mod erp;
pub mod fake_erp;
pub mod metrics;
pub mod open_orders;
pub mod sync_job;
pub mod telemetry;
pub mod web;

/// The README's Rust snippets, compiled and checked as doctests (`cargo test --doc -p sync-app`).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
