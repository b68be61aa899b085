//! The longest `RateLimiter::check` call with a per-caller limit and more callers in a minute
//! than it counts apart (`MAX_KEYS`, 100,000): the calls that grow the window's map, and the
//! first calls of a new minute, which free the last one's callers (a table a call for each
//! limit, once the limits' locks are let go), are where a stall would show. Each call is timed
//! on its own (the clock's reads included); the mean is what a request pays.
//!
//! Run: `cargo bench --bench rate_limit` (CALLS=n, 3,000,000 by default; CALLERS=n distinct
//! callers taking turns, 120,000 by default; PER_MINUTE=n calls in a minute, 1,000,000).

use std::time::{Duration, Instant};

use modelgate::endpoint::rate_limit::{RateLimit, RateLimitKey, RateLimiter};

// The gateway binary's allocator: freeing a minute of callers costs what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod settings_from_env;
use settings_from_env::env_or;

fn main() {
    // Cargo passes `--bench` (and a filter, when given); neither applies here.
    let calls: usize = env_or("CALLS", 3_000_000);
    let callers: Vec<String> = (0..env_or::<usize>("CALLERS", 120_000))
        .map(|n| format!("caller-{n:08}"))
        .collect();
    let per_minute: u64 = env_or("PER_MINUTE", 1_000_000);
    let limit = RateLimit {
        key: RateLimitKey::User,
        ..RateLimit::per_endpoint(u64::MAX)
    };
    let limiter = RateLimiter::new(&[limit], None).expect("one limit");
    let (mut total, mut longest) = (Duration::ZERO, Duration::ZERO);
    let (mut over_half_ms, mut over_1_ms) = (0, 0);
    for n in 0..calls {
        let caller = &callers[n % callers.len()];
        let now_ms = n as u64 * 60_000 / per_minute;
        let started = Instant::now();
        let admitted = limiter.check(caller, now_ms);
        let took = started.elapsed();
        assert!(admitted.is_ok());
        total += took;
        longest = longest.max(took);
        over_half_ms += usize::from(took > Duration::from_micros(500));
        over_1_ms += usize::from(took > Duration::from_millis(1));
    }
    println!(
        "{calls} calls by {} callers, {per_minute} a minute: mean {:.2} µs, longest {:.2} ms, over 0.5 ms: {over_half_ms}, over 1 ms: {over_1_ms}",
        callers.len(),
        total.as_secs_f64() * 1e6 / calls as f64,
        longest.as_secs_f64() * 1e3,
    );
}
