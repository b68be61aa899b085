//! The endless transaction stream: train.py's `generate_stream` and `compute_features` as an
//! iterator on a simulated clock, with the same distributions as the models' training data.
//!
//! Legitimate transactions (Label 0) arrive as a Poisson process; risky ones (Label 1) come in
//! bursts from one customer. train.py generates the whole period and sorts it; here the next
//! legitimate arrival and the pending burst members wait in a small priority queue and leave it
//! in train.py's sort order (timestamp, customer, product), so the stream is time-ordered without
//! being materialised. Amounts are drawn when a transaction leaves the queue, so the drift knob
//! applies to everything emitted after it is flipped (train.py: `ts >= DRIFT_AT`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use fastrand::Rng;

use super::dist;
use super::windows::{round2, Windows};

/// The first customer id; customers are `FIRST_CUSTOMER..FIRST_CUSTOMER + CUSTOMERS`.
pub const FIRST_CUSTOMER: i64 = 1234;
/// 27 customers, 1234..=1260.
pub const CUSTOMERS: usize = 27;
pub const PRODUCTS: [&str; 3] = ["Product A", "Product B", "Product C"];
pub const PRODUCT_WEIGHTS: [f64; 3] = [0.4, 0.3, 0.3];

/// DEMO.md's generator for one product; values before the division by 100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProductParams {
    pub min: f64,
    pub max: f64,
    /// The legitimate Normal's mean (Product B's lies outside its range, as in the original).
    pub mean: f64,
    pub a: f64,
    pub b: f64,
}

/// In the order of [`PRODUCTS`].
pub const PRODUCT_PARAMS: [ProductParams; 3] = [
    ProductParams {
        min: 1000.0,
        max: 25001.0,
        mean: 15520.0,
        a: 4.0,
        b: 10.0,
    },
    ProductParams {
        min: 1000.0,
        max: 5501.0,
        mean: 35520.0,
        a: 10.0,
        b: 4.0,
    },
    ProductParams {
        min: 10000.0,
        max: 40001.0,
        mean: 30520.0,
        a: 3.0,
        b: 10.0,
    },
];

/// With drift on, every Beta parameter equal to `DRIFT_FROM` becomes `DRIFT_TO`.
pub const DRIFT_FROM: f64 = 10.0;
pub const DRIFT_TO: f64 = 8.0;
/// The legitimate Normal's standard deviation, before the division by 100.
pub const NORMAL_SD: f64 = 0.001;

/// Legitimate transactions per second (all customers together).
pub const BACKGROUND_RATE: f64 = 0.30;
/// Share of legitimate transactions whose Amount is Beta-drawn (small ordinary purchases).
pub const LEGIT_BETA_SHARE: f64 = 0.10;
/// Risky bursts per second.
pub const BURST_RATE: f64 = 0.006;
/// Transactions per burst, inclusive.
pub const BURST_SIZE: (u32, u32) = (4, 10);
/// A burst's span in seconds: its members fall in [start, start + span).
pub const BURST_SPAN_S: (f64, f64) = (40.0, 120.0);

/// transaction_count_ft's window: 2 minutes.
pub const COUNT_WINDOW_MS: i64 = 120_000;
/// product_3minute_max_price_ft's window: 3 minutes.
pub const MAX_WINDOW_MS: i64 = 180_000;

/// One generated transaction with its label and streaming features.
#[derive(Debug, Clone, PartialEq)]
pub struct Transaction {
    pub customer_id: i64,
    /// Event time, ms since the epoch; strictly increasing along a stream.
    pub timestamp_ms: i64,
    /// One of [`PRODUCTS`].
    pub product: &'static str,
    /// Rounded to cents.
    pub amount: f64,
    /// 1 = risky (a burst member), 0 = legitimate.
    pub label: i64,
    /// The customer's transactions in the 2 minutes up to and including this one.
    pub transaction_count: i64,
    /// No other transaction of the customer in that window (`transaction_count == 1`).
    pub is_timeout: bool,
    /// The product's max Amount in the 3 minutes up to and including this one.
    pub max_product_amount: f64,
    /// `round((max_product_amount - amount) / max_product_amount, 2)`.
    pub max_difference_ratio: f64,
}

