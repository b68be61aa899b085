//! The command line: one subcommand per scenario, each with the common options.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use modelgate::demo::bodies::Format;

#[derive(Parser, Debug)]
#[command(
    name = "modelgate-loadtest",
    version,
    about = "Load-test scenarios against modelgate, built on goose",
    long_about = "Load-test scenarios against modelgate, built on goose. Without --url, the \
                  release gateway is started on a free loopback port with a config made for \
                  the scenario, and stopped with SIGTERM at the end. Every run writes \
                  report.json and report.md (and goose's own reports) into --report-dir."
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// A constant arrival rate (goose's throttle) of varied requests in every format.
    Steady(SteadyArgs),
    /// Closed-loop users doubling step by step until throughput stops rising (the knee).
    Ramp(RampArgs),
    /// A calm rate with short bursts (a goose test plan of users with a fixed pace).
    Burst(BurstArgs),
    /// Steady load while the served version is swapped back and forth; no request may fail.
    HotSwap(HotSwapArgs),
    /// A 90/10 endpoint with a routing key: the split share and stickiness.
    Ab(AbArgs),
    /// Traffic, then the drift knob halfway; labels posted late; monitoring read at the end.
    Drift(DriftArgs),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Steady(_) => "steady",
            Scenario::Ramp(_) => "ramp",
            Scenario::Burst(_) => "burst",
            Scenario::HotSwap(_) => "hot-swap",
            Scenario::Ab(_) => "ab",
            Scenario::Drift(_) => "drift",
        }
    }

    pub fn common(&self) -> &Common {
        match self {
            Scenario::Steady(a) => &a.common,
            Scenario::Ramp(a) => &a.common,
            Scenario::Burst(a) => &a.common,
            Scenario::HotSwap(a) => &a.common,
            Scenario::Ab(a) => &a.common,
            Scenario::Drift(a) => &a.common,
        }
    }

    /// Refuses options that cannot work together, before any gateway starts.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Scenario::Burst(a) if a.burst_length >= a.burst_every => Err(format!(
                "--burst-length ({:?}) must be shorter than --burst-every ({:?})",
                a.burst_length, a.burst_every
            )),
            Scenario::HotSwap(a) if a.versions.len() != 2 || a.versions[0] == a.versions[1] => {
                Err("--versions takes two different versions, e.g. 1,2".to_owned())
            }
            Scenario::Ab(a) if a.keys == 0 => Err("--keys must be at least 1".to_owned()),
            Scenario::Drift(a) if !(a.drift_to.is_finite() && a.drift_to > 0.0) => {
                Err("--drift-to must be a positive number".to_owned())
            }
            _ => Ok(()),
        }
    }

    /// Whether the scenario serves version 2, which only ONNX Runtime runs.
    pub fn needs_ort(&self) -> bool {
        matches!(self, Scenario::HotSwap(_) | Scenario::Ab(_))
    }
}

/// Options every scenario takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// A running gateway to load, e.g. http://127.0.0.1:8080 (loopback only unless
    /// --allow-remote). Without it, the scenario starts its own gateway.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Accept a --url that is not a loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// The gateway binary to start [default: $CARGO_TARGET_DIR/release/modelgate, else
    /// target/release/modelgate].
    #[arg(long, value_name = "PATH")]
    pub gateway_bin: Option<PathBuf>,
    /// The demo registry (versions 1 and 2 of `transactions`, feature tables).
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// libonnxruntime.so for the started gateway [default: ORT_DYLIB_PATH, else .ort/, else
    /// scripts/fetch-onnxruntime.sh for the scenarios that serve version 2].
    #[arg(long, value_name = "PATH")]
    pub ort_dylib: Option<PathBuf>,
    /// The endpoint to load.
    #[arg(long, default_value = "transactions")]
    pub endpoint: String,
    /// Where the reports go [default: loadtests/reports/<scenario>-<UTC timestamp>].
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// How long the load runs (ramp: the budget of all its steps), e.g. 20s, 1m, 1m30s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop the load after this many requests.
    #[arg(long, default_value_t = 200_000)]
    pub max_requests: u64,
    /// Rows per request are drawn from 1..=N.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max_batch: u64,
    /// Request formats to mix [default: all six].
    #[arg(long, value_delimiter = ',', value_name = "FORMAT,...")]
    pub formats: Vec<FormatArg>,
    /// Seed of the demo transaction stream.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Goose's coordinated-omission mitigation (the expected cadence a stall is measured
    /// against).
    #[arg(long, value_enum, default_value_t = CoMitigation::Average)]
    pub co_mitigation: CoMitigation,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 30)]
    pub request_timeout: u64,
    /// Let the started gateway log every call to inference tables (in its temp dir).
    #[arg(long)]
    pub inference_log: bool,
    /// Show goose's console output and its metric tables.
    #[arg(long)]
    pub goose_console: bool,
    /// Further goose options, after `--` (e.g. `-- --request-log requests.csv`).
    #[arg(last = true, value_name = "GOOSE_ARGS")]
    pub goose_args: Vec<String>,
}

impl Common {
    pub fn formats(&self) -> Vec<Format> {
        if self.formats.is_empty() {
            Format::ALL.to_vec()
        } else {
            self.formats.iter().map(|f| f.format()).collect()
        }
    }
}

/// A constant arrival rate.
#[derive(Args, Debug, Clone)]
pub struct Pace {
    /// Requests per second for all users together (goose's --throttle-requests).
    #[arg(long, default_value_t = 100)]
    pub rate: usize,
    /// Concurrent users sharing the rate.
    #[arg(long, default_value_t = 8)]
    pub users: usize,
}

