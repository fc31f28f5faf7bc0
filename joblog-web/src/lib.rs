//! Admin pages for joblog runs, as a poem router any web app can mount.
//!
//! Not built yet: the run list, run detail and jobs monitor arrive with the joblog-web
//! issue. Until then this crate only re-exports the query types the pages will use.

pub use joblog::{Cursor, RunFilter, RunPage};
