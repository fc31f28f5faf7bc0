//! Prometheus metrics of a [`JobLogger`], in the OpenMetrics text format.
//!
//! Two kinds of values:
//!
//! - **This process's events**, counted as they happen: runs finished by this process's
//!   guards (and runs its reaper ended) by job and status, their durations, details dropped,
//!   the writer's queue.
//! - **What lives in the database**, read at each scrape so that every instance on the
//!   same database reports the same: the last success of each job, its runs in progress,
//!   the occurrences it missed and skipped. (Aggregate these with `max`, not `sum`.)
//!
//! | metric | type | labels | source |
//! |---|---|---|---|
//! | `joblog_runs_total` | counter | `job`, `status` (`success`, `error`) | this process |
//! | `joblog_run_duration_seconds` | histogram | `job` | this process (from `start()` to the end) |
//! | `joblog_details_dropped_total` | counter | | this process |
//! | `joblog_writer_queue_depth` | gauge | | this process |
//! | `joblog_last_success_timestamp_seconds` | gauge | `job` | database |
//! | `joblog_runs_running` | gauge | `job` | database |
//! | `joblog_missed_runs` | gauge | `job` (scheduled jobs) | database |
//! | `joblog_skipped_runs_total` | counter | `job` (scheduled jobs) | database |
//! | `joblog_schedule_interval_seconds` | gauge | `job` (scheduled jobs) | database |
//! | `joblog_database_up` | gauge | | 1 when the scrape's queries succeeded |
//!
//! A host adds its own with [`Metrics::registry`] (and [`Metrics::on_scrape`] for values
//! it reads from somewhere at scrape time); [`JobLogger::encode_metrics_as`] renders them
//! all, as OpenMetrics (what Prometheus asks for) or the older Prometheus text format
//! (what `curl` gets), chosen by [`Format::from_accept`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::writer::WriterShared;
use crate::{JobLogger, Result, RunStatus};

/// The two text formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (what Prometheus asks for first; ends with `# EOF`).
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (what `curl`, `promtool check metrics` and older
    /// scrapers read): counters' `HELP` / `TYPE` name the `_total` sample, no `# EOF`.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` (without `q=0`), the Prometheus text format otherwise.
    #[must_use]
    pub fn from_accept(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.unwrap_or("").split(',').any(|part| {
            let mut params = part.split(';').map(str::trim);
            params
                .next()
                .is_some_and(|media| media.eq_ignore_ascii_case("application/openmetrics-text"))
                && !params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.trim().parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Text
        }
    }

    /// The `Content-Type` to serve it with.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family `x` is declared
/// as `x_total` (its samples' name), and `# EOF` goes. (Nothing else of OpenMetrics —
/// units, `_created`, exemplars — is in what joblog encodes.)
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let declared = ["# HELP ", "# TYPE "].into_iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let name = rest.split(' ').next()?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total{}", &rest[name.len()..]))
        });
        match declared {
            Some(renamed) => out.push_str(&renamed),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Upper bounds of the run-duration histogram's buckets, in seconds: from a tenth of a
/// second to an hour.
const DURATION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStatusLabels {
    job: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

/// A hook run before each scrape (see [`Metrics::on_scrape`]).
type ScrapeHook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A logger's metrics: cheap to clone, shared by the logger's clones.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: Mutex<Registry>,
    runs: Family<JobStatusLabels, Counter>,
    durations: Family<JobLabels, Histogram>,
    database: Arc<DatabaseCollector>,
    hooks: Mutex<Vec<ScrapeHook>>,
    /// One scrape at a time: each reads the database and encodes its own snapshot.
    scrape: tokio::sync::Mutex<()>,
    extensions: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every value behind these locks stays consistent if a holder panicked.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// The metrics of a new logger; `queued` is its writer's queue length.
    pub(crate) fn new(writer: std::sync::Weak<WriterShared>) -> Self {
        let details_dropped = writer
            .upgrade()
            .map(|w| w.details_dropped.clone())
            .unwrap_or_default();
        let runs = Family::<JobStatusLabels, Counter>::default();
        let durations = Family::<JobLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(DURATION_BUCKETS)) as fn() -> Histogram,
        );
        let database = Arc::new(DatabaseCollector {
            snapshot: Mutex::new(DatabaseSnapshot::default()),
            writer,
        });
        let mut registry = Registry::default();
        registry.register(
            "joblog_runs",
            "Runs finished by this process (and runs its reaper ended), by job and status",
            runs.clone(),
        );
        registry.register(
            "joblog_run_duration_seconds",
            "Duration of the runs this process finished, from start() to success or error",
            durations.clone(),
        );
        registry.register(
            "joblog_details_dropped",
            "Details this process dropped: the queue was full, or the database kept failing",
            details_dropped.clone(),
        );
        registry.register_collector(Box::new(database.clone()));
        Self {
            inner: Arc::new(MetricsInner {
                registry: Mutex::new(registry),
                runs,
                durations,
                database,
                hooks: Mutex::new(Vec::new()),
                scrape: tokio::sync::Mutex::new(()),
                extensions: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Makes the job's `joblog_runs_total` series exist at 0, so that a rule on
    /// `increase(…)` sees its first failure (a series that appears at 1 has no increase).
    pub(crate) fn job_seen(&self, job: &str) {
        for status in [RunStatus::Success, RunStatus::Error] {
            let _ = self.inner.runs.get_or_create(&JobStatusLabels {
                job: job.to_owned(),
                status: status.as_str().to_owned(),
            });
        }
    }

    /// Counts a run this process ended.
    pub(crate) fn run_finished(&self, job: &str, status: RunStatus, took: Option<Duration>) {
        self.inner
            .runs
            .get_or_create(&JobStatusLabels {
                job: job.to_owned(),
                status: status.as_str().to_owned(),
            })
            .inc();
        if let Some(took) = took {
            self.inner
                .durations
                .get_or_create(&JobLabels { job: job.to_owned() })
                .observe(took.as_secs_f64());
        }
    }

    /// The registry the metrics are in: a host registers its own there, e.g.
    /// `logger.metrics().registry().register("myapp_rows", "Rows", gauge.clone())`.
    /// Names must not collide with joblog's (`joblog_…`).
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.inner.registry)
    }

    /// Runs `hook` before every scrape, after joblog has read its own values from the
    /// database: for a host's values that live elsewhere (a table's row count, say), set
    /// on its own gauges. A scrape waits for it; keep it short.
    pub fn on_scrape<F>(&self, hook: F)
    where
        F: Fn() -> BoxFuture<'static, ()> + Send + Sync + 'static,
    {
        lock(&self.inner.hooks).push(Arc::new(hook));
    }

    /// A host's set of metrics of type `T`, made and registered by `init` the first time
    /// it is asked for on this logger and the same value (a clone) afterwards — so that
    /// registering twice never puts a family twice in the output.
    pub fn extension<T, F>(&self, init: F) -> T
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce(&Metrics) -> T,
    {
        let mut extensions = lock(&self.inner.extensions);
        if let Some(found) = extensions
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
        {
            return found.clone();
        }
        let made = init(self);
        extensions.insert(TypeId::of::<T>(), Box::new(made.clone()));
        made
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and every metric here encodes.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry()) {
            tracing::error!(error = %e, "joblog: metrics could not be encoded");
        }
        out
    }
}

