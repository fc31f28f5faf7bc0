//! sync-app: pulls open orders from an ERP's SQL Server into a local database every
//! 5 minutes, logs each step with joblog and serves the run pages.
//!
//! The binary (`src/main.rs`) is a thin command line over these modules:
//!
//! - [`configuration`]: settings from the environment and flags.
//! - [`fake_erp`]: a SQL Server look-alike speaking TDS, for tests, benchmarks and the demo.

pub mod configuration;
pub mod fake_erp;
