//! What the person at the terminal sees, on stderr: log lines, every detail of a run as it
//! is written, and — on a terminal — `sync`'s progress bar.
//!
//! joblog emits each detail as a `tracing` event with target [`joblog::DETAIL_TARGET`], at
//! the detail's level, with the fields `job` and `run`. [`Terminal::install`] sets up the
//! subscriber that prints those as plain lines —
//! `2026-11-28T20:34:51.201337Z  INFO SyncOpenOrdersJob 20261128_203451: Batch 1 (10,000 rows, 10,000 staged)`
//! — and every other event in `tracing-subscriber`'s usual format, all filtered by
//! `RUST_LOG` (by default: info). Colours and the bar only when stderr is a terminal (and
//! `NO_COLOR` is unset); piped or redirected, the output is plain lines without escape
//! codes. Lines are printed above the bar, never through it.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use joblog::format::{count, duration, rate};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

use crate::open_orders::Progress;
use crate::open_orders::importer::Step;

/// stderr, shared by the log lines and the progress bar (a cheap handle; clones share it).
#[derive(Debug, Clone)]
pub struct Terminal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// stderr is a terminal: a progress bar may be drawn.
    interactive: bool,
    /// Colours in the log lines.
    ansi: bool,
    /// The bar being drawn, which every line is printed above.
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    /// The process's stderr: interactive when it is a terminal, coloured unless `NO_COLOR`
    /// is set.
    #[must_use]
    pub fn stderr() -> Self {
        let interactive = io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self::new(interactive, interactive && !no_color)
    }

    /// Plain lines, never a bar or a colour (as when stderr is redirected).
    #[must_use]
    pub fn plain() -> Self {
        Self::new(false, false)
    }

    fn new(interactive: bool, ansi: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                interactive,
                ansi,
                bar: Mutex::new(None),
            }),
        }
    }

    /// Installs the process's `tracing` subscriber: `RUST_LOG` (or `default_filter`), the
    /// details of runs as plain lines, everything else in the usual format, all on stderr.
    pub fn install(&self, default_filter: &str) -> Result<(), TryInitError> {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(self.clone())
            .with_ansi(self.inner.ansi)
            .with_filter(filter_fn(|meta| meta.target() != joblog::DETAIL_TARGET));
        tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .with(DetailLines {
                terminal: self.clone(),
            })
            .try_init()
    }

    /// A progress bar for one sync, drawn on stderr until dropped; `None` when stderr is
    /// not a terminal (the detail lines are the progress then).
    #[must_use]
    pub fn sync_progress(&self) -> Option<SyncProgress> {
        self.inner
            .interactive
            .then(|| SyncProgress::new(self.clone(), ProgressDrawTarget::stderr()))
    }

    /// Writes `bytes` to stderr, above the bar if one is drawn.
    fn write_out(&self, bytes: &[u8]) -> io::Result<()> {
        let bar = self
            .inner
            .bar
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().lock().write_all(bytes)),
            None => io::stderr().lock().write_all(bytes),
        }
    }

    fn set_bar(&self, bar: Option<ProgressBar>) {
        *self.inner.bar.lock().unwrap_or_else(PoisonError::into_inner) = bar;
    }
}

impl Write for Terminal {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_out(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Terminal {
    type Writer = Terminal;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The layer printing each detail of a run as one line.
struct DetailLines {
    terminal: Terminal,
}

impl<S: Subscriber> Layer<S> for DetailLines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if meta.target() != joblog::DETAIL_TARGET {
            return;
        }
        let mut fields = DetailFields::default();
        event.record(&mut fields);
        let line = detail_line(Utc::now(), *meta.level(), &fields, self.terminal.inner.ansi);
        // Nowhere to report a failed write to stderr.
        let _ = self.terminal.write_out(line.as_bytes());
    }
}

/// The fields of a detail event.
#[derive(Debug, Default)]
struct DetailFields {
    job: String,
    run: String,
    message: String,
}

impl Visit for DetailFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "job" => self.job = value.to_owned(),
            "run" => self.run = value.to_owned(),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "job" => self.job = format!("{value:?}"),
            "run" => self.run = format!("{value:?}"),
            // A message is `format_args!`, whose Debug is its text.
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

/// `2026-11-28T20:34:51.201337Z  INFO SyncOpenOrdersJob 20261128_203451: message`, laid
/// out as tracing-subscriber's own lines.
fn detail_line(at: DateTime<Utc>, level: Level, fields: &DetailFields, ansi: bool) -> String {
    let mut line = at.format("%Y-%m-%dT%H:%M:%S%.6fZ ").to_string();
    let colour = match level {
        Level::ERROR => "31",
        Level::WARN => "33",
        Level::INFO => "32",
        _ => "34",
    };
    if ansi {
        let _ = write!(line, "\x1b[{colour}m{level:>5}\x1b[0m");
    } else {
        let _ = write!(line, "{level:>5}");
    }
    let _ = writeln!(line, " {} {}: {}", fields.job, fields.run, fields.message);
    line
}

/// `sync`'s progress bar, fed by the importer's steps ([`Progress::step`]): a spinner with
/// the rows read and the rate while the source is read, then a bar over the index
/// builds. Cleared when dropped.
#[derive(Debug)]
pub struct SyncProgress {
    terminal: Terminal,
    bar: ProgressBar,
    state: Mutex<BarState>,
}

#[derive(Debug, Default)]
struct BarState {
    /// Rows read so far (reading and staging reports interleave; the bar never goes back).
    read: u64,
    /// When the index builds began.
    index_started: Option<Instant>,
}

impl SyncProgress {
    fn new(terminal: Terminal, target: ProgressDrawTarget) -> Self {
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner:.cyan} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message("Connecting to SQL Server and running the query…");
        bar.enable_steady_tick(Duration::from_millis(120));
        terminal.set_bar(Some(bar.clone()));
        Self {
            terminal,
            bar,
            state: Mutex::new(BarState::default()),
        }
    }

