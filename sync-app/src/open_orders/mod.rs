//! The local copy of the ERP's open orders: the record, the importer that replaces the
//! table atomically, the queries of the Open Orders page, and the table's schema
//! (`migrations`: sync-app owns `open_orders`).

pub mod importer;
pub mod migrations;
pub mod query;
pub mod record;
pub(crate) mod search_index;

pub use importer::{ImportError, ImportStats, OpenOrdersImporter, Progress, Step};
pub use migrations::SyncAppMigrator;
pub use record::{FIELDS, Field, Kind, OpenOrder};
