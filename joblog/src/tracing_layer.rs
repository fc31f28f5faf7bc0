//! A `tracing` layer that turns events inside a run's span into the run's details.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> joblog::Result<()> {
//! use tracing::Instrument;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let logger = joblog::JobLogger::connect("sqlite::memory:").await?;
//! logger.migrate().await?;
//! let subscriber = tracing_subscriber::registry().with(logger.tracing_layer());
//! let _default = tracing::subscriber::set_default(subscriber);
//!
//! let run = logger.start("TracedJob").await?;
//! async {
//!     tracing::info!(rows = 42, "fetched open orders");
//!     tracing::warn!("slow source");
//! }
//! .instrument(run.span())
//! .await;
//! let id = run.id();
//! run.success().await?;
//! let details = logger.details(id, None, 10).await?;
//! assert_eq!(details[1].message, "fetched open orders rows=42");
//! assert_eq!(details[2].level, joblog::Level::Warn);
//! # Ok(())
//! # }
//! ```

use std::fmt::{self, Write as _};
use std::sync::Arc;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::logger::LoggerInner;
use crate::run::{JobRun, RunHandle};
use crate::writer::DetailRow;
use crate::{JobLogger, Level};

/// The span field that ties a span (and everything inside it) to a run.
const RUN_ID_FIELD: &str = "joblog.run_id";

/// Writes `tracing` events that happen inside a run's span ([`JobRun::span`]) as details
/// of that run: ERROR as error, WARN as warn, INFO (and, if enabled, finer) as info.
/// Add it to a subscriber with [`JobLogger::tracing_layer`].
#[derive(Debug, Clone)]
pub struct JobLogLayer {
    logger: Arc<LoggerInner>,
    max_level: tracing::Level,
}

impl JobLogLayer {
    /// Also record events down to `level` (default INFO).
    pub fn with_max_level(mut self, level: tracing::Level) -> Self {
        self.max_level = level;
        self
    }
}

impl JobLogger {
    /// A `tracing` layer that records events inside run spans as details.
    pub fn tracing_layer(&self) -> JobLogLayer {
        JobLogLayer {
            logger: self.inner.clone(),
            max_level: tracing::Level::INFO,
        }
    }
}

fn run_span(id: i64, job: &str, name: &str) -> tracing::Span {
    if id <= 0 {
        // A detached handle: nothing to record into.
        return tracing::Span::none();
    }
    // At ERROR level so that no subscriber filter (RUST_LOG=warn, …) disables the span
    // and with it the recording of the events inside.
    tracing::error_span!("job_run", joblog.run_id = id, job = job, run = name)
}

impl JobRun {
    /// A span for this run: with [`JobLogLayer`] installed, events inside it become details.
    pub fn span(&self) -> tracing::Span {
        run_span(self.id(), self.job(), self.name())
    }
}

impl RunHandle {
    /// A span for this run: with [`JobLogLayer`] installed, events inside it become details.
    pub fn span(&self) -> tracing::Span {
        run_span(self.id(), self.job(), self.name())
    }
}

/// The run id kept in a span's extensions.
#[derive(Debug, Clone, Copy)]
struct RunId(i64);

struct RunIdVisitor(Option<i64>);

impl Visit for RunIdVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        if field.name() == RUN_ID_FIELD {
            self.0 = Some(value);
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == RUN_ID_FIELD {
            self.0 = i64::try_from(value).ok();
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn fmt::Debug) {}
}

/// `message k=v k=v`.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for JobLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = RunIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(run_id), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(RunId(run_id));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let level = *event.metadata().level();
        if level > self.max_level || event.metadata().target() == crate::run::DETAIL_TARGET {
            return;
        }
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let Some(run_id) = scope
            .into_iter()
            .find_map(|span| span.extensions().get::<RunId>().copied())
        else {
            return;
        };
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let mut message = visitor.message;
        message.push_str(&visitor.fields);
        let level = match level {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            _ => Level::Info,
        };
        let _ = self.logger.try_queue(DetailRow {
            run_id: run_id.0,
            level,
            message: message.trim_start().to_owned(),
            at: chrono::Utc::now(),
        });
    }
}
