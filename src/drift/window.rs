//! Tumbling windows aligned to the Unix epoch, per configured width, plus a since-load total:
//! what drift profiles and quality counts accumulate into. A window closes when the clock
//! passes its end (checked on every update and read), and a bounded number of closed windows
//! is kept.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window<T> {
    pub start_ms: i64,
    /// The end of a tumbling window; none for the since-load total.
    pub end_ms: Option<i64>,
    /// Updates it took (a window without any is not kept when it closes).
    pub updates: u64,
    pub value: T,
}

#[derive(Debug, Clone)]
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

#[derive(Debug, Clone)]
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

/// Counts that another replica's counts of the same thing can be added to.
pub trait Mergeable {
    /// Adds `other`; false (nothing added) when the two do not fit together.
    fn merge(&mut self, other: &Self) -> bool;
}

impl Mergeable for crate::drift::profile::Counts {
    fn merge(&mut self, other: &Self) -> bool {
        crate::drift::profile::Counts::merge(self, other)
    }
}

impl Mergeable for crate::drift::quality::QualityCounts {
    fn merge(&mut self, other: &Self) -> bool {
        crate::drift::quality::QualityCounts::merge(self, other)
    }
}

/// Every window of a [`Windowed`], open and closed, as another replica reads them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowsSnapshot<T> {
    /// Per width, by name: the closed windows kept, oldest first, then the open one.
    pub series: Vec<(String, Vec<Window<T>>)>,
    pub total: Window<T>,
}

impl<T: Clone> Windowed<T> {
    pub fn snapshot(&self) -> WindowsSnapshot<T> {
        WindowsSnapshot {
            series: self
                .series
                .iter()
                .map(|s| {
                    let mut windows: Vec<Window<T>> = s.past.iter().cloned().collect();
                    windows.push(s.current.clone());
                    (s.name.clone(), windows)
                })
                .collect(),
            total: self.total.clone(),
        }
    }
}

impl<T: Clone + Mergeable> Windowed<T> {
    /// Adds another replica's windows: each to the window of the same width and start here
    /// (one this replica has closed or still has open, or a closed one it never had, kept in
    /// order within `kept`); windows that begin after this replica's open one (its clock is
    /// behind) wait for a later read. The totals add up, the earliest start kept. False when
    /// the counts do not fit (another baseline): nothing of them is added.
    pub fn absorb(&mut self, other: &WindowsSnapshot<T>) -> bool {
        let mut merged = self
            .series
            .iter()
            .map(|s| (s.current.clone(), s.past.clone()))
            .collect::<Vec<_>>();
        let mut total = self.total.clone();
        for (s, (current, past)) in self.series.iter().zip(merged.iter_mut()) {
            let Some((_, theirs)) = other.series.iter().find(|(name, _)| *name == s.name) else {
                continue;
            };
            let open_start = current.start_ms;
            for w in theirs.iter().filter(|w| w.updates > 0) {
                let target = if w.start_ms == open_start {
                    Some(&mut *current)
                } else {
                    past.iter_mut().find(|p| p.start_ms == w.start_ms)
                };
                match target {
                    Some(t) => {
                        if !t.value.merge(&w.value) {
                            return false;
                        }
                        t.updates += w.updates;
                    }
                    None if w.start_ms < open_start => {
                        let at = past
                            .iter()
                            .position(|p| p.start_ms > w.start_ms)
                            .unwrap_or(past.len());
                        let mut closed = w.clone();
                        closed.end_ms = Some(w.start_ms + s.width_ms);
                        past.insert(at, closed);
                    }
                    None => {}
                }
            }
            while past.len() > self.kept {
                past.pop_front();
            }
        }
        if !total.value.merge(&other.total.value) {
            return false;
        }
        total.updates += other.total.updates;
        total.start_ms = total.start_ms.min(other.total.start_ms);
        for (s, (current, past)) in self.series.iter_mut().zip(merged) {
            s.current = current;
            s.past = past;
        }
        self.total = total;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widths() -> Vec<(String, i64)> {
        vec![("1s".into(), 1000), ("3s".into(), 3000)]
    }

    /// Counts that refuse to merge with 999 (as another baseline's would).
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct N(u64);

    impl Mergeable for N {
        fn merge(&mut self, other: &Self) -> bool {
            if other.0 == 999 {
                return false;
            }
            self.0 += other.0;
            true
        }
    }

    #[test]
    fn another_replicas_windows_add_to_those_of_the_same_start() {
        let widths = vec![("1s".to_owned(), 1000)];
        let mut ours = Windowed::new(N(0), &widths, 1, 10_000);
        ours.update(10_100, |n| n.0 += 1);
        ours.update(11_100, |n| n.0 += 2);
        // Another replica, started earlier: windows at 9 s (which this one never had), 10 s,
        // and its open 11 s; its clock ahead, it has also opened 12 s.
        let mut theirs = Windowed::new(N(0), &widths, 5, 9_000);
        for (t, k) in [(9_100, 10), (10_200, 20), (11_200, 30), (12_100, 40)] {
            theirs.update(t, |n| n.0 += k);
        }
        let mut merged = ours.clone();
        assert!(merged.absorb(&theirs.snapshot()));
        let s = &merged.series[0];
        // 12 s has not begun here: it waits. 11 s is open here, 10 s closed, 9 s added in
        // order, and only 1 closed window is kept (9 s goes).
        assert_eq!((s.current.start_ms, s.current.value), (11_000, N(2 + 30)));
        let past: Vec<(i64, N, Option<i64>)> = s
            .past
            .iter()
            .map(|w| (w.start_ms, w.value, w.end_ms))
            .collect();
        assert_eq!(past, vec![(10_000, N(1 + 20), Some(11_000))]);
        assert_eq!(merged.total.value, N(3 + 100));
        assert_eq!(merged.total.start_ms, 9_000);
        assert_eq!(merged.total.updates, 6);
        let mut kept = Windowed::new(N(0), &widths, 3, 10_000);
        kept.update(10_100, |n| n.0 += 1);
        kept.update(11_100, |n| n.0 += 2);
        assert!(kept.absorb(&theirs.snapshot()));
        let starts: Vec<i64> = kept.series[0].past.iter().map(|w| w.start_ms).collect();
        assert_eq!(starts, vec![9_000, 10_000]);
        // Counts that do not fit change nothing.
        let mut odd = Windowed::new(N(0), &widths, 2, 11_000);
        odd.update(11_500, |n| n.0 = 999);
        let before = ours.total.value;
        assert!(!ours.absorb(&odd.snapshot()));
        assert_eq!(ours.total.value, before);
        assert_eq!(ours.series[0].current.value, N(2));
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
