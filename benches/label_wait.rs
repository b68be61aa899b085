//! The longest `PendingLabels::expect` call: one-row requests held for their labels, as the
//! request path holds them, well past `max_pending_rows`, so the oldest leave as new ones come,
//! each call timed on its own (the clock's reads included). A rehash of every waiting request
//! at once, with the wait's lock held, shows as the longest call; the mean is what a request
//! pays. The requests carry no event time, so only the map of waiting requests is used, not
//! the event-time index.
//!
//! Run: `cargo bench --bench label_wait` (CALLS=n, 3,000,000 by default; BOUND=n the rows
//! held, 100,000 by default, the `monitoring.labels.max_pending_rows` default).

use std::sync::Arc;
use std::time::{Duration, Instant};

use modelgate::data::frame::{Column, ColumnData, Frame};
use modelgate::drift::monitor::{Prediction, Scorer};
use modelgate::drift::{MonitorConfig, PendingLabels, SlotMonitor};
use modelgate::inference_log::RequestId;
use modelgate::settings::monitoring::{LabelSettings, MonitoringSettings};

mod settings_from_env;
use settings_from_env::env_or;

fn main() {
    // Cargo passes `--bench` (and a filter, when given); neither applies here.
    let calls: usize = env_or("CALLS", 3_000_000);
    let labels = LabelSettings {
        max_pending_rows: env_or("BOUND", 100_000),
        ..LabelSettings::default()
    };
    let settings = MonitoringSettings {
        enabled: true,
        ..MonitoringSettings::default()
    };
    let config = MonitorConfig::new(&settings).expect("monitoring is on");
    let monitor = Arc::new(SlotMonitor::new(config, 0));
    let frame = Arc::new(Frame {
        columns: vec![Column::scalar("x", ColumnData::F64(vec![1.0]))],
    });
    let pending = PendingLabels::default();
    let (mut total, mut longest) = (Duration::ZERO, Duration::ZERO);
    let (mut over_half_ms, mut over_5_ms, mut most_held) = (0, 0, 0);
    for n in 0..calls {
        let id = RequestId::new().text;
        let scorer = Scorer {
            monitor: monitor.clone(),
            epoch: 0,
            request_rows: None,
            predictions: vec![Prediction {
                label: Some(true),
                probability: Some(0.7),
            }],
        };
        // A millisecond every 28 calls: about the rate of one saturated core.
        let now = (n / 28) as i64;
        let started = Instant::now();
        pending.expect(&labels, id, frame.clone(), None, vec![scorer], now);
        let took = started.elapsed();
        total += took;
        longest = longest.max(took);
        over_half_ms += usize::from(took > Duration::from_micros(500));
        over_5_ms += usize::from(took > Duration::from_millis(5));
        if n % 1024 == 0 {
            most_held = most_held.max(pending.rows());
        }
    }
    println!(
        "{calls} calls, {most_held} held at most (bound {}): mean {:.2} µs, longest {:.2} ms, over 0.5 ms: {over_half_ms}, over 5 ms: {over_5_ms}",
        labels.max_pending_rows,
        total.as_secs_f64() * 1e6 / calls as f64,
        longest.as_secs_f64() * 1e3,
    );
}
