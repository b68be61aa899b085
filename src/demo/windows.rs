//! The streaming features, computed along the stream as train.py's `compute_features` does,
//! with sliding windows that hold only what is still inside them (memory stays bounded).

use std::collections::VecDeque;

/// What the windows say about one transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFeatures {
    /// The customer's transactions in the count window up to and including this one.
    pub transaction_count: i64,
    /// The product's largest Amount in the max window up to and including this one.
    pub max_product_amount: f64,
    /// `round((max - amount) / max, 2)`; 0 when the max is 0 (the demo's amounts never are).
    pub max_difference_ratio: f64,
}

/// Per-customer and per-product sliding windows over event time (ms).
#[derive(Debug)]
pub struct Windows {
    count_window_ms: i64,
    max_window_ms: i64,
    /// Timestamps of each customer's recent transactions, oldest first.
    customers: Vec<VecDeque<i64>>,
    /// Per product, (timestamp, amount) with strictly decreasing amounts: the front is the
    /// window's max, and an entry that a later, larger one dominates can never be the max again.
    products: Vec<VecDeque<(i64, f64)>>,
}

impl Windows {
    pub fn new(
        customers: usize,
        products: usize,
        count_window_ms: i64,
        max_window_ms: i64,
    ) -> Self {
        Self {
            count_window_ms,
            max_window_ms,
            customers: vec![VecDeque::new(); customers],
            products: vec![VecDeque::new(); products],
        }
    }

    /// Adds a transaction (timestamps must not decrease) and returns its features. Slots are
    /// indexes into the customer and product tables; one out of range gets a window of its own
    /// instead of failing.
    pub fn observe(
        &mut self,
        customer: usize,
        product: usize,
        ts: i64,
        amount: f64,
    ) -> WindowFeatures {
        if customer >= self.customers.len() {
            self.customers.resize_with(customer + 1, VecDeque::new);
        }
        if product >= self.products.len() {
            self.products.resize_with(product + 1, VecDeque::new);
        }

        let seen = &mut self.customers[customer];
        seen.push_back(ts);
        // An event exactly one window old is out, as in train.py (`<= ts - window`).
        while seen
            .front()
            .is_some_and(|&t| t <= ts - self.count_window_ms)
        {
            seen.pop_front();
        }
        let transaction_count = seen.len() as i64;

        let maxes = &mut self.products[product];
        while maxes.back().is_some_and(|&(_, a)| a <= amount) {
            maxes.pop_back();
        }
        maxes.push_back((ts, amount));
        while maxes
            .front()
            .is_some_and(|&(t, _)| t <= ts - self.max_window_ms)
        {
            maxes.pop_front();
        }
        // The entry just pushed is inside the window, so the deque is never empty here.
        let max_product_amount = maxes.front().map_or(amount, |&(_, a)| a);

        WindowFeatures {
            transaction_count,
            max_product_amount,
            max_difference_ratio: difference_ratio(max_product_amount, amount),
        }
    }

    /// Entries held over all windows (for tests: it must stay bounded).
    pub fn held(&self) -> usize {
        self.customers.iter().map(VecDeque::len).sum::<usize>()
            + self.products.iter().map(VecDeque::len).sum::<usize>()
    }
}

/// DEMO.md's on-demand feature `round((max - amount) / max, 2)`.
pub fn difference_ratio(max: f64, amount: f64) -> f64 {
    if max == 0.0 {
        return 0.0;
    }
    round2((max - amount) / max)
}

/// Python's `round(x, 2)`: the decimal nearest to the exact binary value, ties to even (Rust's
/// fixed-precision formatting rounds the same way; `x * 100` would add an error of its own).
pub fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round2_matches_python() {
        // Python: round(2.675, 2) == 2.67 (just below the tie), round(0.125, 2) == 0.12.
        for (x, want) in [
            (2.675, 2.67),
            (0.125, 0.12),
            (0.375, 0.38),
            (155.2000001, 155.2),
            (-5.706862, -5.71),
            (1.005, 1.0),
        ] {
            assert_eq!(round2(x), want, "round({x}, 2)");
        }
        assert!(round2(f64::NAN).is_nan());
    }

    #[test]
    fn demo_md_ratio_check() {
        assert_eq!(difference_ratio(15.01, 100.67), -5.71);
        assert_eq!(difference_ratio(0.0, 1.0), 0.0);
    }

    #[test]
    fn count_window_includes_this_event_and_drops_exactly_old_ones() {
        let mut w = Windows::new(2, 1, 120_000, 180_000);
        assert_eq!(w.observe(0, 0, 1_000, 1.0).transaction_count, 1);
        assert_eq!(w.observe(0, 0, 2_000, 1.0).transaction_count, 2);
        assert_eq!(w.observe(1, 0, 3_000, 1.0).transaction_count, 1);
        // 121_000 - 120_000 = 1_000: the first event is exactly a window old, so out.
        assert_eq!(w.observe(0, 0, 121_000, 1.0).transaction_count, 2);
        assert_eq!(w.observe(0, 0, 500_000, 1.0).transaction_count, 1);
    }

    #[test]
    fn max_window_tracks_the_largest_recent_amount() {
        let mut w = Windows::new(1, 2, 120_000, 180_000);
        let f = w.observe(0, 0, 0, 5.0);
        assert_eq!((f.max_product_amount, f.max_difference_ratio), (5.0, 0.0));
        let f = w.observe(0, 0, 10_000, 4.0);
        assert_eq!((f.max_product_amount, f.max_difference_ratio), (5.0, 0.2));
        // Another product has its own window.
        assert_eq!(w.observe(0, 1, 20_000, 1.0).max_product_amount, 1.0);
        let f = w.observe(0, 0, 179_999, 3.0);
        assert_eq!(f.max_product_amount, 5.0);
        // 5.0 (ts 0) leaves at 180_000; 4.0 (ts 10_000) is the max then.
        assert_eq!(w.observe(0, 0, 180_000, 1.0).max_product_amount, 4.0);
        assert_eq!(w.observe(0, 0, 190_000, 2.0).max_product_amount, 3.0);
    }

    #[test]
    fn max_window_agrees_with_a_brute_force_max() {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut w = Windows::new(1, 1, 120_000, 180_000);
        let mut all: Vec<(i64, f64)> = Vec::new();
        let mut ts = 0;
        for _ in 0..5_000 {
            ts += rng.i64(0..20_000);
            let amount = f64::from(rng.u32(0..1_000)) / 10.0;
            all.push((ts, amount));
            let want = all
                .iter()
                .filter(|(t, _)| *t > ts - 180_000)
                .map(|(_, a)| *a)
                .fold(f64::MIN, f64::max);
            assert_eq!(w.observe(0, 0, ts, amount).max_product_amount, want);
        }
        assert!(w.held() < 100, "{}", w.held());
    }

    #[test]
    fn unknown_slots_get_their_own_windows() {
        let mut w = Windows::new(1, 1, 120_000, 180_000);
        let f = w.observe(5, 7, 0, 2.0);
        assert_eq!((f.transaction_count, f.max_product_amount), (1, 2.0));
    }
}