/// The Beta parameters of a product (an index into [`PRODUCTS`]), drifted (DEMO.md's 10 -> 8)
/// or not.
pub fn beta_params(product: usize, drifted: bool) -> (f64, f64) {
    beta_params_to(product, drifted.then_some(DRIFT_TO))
}

/// The Beta parameters of a product with every parameter equal to [`DRIFT_FROM`] replaced by
/// `drift_to` (when given).
pub fn beta_params_to(product: usize, drift_to: Option<f64>) -> (f64, f64) {
    let p = PRODUCT_PARAMS[product % PRODUCT_PARAMS.len()];
    let shift = |x: f64| match drift_to {
        Some(to) if x == DRIFT_FROM => to,
        _ => x,
    };
    (shift(p.a), shift(p.b))
}

/// train.py's `draw_amount`: Beta scaled to [min, max] or the tight Normal, / 100, to cents.
fn draw_amount(rng: &mut Rng, product: usize, beta: bool, drift_to: Option<f64>) -> f64 {
    let p = PRODUCT_PARAMS[product % PRODUCT_PARAMS.len()];
    let raw = if beta {
        let (a, b) = beta_params_to(product, drift_to);
        dist::beta(rng, a, b) * (p.max - p.min) + p.min
    } else {
        dist::normal(rng, p.mean, NORMAL_SD)
    };
    round2(raw / 100.0)
}

/// A transaction waiting for its turn. The derived order is the emission order: train.py's
/// sort key (timestamp, customer, product), then legitimate before risky and scheduling order,
/// as its stable sort of background-then-bursts leaves ties.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    ts: i64,
    customer: usize,
    product: usize,
    label: i64,
    seq: u64,
    /// Amount from the product's Beta rather than the Normal.
    beta: bool,
}

/// The endless, time-ordered, seeded transaction stream.
///
/// ```
/// use modelgate::demo::TransactionStream;
/// let mut stream = TransactionStream::new(7, 1_795_000_000_000);
/// let first: Vec<_> = stream.by_ref().take(1_000).collect();
/// assert!(first.windows(2).all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
/// stream.set_drift(true); // from here on, Beta parameters 10 become 8
/// assert!(stream.next().is_some());
/// ```
#[derive(Debug)]
pub struct TransactionStream {
    /// Arrivals (times, customers, products, bursts) and amounts draw from separate
    /// generators, so flipping drift changes amounts only: the same seed gives the same
    /// arrivals whatever the knob does.
    arrivals: Rng,
    amounts: Rng,
    drift: bool,
    /// What Beta parameters equal to [`DRIFT_FROM`] become while drift is on.
    drift_to: f64,
    /// The next legitimate arrival (always drawn one ahead) and its exact time.
    background: Pending,
    background_t: f64,
    /// When the next burst starts (exact ms); its members are drawn when the stream gets there.
    next_burst_t: f64,
    /// Members of bursts already started, soonest first.
    bursts: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    /// The last emitted timestamp: timestamps are made unique as train.py does.
    last_ts: Option<i64>,
    windows: Windows,
}

impl TransactionStream {
    /// A stream for `seed` whose simulated clock starts at `start_ms` (ms since the epoch);
    /// drift off.
    pub fn new(seed: u64, start_ms: i64) -> Self {
        let mut arrivals = Rng::with_seed(seed);
        let amounts = arrivals.fork();
        let start = start_ms as f64;
        let next_burst_t = start + dist::exponential(&mut arrivals, 1000.0 / BURST_RATE);
        let mut stream = Self {
            arrivals,
            amounts,
            drift: false,
            drift_to: DRIFT_TO,
            background: Pending::default(), // drawn below, once the stream exists
            background_t: start,
            next_burst_t,
            bursts: BinaryHeap::new(),
            seq: 0,
            last_ts: None,
            windows: Windows::new(CUSTOMERS, PRODUCTS.len(), COUNT_WINDOW_MS, MAX_WINDOW_MS),
        };
        stream.background = stream.draw_background();
        stream
    }

    /// The same stream with drift on or off from its first transaction.
    pub fn with_drift(mut self, on: bool) -> Self {
        self.drift = on;
        self
    }

    /// Turns drift on or off for every transaction emitted from now on.
    pub fn set_drift(&mut self, on: bool) {
        self.drift = on;
    }

    pub fn drift(&self) -> bool {
        self.drift
    }