/// What the database says, as of the last scrape.
#[derive(Debug, Default)]
struct DatabaseSnapshot {
    up: bool,
    jobs: Vec<JobState>,
}

#[derive(Debug)]
struct JobState {
    job: String,
    last_success: Option<f64>,
    running: u64,
    /// `None` for a job without a schedule.
    missed: Option<u64>,
    skipped: Option<u64>,
    /// The schedule's interval in seconds (for cron: between the next two occurrences).
    interval: Option<f64>,
}

/// Encodes the database's values and the writer's queue at each scrape.
#[derive(Debug)]
struct DatabaseCollector {
    snapshot: Mutex<DatabaseSnapshot>,
    writer: std::sync::Weak<WriterShared>,
}

impl DatabaseCollector {
    fn gauges<'a, N>(
        encoder: &mut DescriptorEncoder<'_>,
        name: &str,
        help: &str,
        values: impl Iterator<Item = (&'a str, N)>,
    ) -> fmt::Result
    where
        ConstGauge<N>: EncodeMetric,
    {
        let mut metric =
            encoder.encode_descriptor(name, help, None, prometheus_client::metrics::MetricType::Gauge)?;
        for (job, value) in values {
            let labels = JobLabels { job: job.to_owned() };
            ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for DatabaseCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let queued = self
            .writer
            .upgrade()
            .map_or(0, |w| w.queued.load(std::sync::atomic::Ordering::Relaxed));
        let gauge = ConstGauge::new(queued as i64);
        gauge.encode(encoder.encode_descriptor(
            "joblog_writer_queue_depth",
            "Details waiting in this process's writer queue.",
            None,
            gauge.metric_type(),
        )?)?;
        let snapshot = lock(&self.snapshot);
        let up = ConstGauge::new(i64::from(snapshot.up));
        up.encode(encoder.encode_descriptor(
            "joblog_database_up",
            "1 if this scrape read the database's values (the job metrics below), 0 if it could not.",
            None,
            up.metric_type(),
        )?)?;
        let jobs = &snapshot.jobs;
        Self::gauges(
            &mut encoder,
            "joblog_last_success_timestamp_seconds",
            "When each job last ended in success (Unix time), as recorded in the database.",
            jobs.iter()
                .filter_map(|j| j.last_success.map(|t| (j.job.as_str(), t))),
        )?;
        Self::gauges(
            &mut encoder,
            "joblog_runs_running",
            "Runs of each job in progress (new or processing) in the database, on any instance.",
            jobs.iter()
                .map(|j| (j.job.as_str(), i64::try_from(j.running).unwrap_or(i64::MAX))),
        )?;
        Self::gauges(
            &mut encoder,
            "joblog_missed_runs",
            "Occurrences of each scheduled job due since its last success (0 when all is well).",
            jobs.iter().filter_map(|j| {
                j.missed
                    .map(|m| (j.job.as_str(), i64::try_from(m).unwrap_or(i64::MAX)))
            }),
        )?;
        Self::gauges(
            &mut encoder,
            "joblog_schedule_interval_seconds",
            "The gap between two due times of each scheduled job (for cron: the next two).",
            jobs.iter()
                .filter_map(|j| j.interval.map(|i| (j.job.as_str(), i))),
        )?;
        let mut skipped = encoder.encode_descriptor(
            "joblog_skipped_runs",
            "Occurrences of each scheduled job skipped because its previous run was still going on.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (job, n) in jobs.iter().filter_map(|j| j.skipped.map(|n| (&j.job, n))) {
            let labels = JobLabels { job: job.clone() };
            ConstCounter::new(n).encode(skipped.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl JobLogger {
    /// This logger's metrics (see the [module](crate::metrics)), to add a host's own.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Every metric in the OpenMetrics text format: reads the database's values (two
    /// statements, none of which reads every run), runs the hooks of
    /// [`Metrics::on_scrape`], and encodes. When the database cannot be read, the process's
    /// own values are still there and `joblog_database_up` is 0.
    pub async fn encode_metrics(&self) -> String {
        self.encode_metrics_as(Format::OpenMetrics).await
    }

    /// [`encode_metrics`](Self::encode_metrics) in `format` (serve it with
    /// [`Format::content_type`]; [`Format::from_accept`] picks what the scraper asked for).
    pub async fn encode_metrics_as(&self, format: Format) -> String {
        let text = self.encode_openmetrics().await;
        match format {
            Format::OpenMetrics => text,
            Format::Text => to_prometheus_text(&text),
        }
    }

    async fn encode_openmetrics(&self) -> String {
        let _one_at_a_time = self.metrics().inner.scrape.lock().await;
        let snapshot = match self.database_metrics().await {
            Ok(jobs) => DatabaseSnapshot { up: true, jobs },
            Err(e) => {
                tracing::warn!(error = %e, "joblog: metrics: could not read the jobs from the database");
                DatabaseSnapshot::default()
            }
        };
        let metrics = self.metrics();
        *lock(&metrics.inner.database.snapshot) = snapshot;
        let hooks: Vec<ScrapeHook> = lock(&metrics.inner.hooks).clone();
        for hook in hooks {
            hook().await;
        }
        metrics.encode()
    }

    async fn database_metrics(&self) -> Result<Vec<JobState>> {
        let mut jobs: Vec<JobState> = Vec::new();
        for s in self.job_summaries().await? {
            jobs.push(JobState {
                last_success: s
                    .last_success
                    .as_ref()
                    .map(|r| r.finished_at.unwrap_or(r.updated_at))
                    .map(|t| t.timestamp_micros() as f64 / 1e6),
                running: s.counts.new + s.counts.processing,
                job: s.job,
                missed: None,
                skipped: None,
                interval: None,
            });
        }
        for s in self.scheduled_jobs().schedules().await? {
            let at = s.last_success_at.map(|t| t.timestamp_micros() as f64 / 1e6);
            let state = match jobs.iter_mut().find(|j| j.job == s.job) {
                Some(state) => state,
                None => {
                    jobs.push(JobState {
                        job: s.job.clone(),
                        last_success: None,
                        running: 0,
                        missed: None,
                        skipped: None,
                        interval: None,
                    });
                    jobs.last_mut().expect("just pushed")
                }
            };
            state.last_success = match (state.last_success, at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            state.missed = Some(s.missed);
            state.interval = s.interval.map(|d| d.as_secs_f64());
            state.skipped = Some(u64::try_from(s.skipped_count).unwrap_or(0));
        }
        jobs.sort_by(|a, b| a.job.cmp(&b.job));
        Ok(jobs)
    }
}

#[cfg(test)]
mod tests {
    use super::{Format, to_prometheus_text};

    #[test]
    fn accept_picks_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
        assert_eq!(Format::from_accept(None), Format::Text);
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Text
        );
    }

    #[test]
    fn counters_are_declared_by_their_sample_name() {
        let om = "# HELP a_runs Runs.\n# TYPE a_runs counter\na_runs_total{job=\"x\"} 1\n\
                  # HELP b Gauge b.\n# TYPE b gauge\nb 2\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_runs_total Runs.\n# TYPE a_runs_total counter\na_runs_total{job=\"x\"} 1\n\
             # HELP b Gauge b.\n# TYPE b gauge\nb 2\n"
        );
    }
}
