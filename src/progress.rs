//! How far a long operation has got, for the person waiting: a progress bar when stderr is a
//! terminal, else a log line every few seconds (log pipelines and CI get lines, not redraws).
//! Model downloads and `features load` report through it.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tracing::info;

/// How often a line is logged when there is no terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Rows,
}

/// Every bar drawn at once (downloads may run side by side), below the log lines.
fn bars() -> &'static indicatif::MultiProgress {
    static BARS: OnceLock<indicatif::MultiProgress> = OnceLock::new();
    BARS.get_or_init(indicatif::MultiProgress::new)
}

/// Where log lines go: stderr, with any progress bars cleared while a line is written and
/// drawn again under it (a line written across a bar would garble both).
pub fn log_writer() -> LogWriter {
    LogWriter
}

pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        bars().suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub struct Progress {
    what: String,
    unit: Unit,
    total: u64,
    bar: Option<indicatif::ProgressBar>,
    told: Instant,
}

impl Progress {
    /// Starts reporting `what` (of `total` units; 0 when not known), and says so once.
    pub fn start(what: &str, total: u64, unit: Unit) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = bars().add(indicatif::ProgressBar::new(total));
            let counts = match unit {
                Unit::Bytes => "{bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                Unit::Rows => "{human_pos}/{human_len} rows ({per_sec}, {eta})",
            };
            if let Ok(style) =
                indicatif::ProgressStyle::with_template(&format!("{{msg}} [{{bar:30}}] {counts}"))
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_owned());
            bar
        });
        info!("{what}: {}", amount(total, unit));
        Self {
            what: what.to_owned(),
            unit,
            total,
            bar,
            told: Instant::now(),
        }
    }

    /// `done` units so far.
    pub fn set(&mut self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
        } else if self.told.elapsed() >= LINE_EVERY {
            self.told = Instant::now();
            info!(
                "{}: {} of {}",
                self.what,
                amount(done, self.unit),
                amount(self.total, self.unit)
            );
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            bars().remove(&bar);
        }
    }
}

/// `12.3 MB` or `1200 rows`.
pub fn amount(n: u64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => format!("{:.1} MB", n as f64 / 1e6),
        Unit::Rows => format!("{n} rows"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_as_people_say_them() {
        assert_eq!(amount(200_000_000, Unit::Bytes), "200.0 MB");
        assert_eq!(amount(1200, Unit::Rows), "1200 rows");
    }
}