    /// The knob's strength: what Beta parameters equal to [`DRIFT_FROM`] become while drift
    /// is on (DEMO.md's [`DRIFT_TO`], 8, by default). A positive number.
    pub fn set_drift_to(&mut self, to: f64) {
        if to.is_finite() && to > 0.0 {
            self.drift_to = to;
        }
    }

    /// The simulated clock: the last emitted transaction's timestamp (None before the first).
    pub fn clock_ms(&self) -> Option<i64> {
        self.last_ts
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn draw_customer(&mut self) -> usize {
        self.arrivals.usize(0..CUSTOMERS)
    }

    fn draw_product(&mut self) -> usize {
        dist::weighted_index(&mut self.arrivals, &PRODUCT_WEIGHTS)
    }

    /// The next legitimate arrival after the current one (train.py's first loop, one step).
    fn draw_background(&mut self) -> Pending {
        self.background_t += dist::exponential(&mut self.arrivals, 1000.0 / BACKGROUND_RATE);
        let customer = self.draw_customer();
        let product = self.draw_product();
        let beta = self.arrivals.f64() < LEGIT_BETA_SHARE;
        Pending {
            ts: self.background_t as i64,
            customer,
            product,
            label: 0,
            seq: self.next_seq(),
            beta,
        }
    }

    /// Queues the members of the burst starting at `next_burst_t` and draws the next start
    /// (train.py's second loop, one step). The first member is at the start itself.
    fn start_burst(&mut self) {
        let t = self.next_burst_t;
        let customer = self.draw_customer();
        let size = self.arrivals.u32(BURST_SIZE.0..=BURST_SIZE.1) as usize;
        let span = dist::uniform(&mut self.arrivals, BURST_SPAN_S.0, BURST_SPAN_S.1) * 1000.0;
        let mut offsets: Vec<f64> = (0..size)
            .map(|_| dist::uniform(&mut self.arrivals, 0.0, span))
            .collect();
        offsets.sort_by(f64::total_cmp);
        if let Some(first) = offsets.first_mut() {
            *first = 0.0;
        }
        for off in offsets {
            let member = Pending {
                ts: (t + off) as i64,
                customer,
                product: self.draw_product(),
                label: 1,
                seq: self.next_seq(),
                beta: true,
            };
            self.bursts.push(Reverse(member));
        }
        self.next_burst_t += dist::exponential(&mut self.arrivals, 1000.0 / BURST_RATE);
    }

    /// The pending transaction that comes next in the stream's order.
    fn take_next(&mut self) -> Pending {
        loop {
            let burst = self
                .bursts
                .peek()
                .map(|r| r.0)
                .filter(|b| *b < self.background);
            let head = burst.unwrap_or(self.background);
            // A burst starting at or before the head may have members that come first.
            if (self.next_burst_t as i64) <= head.ts {
                self.start_burst();
                continue;
            }
            match burst {
                Some(_) => {
                    self.bursts.pop();
                }
                None => self.background = self.draw_background(),
            }
            return head;
        }
    }
}

impl Iterator for TransactionStream {
    type Item = Transaction;

