//! A served entity's recent lines about loading and swapping versions, for Databricks' `logs`
//! and `build-logs` calls. The same events go to the process log; these are kept per served
//! entity, in memory, bounded in lines and in bytes per line.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Lines `logs` keeps (the oldest go first).
pub const MAX_LINES: usize = 200;
/// Lines of one load that `build-logs` keeps.
pub const MAX_BUILD_LINES: usize = 50;
/// Bytes of one line (a longer one is cut, and says so).
pub const MAX_LINE_BYTES: usize = 2048;

#[derive(Default)]
pub struct Journal {
    inner: Mutex<Lines>,
}

#[derive(Default)]
struct Lines {
    all: VecDeque<String>,
    /// The latest load's lines, from its first.
    build: Vec<String>,
}

/// How serious a line is.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        }
    }
}

impl Journal {
    /// A line about the served entity, not part of a load (`at_ms`: Unix milliseconds).
    pub fn record(&self, at_ms: u64, level: Level, text: &str) {
        self.push(at_ms, level, text, false);
    }

    /// The first line of a load: `build-logs` starts over with it.
    pub fn begin_load(&self, at_ms: u64, text: &str) {
        self.lock().build.clear();
        self.push(at_ms, Level::Info, text, true);
    }

    /// A line of the load under way.
    pub fn load_step(&self, at_ms: u64, level: Level, text: &str) {
        self.push(at_ms, level, text, true);
    }

    /// Every kept line, oldest first, one per line.
    pub fn logs(&self) -> String {
        join(self.lock().all.iter())
    }

    /// The latest load's lines.
    pub fn build_logs(&self) -> String {
        join(self.lock().build.iter())
    }

    fn push(&self, at_ms: u64, level: Level, text: &str, build: bool) {
        let line = format_line(at_ms, level, text);
        let mut lines = self.lock();
        if build && lines.build.len() < MAX_BUILD_LINES {
            lines.build.push(line.clone());
        }
        if lines.all.len() == MAX_LINES {
            lines.all.pop_front();
        }
        lines.all.push_back(line);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lines> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn join<'a>(lines: impl Iterator<Item = &'a String>) -> String {
    let mut out = String::new();
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn format_line(at_ms: u64, level: Level, text: &str) -> String {
    let at = chrono::DateTime::from_timestamp_millis(at_ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let mut line = format!("{at} {} {text}", level.as_str());
    if line.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES - 20;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push_str(" [line cut]");
    }
    // One event, one line: a multi-line message (an engine's error) stays on its line.
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_logs_hold_the_latest_load_and_logs_the_latest_lines() {
        let j = Journal::default();
        j.begin_load(0, "loading version 1");
        j.load_step(1_000, Level::Info, "validated");
        j.record(2_000, Level::Warn, "registry unreachable");
        j.begin_load(3_000, "loading version 2");
        j.load_step(4_000, Level::Error, "failed:\nbad op");
        assert_eq!(
            j.build_logs(),
            "1970-01-01T00:00:03.000Z INFO loading version 2\n1970-01-01T00:00:04.000Z ERROR failed: bad op\n"
        );
        assert_eq!(j.logs().lines().count(), 5);
        for i in 0..MAX_LINES {
            j.record(5_000, Level::Info, &i.to_string());
        }
        let logs = j.logs();
        assert_eq!(logs.lines().count(), MAX_LINES);
        assert!(logs.lines().next().unwrap().ends_with(" 0"));
        let long = "é".repeat(MAX_LINE_BYTES);
        j.record(0, Level::Info, &long);
        let last = j.logs().lines().last().unwrap().to_owned();
        assert!(last.len() <= MAX_LINE_BYTES && last.ends_with("[line cut]"));
    }
}
