//! Wall-clock time in the units the gateway stores: one place to read it, a leaf every layer
//! may use (the monotonic `Instant`s of latencies stay where they are measured).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    epoch_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch at `t` (0 before it).
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

/// Microseconds since the Unix epoch at the moment `at` (an `Instant` already passed).
pub fn epoch_us_at(at: Instant) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    now.saturating_sub(at.elapsed()).as_micros() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_units_agree() {
        let ms = now_ms();
        let s = now_s();
        assert!((ms / 1000) as i64 - s <= 1);
        let us = epoch_us_at(Instant::now());
        assert!((us / 1000 - ms as i64).abs() < 1000, "{us} vs {ms}");
        assert_eq!(epoch_ms(UNIX_EPOCH), 0);
        assert_eq!(epoch_ms(UNIX_EPOCH - std::time::Duration::from_secs(1)), 0);
    }
}