    /// Never `None`: the stream is endless.
    fn next(&mut self) -> Option<Transaction> {
        let p = self.take_next();
        let drift_to = self.drift.then_some(self.drift_to);
        let amount = draw_amount(&mut self.amounts, p.product, p.beta, drift_to);
        let ts = match self.last_ts {
            Some(last) => p.ts.max(last.saturating_add(1)),
            None => p.ts,
        };
        self.last_ts = Some(ts);
        let f = self.windows.observe(p.customer, p.product, ts, amount);
        Some(Transaction {
            customer_id: FIRST_CUSTOMER + p.customer as i64,
            timestamp_ms: ts,
            product: PRODUCTS[p.product % PRODUCTS.len()],
            amount,
            label: p.label,
            transaction_count: f.transaction_count,
            is_timeout: f.transaction_count == 1,
            max_product_amount: f.max_product_amount,
            max_difference_ratio: f.max_difference_ratio,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::MAX, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_795_000_000_000; // 2026-11-18

    fn run(seed: u64, n: usize) -> Vec<Transaction> {
        TransactionStream::new(seed, START).take(n).collect()
    }

    fn share(txs: &[Transaction], pred: impl Fn(&Transaction) -> bool) -> f64 {
        txs.iter().filter(|t| pred(t)).count() as f64 / txs.len() as f64
    }

    /// Where a risky Product A amount falls in its [min, max] range, 0..1.
    fn position_a(t: &Transaction) -> f64 {
        let p = PRODUCT_PARAMS[0];
        (t.amount * 100.0 - p.min) / (p.max - p.min)
    }

    fn mean(xs: impl Iterator<Item = f64>) -> f64 {
        let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
        sum / n as f64
    }

    #[test]
    fn shares_match_the_generator() {
        let txs = run(11, 20_000);
        for (name, want) in PRODUCTS.iter().zip(PRODUCT_WEIGHTS) {
            let got = share(&txs, |t| t.product == *name);
            assert!((got - want).abs() < 0.015, "{name}: {got}");
        }
        // 0.006/s bursts of 7 on average against 0.3/s legitimate: 12.3 % (train.py: ~13 %).
        let risky = share(&txs, |t| t.label == 1);
        assert!((0.09..0.16).contains(&risky), "risky share {risky}");
        // About 0.342 transactions per simulated second.
        let span_s = (txs[txs.len() - 1].timestamp_ms - START) as f64 / 1000.0;
        let rate = txs.len() as f64 / span_s;
        assert!((0.31..0.38).contains(&rate), "rate {rate}/s");
        let ids: std::collections::BTreeSet<i64> = txs.iter().map(|t| t.customer_id).collect();
        assert_eq!(ids.len(), CUSTOMERS);
        assert_eq!(ids.first(), Some(&1234));
        assert_eq!(ids.last(), Some(&1260));
    }

    #[test]
    fn features_are_consistent_and_time_runs_forward() {
        let txs = run(12, 20_000);
        assert!(txs[0].timestamp_ms > START);
        assert!(txs
            .windows(2)
            .all(|w| w[0].timestamp_ms < w[1].timestamp_ms));
        for t in &txs {
            assert!(t.transaction_count >= 1, "{t:?}");
            assert_eq!(t.is_timeout, t.transaction_count == 1, "{t:?}");
            assert!(t.max_product_amount >= t.amount, "{t:?}");
            assert!((0.0..=1.0).contains(&t.max_difference_ratio), "{t:?}");
            assert_eq!(round2(t.amount), t.amount, "{t:?}");
        }
        // Bursts make counts of 4 and more; train.py has 22.5 % timeouts (e^-1.33 of legitimate ones).
        assert!(txs.iter().any(|t| t.label == 1 && t.transaction_count >= 4));
        let timeouts = share(&txs, |t| t.is_timeout);
        assert!(
            (0.18..0.28).contains(&timeouts),
            "isTimeout share {timeouts}"
        );
    }

    #[test]
    fn features_match_a_brute_force_recount() {
        let txs = run(13, 3_000);
        for (i, t) in txs.iter().enumerate() {
            let earlier = &txs[..=i];
            let count = earlier
                .iter()
                .filter(|u| {
                    u.customer_id == t.customer_id
                        && u.timestamp_ms > t.timestamp_ms - COUNT_WINDOW_MS
                })
                .count();
            let max = earlier
                .iter()
                .filter(|u| {
                    u.product == t.product && u.timestamp_ms > t.timestamp_ms - MAX_WINDOW_MS
                })
                .map(|u| u.amount)
                .fold(f64::MIN, f64::max);
            assert_eq!(t.transaction_count, count as i64, "row {i}");
            assert_eq!(t.max_product_amount, max, "row {i}");
        }
    }

    #[test]
    fn legitimate_amounts_sit_at_the_product_mean_mostly() {
        let txs = run(14, 20_000);
        let legit: Vec<&Transaction> = txs.iter().filter(|t| t.label == 0).collect();
        let at_mean = legit
            .iter()
            .filter(|t| {
                PRODUCTS
                    .iter()
                    .zip(PRODUCT_PARAMS)
                    .any(|(name, p)| t.product == *name && t.amount == p.mean / 100.0)
            })
            .count() as f64
            / legit.len() as f64;
        assert!((0.88..0.92).contains(&at_mean), "{at_mean}");
    }

    #[test]
    fn same_seed_same_stream() {
        let whole = run(21, 2_000);
        // A second stream of the seed, advanced in step with a third of another seed and
        // read in pieces: no state is shared between streams or kept between calls.
        let mut again = TransactionStream::new(21, START);
        let mut other = TransactionStream::new(22, START);
        let mut pieces = Vec::new();
        let mut others = Vec::new();
        while pieces.len() < whole.len() {
            pieces.extend(again.by_ref().take(7));
            others.push(other.next().unwrap());
        }
        pieces.truncate(whole.len());
        assert_eq!(whole, pieces);
        // Another seed is another stream: different times, customers and amounts.
        let n = others.len();
        let differs = |f: fn(&Transaction) -> String| {
            whole[..n]
                .iter()
                .zip(&others)
                .filter(|(a, b)| f(a) != f(b))
                .count()
        };
        assert!(differs(|t| t.timestamp_ms.to_string()) > n * 9 / 10);
        assert!(differs(|t| t.customer_id.to_string()) > n / 2);
        assert!(differs(|t| t.amount.to_string()) > n / 2);
    }

    #[test]
    fn drift_shifts_beta_amounts() {
        // Risky Product A: Beta(4, 10) has mean 4/14 of the range; drifted, Beta(4, 8): 4/12.
        let before = run(31, 20_000);
        let mut drifted = TransactionStream::new(31, START).with_drift(true);
        assert!(drifted.drift());
        let after: Vec<Transaction> = drifted.by_ref().take(20_000).collect();
        let risky_a = |txs: &[Transaction]| {
            mean(
                txs.iter()
                    .filter(|t| t.label == 1 && t.product == "Product A")
                    .map(position_a),
            )
        };
        let (b, a) = (risky_a(&before), risky_a(&after));
        assert!((b - 4.0 / 14.0).abs() < 0.015, "before {b}");
        assert!((a - 4.0 / 12.0).abs() < 0.015, "after {a}");
        // The arrivals do not depend on drift: the same customers at the same times.
        assert!(before
            .iter()
            .zip(&after)
            .all(|(x, y)| (x.timestamp_ms, x.customer_id, x.product)
                == (y.timestamp_ms, y.customer_id, y.product)));
    }

    #[test]
    fn drift_knob_flips_mid_stream() {
        let mut s = TransactionStream::new(41, START);
        assert!(!s.drift());
        assert_eq!(s.clock_ms(), None, "no transaction emitted yet");
        let emitted: Vec<Transaction> = s.by_ref().take(100).collect();
        // The clock is the last emitted transaction's time, and flipping the knob leaves it.
        let last = emitted[99].timestamp_ms;
        assert_eq!(s.clock_ms(), Some(last));
        s.set_drift(true);
        assert!(s.drift());
        assert_eq!(s.clock_ms(), Some(last));
        let next = s.next().unwrap();
        assert!(next.timestamp_ms > last);
        assert_eq!(s.clock_ms(), Some(next.timestamp_ms));
        s.set_drift(false);
        assert!(!s.drift());
        // Flipped mid-stream: the same transactions up to the flip, the same arrivals after
        // it, and Beta-drawn amounts that differ from the flip on.
        let mut plain = TransactionStream::new(42, START);
        let mut flipped = TransactionStream::new(42, START);
        let a: Vec<Transaction> = plain.by_ref().take(500).collect();
        let b: Vec<Transaction> = flipped.by_ref().take(500).collect();
        assert_eq!(a, b);
        flipped.set_drift(true);
        let (a, b): (Vec<Transaction>, Vec<Transaction>) = plain.zip(flipped).take(500).unzip();
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| (x.timestamp_ms, x.label) == (y.timestamp_ms, y.label)));
        assert!(a
            .iter()
            .zip(&b)
            .any(|(x, y)| x.label == 1 && x.amount != y.amount));
        assert_eq!(beta_params(0, true), (4.0, 8.0));
        assert_eq!(beta_params(1, true), (8.0, 4.0));
        assert_eq!(beta_params(2, true), (3.0, 8.0));
        assert_eq!(beta_params(2, false), (3.0, 10.0));
    }

    #[test]
    fn memory_stays_bounded() {
        let mut s = TransactionStream::new(51, START);
        let _ = s.by_ref().take(20_000).count();
        assert!(s.windows.held() < 400, "{}", s.windows.held());
        assert!(
            s.bursts.len() <= 2 * BURST_SIZE.1 as usize,
            "{}",
            s.bursts.len()
        );
    }
}
