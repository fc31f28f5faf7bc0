//! The local copy of the ERP's open orders: the record, the importer that replaces the
//! table atomically, and the queries of the Open Orders page.

pub mod importer;
pub mod query;
pub mod record;

pub use importer::{ImportError, ImportStats, OpenOrdersImporter, Progress};
pub use record::{FIELDS, Field, Kind, OpenOrder};
