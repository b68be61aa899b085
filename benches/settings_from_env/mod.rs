//! A bench's settings, read from environment variables (`cargo bench` passes no arguments of
//! its own to a bench without a harness, beyond `--bench` and a filter).

/// The variable `name` parsed, or `default` when it is unset or does not parse.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
