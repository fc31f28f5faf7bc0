//! One module per page: [`runs`] (the run list at `/` and `/job_logs`), [`run`] (one run at
//! `/job_logs/:id`, its live tail and its download), [`jobs`] (the jobs monitor at `/jobs`
//! and its buttons), [`metrics`] (Prometheus metrics at `/metrics`), [`assets`] (the embedded CSS and JS). Every handler answers with its
//! page or a [`PageError`](crate::PageError), which [`ErrorPages`](crate::ErrorPages)
//! renders.

pub(crate) mod assets;
pub(crate) mod jobs;
pub(crate) mod metrics;
pub(crate) mod run;
pub(crate) mod runs;

use std::sync::Arc;

use poem::web::Data;

use crate::AppState;

/// What every handler is given: the router's shared state.
pub(crate) type State<'a> = Data<&'a Arc<AppState>>;