    fn show(&self, step: Step) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match step {
            Step::Reading { rows, elapsed } | Step::Fetching { rows, elapsed } => {
                state.read = state.read.max(rows);
                self.bar.set_position(state.read);
                self.bar.set_message(format!(
                    "Fetching open orders: {} rows ({} rows/s)",
                    count(state.read),
                    rate(state.read, elapsed)
                ));
            }
            Step::Fetched { rows, elapsed } => {
                state.read = rows;
                self.bar.set_message(format!(
                    "Fetched {} open orders in {}",
                    count(rows),
                    duration(elapsed)
                ));
            }
            Step::Batch { staged, .. } => {
                state.read = state.read.max(staged);
                self.bar.set_position(state.read);
            }
            Step::Indexing { index, indexes } => {
                if index == 0 {
                    state.index_started = Some(Instant::now());
                    self.bar.set_length(indexes);
                    self.bar.set_position(0);
                    self.bar.set_style(
                        ProgressStyle::with_template(
                            "{spinner:.cyan} Indexing [{bar:20.cyan/blue}] {wide_msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                }
                self.bar.set_position(index);
                let elapsed = state.index_started.map_or(Duration::ZERO, |t| t.elapsed());
                self.bar.set_message(format!(
                    "index {index}/{indexes} on {} rows, {}",
                    count(state.read),
                    duration(elapsed)
                ));
            }
            Step::Indexed { indexes, elapsed, .. } => {
                self.bar.set_message(format!(
                    "{indexes} indexes built in {}; swapping the new snapshot in",
                    duration(elapsed)
                ));
            }
            Step::Replaced { rows, previous, .. } => {
                self.bar.set_message(format!(
                    "Replaced open_orders: {} rows (previous snapshot: {} rows)",
                    count(rows),
                    count(previous)
                ));
            }
        }
    }
}

impl Progress for SyncProgress {
    // The lines reach the terminal as the run's details (through `tracing`).
    fn info(&self, _: String) {}
    fn warn(&self, _: String) {}
    fn step(&self, step: Step) {
        self.show(step);
    }
}

impl Drop for SyncProgress {
    fn drop(&mut self) {
        self.terminal.set_bar(None);
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_is_one_plain_line() {
        let at = DateTime::parse_from_rfc3339("2026-11-28T20:34:51.201337Z")
            .unwrap()
            .with_timezone(&Utc);
        let fields = DetailFields {
            job: "SyncOpenOrdersJob".into(),
            run: "20261128_203451".into(),
            message: "Batch 1 (10,000 rows, 10,000 staged)".into(),
        };
        assert_eq!(
            detail_line(at, Level::INFO, &fields, false),
            "2026-11-28T20:34:51.201337Z  INFO SyncOpenOrdersJob 20261128_203451: Batch 1 (10,000 rows, 10,000 staged)\n"
        );
        assert_eq!(
            detail_line(at, Level::WARN, &fields, false),
            "2026-11-28T20:34:51.201337Z  WARN SyncOpenOrdersJob 20261128_203451: Batch 1 (10,000 rows, 10,000 staged)\n"
        );
        let coloured = detail_line(at, Level::ERROR, &fields, true);
        assert!(coloured.contains("\x1b[31mERROR\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn redirected_stderr_gets_no_bar() {
        assert!(Terminal::plain().sync_progress().is_none());
    }

    #[test]
    fn the_bar_shows_rows_rate_and_indexes() {
        let terminal = Terminal::plain();
        let progress = SyncProgress::new(terminal.clone(), ProgressDrawTarget::hidden());
        assert!(
            terminal.inner.bar.lock().unwrap().is_some(),
            "lines go above the bar"
        );
        let second = Duration::from_secs(1);
        progress.step(Step::Reading {
            rows: 4_000,
            elapsed: second,
        });
        assert_eq!(
            progress.bar.message(),
            "Fetching open orders: 4,000 rows (4,000 rows/s)"
        );
        progress.step(Step::Fetching {
            rows: 3_000,
            elapsed: 2 * second,
        });
        assert_eq!(
            progress.bar.message(),
            "Fetching open orders: 4,000 rows (2,000 rows/s)",
            "never backwards"
        );
        progress.step(Step::Fetched {
            rows: 25_000,
            elapsed: 3 * second,
        });
        progress.step(Step::Indexing { index: 0, indexes: 7 });
        assert_eq!((progress.bar.position(), progress.bar.length()), (0, Some(7)));
        progress.step(Step::Indexing { index: 2, indexes: 7 });
        assert_eq!(progress.bar.position(), 2);
        assert!(
            progress.bar.message().starts_with("index 2/7 on 25,000 rows, "),
            "{}",
            progress.bar.message()
        );
        drop(progress);
        assert!(terminal.inner.bar.lock().unwrap().is_none());
    }
}
