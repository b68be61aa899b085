//! Tumbling windows aligned to the Unix epoch, per configured width, plus a since-load total:
//! what drift profiles and quality counts accumulate into. A window closes when the clock
//! passes its end (checked on every update and read), and a bounded number of closed windows
//! is kept.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct Window<T> {
    pub start_ms: i64,
    /// The end of a tumbling window; none for the since-load total.
    pub end_ms: Option<i64>,
    /// Updates it took (a window without any is not kept when it closes).
    pub updates: u64,
    pub value: T,
}

#[derive(Debug)]
pub struct Series<T> {
    pub name: String,
    pub width_ms: i64,
    pub current: Window<T>,
    /// Closed windows, oldest first.
    pub past: VecDeque<Window<T>>,
}

impl<T> Series<T> {
    /// The last closed window and the one closed before it.
    pub fn last_two(&self) -> (Option<&Window<T>>, Option<&Window<T>>) {
        let n = self.past.len();
        (
            n.checked_sub(1).and_then(|i| self.past.get(i)),
            n.checked_sub(2).and_then(|i| self.past.get(i)),
        )
    }
}

#[derive(Debug)]
pub struct Windowed<T: Clone> {
    zero: T,
    kept: usize,
    pub series: Vec<Series<T>>,
    pub total: Window<T>,
}

fn window_start(now_ms: i64, width_ms: i64) -> i64 {
    now_ms.div_euclid(width_ms) * width_ms
}

impl<T: Clone> Windowed<T> {
    /// `widths` as (name, milliseconds); `kept` closed windows per width.
    pub fn new(zero: T, widths: &[(String, i64)], kept: usize, now_ms: i64) -> Self {
        let series = widths
            .iter()
            .map(|(name, width_ms)| {
                let start_ms = window_start(now_ms, *width_ms);
                Series {
                    name: name.clone(),
                    width_ms: *width_ms,
                    current: Window {
                        start_ms,
                        end_ms: Some(start_ms + width_ms),
                        updates: 0,
                        value: zero.clone(),
                    },
                    past: VecDeque::new(),
                }
            })
            .collect();
        Self {
            total: Window {
                start_ms: now_ms,
                end_ms: None,
                updates: 0,
                value: zero.clone(),
            },
            zero,
            kept: kept.max(1),
            series,
        }
    }

    /// Closes the windows that ended by `now_ms`.
    pub fn rotate(&mut self, now_ms: i64) {
        for s in &mut self.series {
            if s.current.end_ms.is_some_and(|end| now_ms < end) {
                continue;
            }
            let start_ms = window_start(now_ms, s.width_ms);
            let fresh = Window {
                start_ms,
                end_ms: Some(start_ms + s.width_ms),
                updates: 0,
                value: self.zero.clone(),
            };
            let closed = std::mem::replace(&mut s.current, fresh);
            if closed.updates > 0 {
                s.past.push_back(closed);
                while s.past.len() > self.kept {
                    s.past.pop_front();
                }
            }
        }
    }

    /// Applies `f` to every open window and to the total, at `now_ms`.
    pub fn update(&mut self, now_ms: i64, mut f: impl FnMut(&mut T)) {
        self.rotate(now_ms);
        for s in &mut self.series {
            s.current.updates += 1;
            f(&mut s.current.value);
        }
        self.total.updates += 1;
        f(&mut self.total.value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths() -> Vec<(String, i64)> {
        vec![("1s".into(), 1000), ("3s".into(), 3000)]
    }

    #[test]
    fn windows_close_on_their_boundaries_and_stay_bounded() {
        let mut w = Windowed::new(0u64, &widths(), 2, 10_500);
        assert_eq!(w.series[0].current.start_ms, 10_000);
        assert_eq!(w.series[1].current.start_ms, 9_000);
        w.update(10_600, |n| *n += 1);
        w.update(10_999, |n| *n += 1);
        w.update(11_000, |n| *n += 5);
        let (last, before) = w.series[0].last_two();
        assert_eq!(last.map(|l| (l.start_ms, l.value)), Some((10_000, 2)));
        assert!(before.is_none());
        assert_eq!(w.series[1].current.value, 7);
        assert_eq!(w.total.value, 7);
        // Empty windows are not kept; only `kept` closed ones are.
        w.update(15_000, |n| *n += 1);
        w.update(16_000, |n| *n += 1);
        w.update(17_000, |n| *n += 1);
        let starts: Vec<i64> = w.series[0].past.iter().map(|p| p.start_ms).collect();
        assert_eq!(starts, vec![15_000, 16_000]);
        w.rotate(30_000);
        assert_eq!(w.series[0].last_two().0.map(|l| l.start_ms), Some(17_000));
        assert_eq!(w.total.value, 10);
    }
}
