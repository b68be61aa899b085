//! The same V2 inference over three wires, against one running gateway, in one run: JSON
//! REST, REST with the binary tensor data extension, and gRPC with raw contents. Closed loop:
//! `--connections` callers each send the next request when the last is answered, for
//! `--seconds` per protocol after a warm-up, the protocols taking turns `--rounds` times so a
//! drift of the machine hits them alike. Prints one line per protocol: req/s (median of the
//! rounds), p50 and p99 (all rounds), and the ratio to JSON REST.
//!
//!   modelgate-protocols --rest http://127.0.0.1:8080 --grpc 127.0.0.1:8085 --model t --rows 1

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use modelgate::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use modelgate::grpc::proto::model_infer_request::InferInputTensor;
use modelgate::grpc::proto::ModelInferRequest;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// The gateway's REST base URL.
    #[arg(long)]
    rest: String,
    /// The gateway's gRPC HOST:PORT (server.grpc_listen).
    #[arg(long)]
    grpc: String,
    /// The V2 model (endpoint) serving demo version 1.
    #[arg(long, default_value = "t")]
    model: String,
    /// Rows per request (from tests/fixtures/transactions_v1_cases.json).
    #[arg(long, default_value_t = 1)]
    rows: usize,
    #[arg(long, default_value_t = 8)]
    connections: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The fixture file.
    #[arg(long, default_value = "tests/fixtures/transactions_v1_cases.json")]
    cases: String,
}

const TYPES: [&str; 6] = ["BYTES", "FP32", "INT64", "BOOL", "FP64", "FP64"];

/// One column's values as raw little-endian bytes of its datatype.
fn raw(values: &[Value], datatype: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        match datatype {
            "BYTES" => {
                let s = v.as_str().unwrap_or_default();
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            "FP32" => out.extend_from_slice(&(v.as_f64().unwrap_or(0.0) as f32).to_le_bytes()),
            "INT64" => out.extend_from_slice(&v.as_i64().unwrap_or(0).to_le_bytes()),
            "BOOL" => out.push(u8::from(v.as_bool().unwrap_or(false))),
            _ => out.extend_from_slice(&v.as_f64().unwrap_or(0.0).to_le_bytes()),
        }
    }
    out
}

struct Bodies {
    json: Vec<u8>,
    binary: Vec<u8>,
    binary_header: usize,
    grpc: ModelInferRequest,
}