#[derive(Args, Debug)]
pub struct SteadyArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub pace: Pace,
}

#[derive(Args, Debug)]
pub struct RampArgs {
    #[command(flatten)]
    pub common: Common,
    /// How long each step runs.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    pub step: Duration,
    /// Users of the first step; each step doubles them.
    #[arg(long, default_value_t = 1)]
    pub start_users: usize,
    /// The last step's users at most.
    #[arg(long, default_value_t = 128)]
    pub max_users: usize,
    /// A step that raises throughput by less than this share over the best so far is
    /// saturated.
    #[arg(long, default_value_t = 0.10)]
    pub min_gain: f64,
    /// A step whose error rate is above this share is saturated.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// A step whose p99 (corrected) is above this many times the first step's, and above
    /// --p99-floor-ms, is saturated.
    #[arg(long, default_value_t = 20.0)]
    pub p99_factor: f64,
    #[arg(long, default_value_t = 100.0)]
    pub p99_floor_ms: f64,
}

#[derive(Args, Debug)]
pub struct BurstArgs {
    #[command(flatten)]
    pub common: Common,
    /// Requests per second between bursts.
    #[arg(long, default_value_t = 20)]
    pub calm_rate: usize,
    /// Requests per second during a burst.
    #[arg(long, default_value_t = 200)]
    pub burst_rate: usize,
    /// A burst starts every this long.
    #[arg(long, default_value = "8s", value_parser = parse_duration)]
    pub burst_every: Duration,
    /// How long a burst lasts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub burst_length: Duration,
    /// What one user sends per second (it waits 1/N s between requests); the rates set how
    /// many users run.
    #[arg(long, default_value_t = 10)]
    pub user_rate: usize,
}

#[derive(Args, Debug)]
pub struct HotSwapArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub pace: Pace,
    /// A swap starts this long after the previous one was served (or failed).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub swap_every: Duration,
    /// How a swap is made: move the `champion` alias in the registry (a temp copy when the
    /// scenario starts the gateway, else --registry), or PUT the endpoint's config with the
    /// other version through the control plane.
    #[arg(long, value_enum, default_value_t = SwapVia::Alias)]
    pub swap_via: SwapVia,
    /// After moving the alias, also ask the gateway to reload now (admin API) instead of
    /// waiting for its file watch.
    #[arg(long)]
    pub reload: bool,
    /// The registry whose alias file to move, with --url and --swap-via alias.
    #[arg(long, value_name = "DIR")]
    pub registry: Option<PathBuf>,
    /// The two versions to swap between.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2])]
    pub versions: Vec<u32>,
    /// How long one swap may take before it counts as failed.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub swap_timeout: Duration,
}

#[derive(Args, Debug)]
pub struct AbArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub pace: Pace,
    /// Distinct routing keys sent in the X-Routing-Key header.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// The challenger's route, in percent (the started gateway is configured with it).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub challenger_percent: u8,
    /// The served entity names of the two arms.
    #[arg(long, default_value = "champion")]
    pub champion: String,
    #[arg(long, default_value = "challenger")]
    pub challenger: String,
    /// Allowed distance of the observed challenger share from the route (at least four
    /// binomial standard deviations of the keys seen).
    #[arg(long, default_value_t = 0.03)]
    pub tolerance: f64,
    /// Share of requests keyed by the header; the others are one row keyed by CustomerID.
    #[arg(long, default_value_t = 0.7)]
    pub header_share: f64,
}

#[derive(Args, Debug)]
pub struct DriftArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub pace: Pace,
    /// What the generator's Beta parameters of 10 become once the knob turns, halfway.
    #[arg(long, default_value_t = 2.0)]
    pub drift_to: f64,
    /// How long after its answer a request's labels are posted.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub label_delay: Duration,
    /// The started gateway's monitoring window, seconds [default: a fifth of --duration].
    #[arg(long)]
    pub window: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SwapVia {
    Alias,
    Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoMitigation {
    Average,
    Minimum,
    Maximum,
    Disabled,
}

impl CoMitigation {
    pub fn as_str(self) -> &'static str {
        match self {
            CoMitigation::Average => "average",
            CoMitigation::Minimum => "minimum",
            CoMitigation::Maximum => "maximum",
            CoMitigation::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    DataframeSplit,
    DataframeRecords,
    Instances,
    Inputs,
    Csv,
    V2,
}

impl FormatArg {
    pub fn format(self) -> Format {
        match self {
            FormatArg::DataframeSplit => Format::DataframeSplit,
            FormatArg::DataframeRecords => Format::DataframeRecords,
            FormatArg::Instances => Format::Instances,
            FormatArg::Inputs => Format::Inputs,
            FormatArg::Csv => Format::Csv,
            FormatArg::V2 => Format::V2,
        }
    }
}

/// `20s`, `1m`, `1m30s`, `1h`, or a bare number of seconds; whole seconds, at least 1 and at
/// most an hour (every run is bounded).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut units = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let scale = match c.to_ascii_lowercase() {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("'{text}': expected e.g. 20s, 2m or 1m30s")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("'{text}': a number must come before '{c}'"))?;
        total = total.saturating_add(n.saturating_mul(scale));
        number.clear();
        units += 1;
    }
    if !number.is_empty() {
        if units > 0 {
            return Err(format!("'{text}': the last number has no unit"));
        }
        total = number.parse().map_err(|e| format!("'{text}': {e}"))?;
    }
    if total == 0 {
        return Err(format!("'{text}': must be at least 1s"));
    }
    if total > 3600 {
        return Err(format!("'{text}': at most 1h"));
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2M"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1m30").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