fn bodies(args: &Args) -> Result<Bodies> {
    let cases: Value = serde_json::from_str(
        &std::fs::read_to_string(&args.cases).with_context(|| args.cases.clone())?,
    )?;
    let columns = cases["columns"].as_array().context("columns")?;
    let rows = args.rows;
    let data = cases["data"].as_array().context("data")?;
    if data.len() < rows {
        bail!("the fixture has {} rows, fewer than {rows}", data.len());
    }
    let column = |c: usize| -> Vec<Value> { (0..rows).map(|r| data[r][c].clone()).collect() };
    let mut json_inputs = Vec::new();
    let mut binary_inputs = Vec::new();
    let mut tensors = Vec::new();
    let mut grpc_inputs = Vec::new();
    let mut raw_contents = Vec::new();
    for (c, name) in columns.iter().enumerate() {
        let values = column(c);
        json_inputs
            .push(json!({"name": name, "datatype": TYPES[c], "shape": [rows, 1], "data": values}));
        let bytes = raw(&values, TYPES[c]);
        binary_inputs.push(
            json!({"name": name, "datatype": TYPES[c], "shape": [rows, 1],
            "parameters": {"binary_data_size": bytes.len()}}),
        );
        tensors.extend_from_slice(&bytes);
        grpc_inputs.push(InferInputTensor {
            name: name.as_str().unwrap_or_default().into(),
            datatype: TYPES[c].into(),
            shape: vec![rows as i64, 1],
            parameters: Default::default(),
            contents: None,
        });
        raw_contents.push(bytes.into());
    }
    let mut binary = serde_json::to_vec(
        &json!({"inputs": binary_inputs, "parameters": {"binary_data_output": true}}),
    )?;
    let binary_header = binary.len();
    binary.extend_from_slice(&tensors);
    Ok(Bodies {
        json: serde_json::to_vec(&json!({ "inputs": json_inputs }))?,
        binary,
        binary_header,
        grpc: ModelInferRequest {
            model_name: args.model.clone(),
            inputs: grpc_inputs,
            raw_input_contents: raw_contents,
            ..Default::default()
        },
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wire {
    Json,
    Binary,
    Grpc,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Json => "REST JSON",
            Wire::Binary => "REST binary tensors",
            Wire::Grpc => "gRPC raw contents",
        }
    }
}

/// One caller's loop until `until`: the latencies of its answered calls, in microseconds.
async fn caller(
    wire: Wire,
    args: Arc<Args>,
    bodies: Arc<Bodies>,
    until: Instant,
) -> Result<Vec<u64>> {
    let mut latencies = Vec::new();
    let url = format!("{}/v2/models/{}/infer", args.rest, args.model);
    let http = reqwest::Client::builder().build()?;
    let mut grpc = match wire {
        Wire::Grpc => {
            Some(GrpcInferenceServiceClient::connect(format!("http://{}", args.grpc)).await?)
        }
        _ => None,
    };
    while Instant::now() < until {
        let started = Instant::now();
        match wire {
            Wire::Json => {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies.json.clone())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("{}: {}", r.status(), r.text().await?);
                }
                r.bytes().await?;
            }
            Wire::Binary => {
                let r = http
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .header("inference-header-content-length", bodies.binary_header)
                    .body(bodies.binary.clone())
                    .send()
                    .await?;
                if !r.status().is_success() {
                    bail!("{}: {}", r.status(), r.text().await?);
                }
                r.bytes().await?;
            }
            Wire::Grpc => {
                let client = grpc.as_mut().expect("connected");
                client.model_infer(bodies.grpc.clone()).await?;
            }
        }
        latencies.push(started.elapsed().as_micros() as u64);
    }
    Ok(latencies)
}

/// `connections` callers for `seconds`: req/s and the latencies.
async fn run(
    wire: Wire,
    args: &Arc<Args>,
    bodies: &Arc<Bodies>,
    seconds: u64,
) -> Result<(f64, Vec<u64>)> {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let callers: Vec<_> = (0..args.connections)
        .map(|_| tokio::spawn(caller(wire, args.clone(), bodies.clone(), until)))
        .collect();
    let mut all = Vec::new();
    for c in callers {
        all.extend(c.await??);
    }
    let rate = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, all))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    let bodies = Arc::new(bodies(&args)?);
    let wires = [Wire::Json, Wire::Binary, Wire::Grpc];
    for w in wires {
        run(w, &args, &bodies, 1)
            .await
            .with_context(|| format!("warm-up of {}", w.name()))?;
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); wires.len()];
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); wires.len()];
    for _ in 0..args.rounds {
        for (i, w) in wires.iter().enumerate() {
            let (rate, l) = run(*w, &args, &bodies, args.seconds).await?;
            rates[i].push(rate);
            latencies[i].extend(l);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let json_rate = median(&mut rates[0].clone());
    println!(
        "rows={} connections={} rounds={}x{}s",
        args.rows, args.connections, args.rounds, args.seconds
    );
    for (i, w) in wires.iter().enumerate() {
        let rate = median(&mut rates[i]);
        latencies[i].sort_unstable();
        println!(
            "{:<20} {:>9.0} req/s  p50 {:>6.3} ms  p99 {:>6.3} ms  x{:.2} of REST JSON",
            w.name(),
            rate,
            percentile(&latencies[i], 0.50),
            percentile(&latencies[i], 0.99),
            rate / json_rate
        );
    }
    Ok(())
}
