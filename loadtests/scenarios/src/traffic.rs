//! What the virtual users send: demo transactions (customers, products, amounts from
//! `modelgate::demo::TransactionStream`) in batches of 1..N rows, rendered in every request
//! format, and what they read back from an answer.

use std::sync::{Arc, Mutex, MutexGuard};

use modelgate::demo::bodies::{render, Columns, Format};
use modelgate::demo::{Transaction, TransactionStream};

/// The generator all users draw from (one stream, so its features stay consistent).
#[derive(Clone)]
pub struct Generator(Arc<Mutex<TransactionStream>>);

impl Generator {
    /// A stream for `seed` whose simulated clock starts now.
    pub fn new(seed: u64) -> Generator {
        let now = chrono::Utc::now().timestamp_millis();
        Generator(Arc::new(Mutex::new(TransactionStream::new(seed, now))))
    }

    fn lock(&self) -> MutexGuard<'_, TransactionStream> {
        // A user that panicked while drawing leaves a usable stream.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn take(&self, n: usize) -> Vec<Transaction> {
        self.lock().by_ref().take(n).collect()
    }

    /// Turns the drift knob: Beta parameters of 10 become `to` from the next transaction on.
    pub fn drift(&self, to: f64) {
        let mut stream = self.lock();
        stream.set_drift_to(to);
        stream.set_drift(true);
    }
}

/// One request to send.
pub struct Request {
    /// The goose request name (the format), so goose's reports break figures down by it.
    pub name: &'static str,
    pub path: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    pub rows: Vec<Transaction>,
    /// The routing key the scenario keyed the request with, if any.
    pub key: Option<String>,
}

/// What came back.
#[derive(Debug, Default, Clone)]
pub struct Answer {
    /// None when no response arrived (connection error, timeout).
    pub status: Option<u16>,
    pub served_name: Option<String>,
    pub served_version: Option<String>,
    pub request_id: Option<String>,
    /// Why it failed: the transport error, or the start of an error body.
    pub error: Option<String>,
}

impl Answer {
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s)) && self.error.is_none()
    }

    /// Reads the headers, then the whole body (so the connection is reused).
    pub async fn read(response: Result<reqwest::Response, reqwest::Error>) -> Answer {
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Answer {
                    error: Some(short(&e.to_string())),
                    ..Answer::default()
                }
            }
        };
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = response.status().as_u16();
        let mut answer = Answer {
            status: Some(status),
            served_name: header("served-model-name"),
            served_version: header("served-model-version"),
            request_id: header("x-request-id"),
            error: None,
        };
        match response.bytes().await {
            Ok(body) if !(200..300).contains(&status) => {
                answer.error = Some(short(&String::from_utf8_lossy(&body)));
            }
            Ok(_) => {}
            Err(e) => answer.error = Some(format!("reading the body: {}", short(&e.to_string()))),
        }
        answer
    }
}

fn short(text: &str) -> String {
    const MAX: usize = 160;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// A scenario's traffic: what to send next, and what to note from each answer.
pub trait Workload: Send + Sync + 'static {
    fn next_request(&self) -> Request;

    fn answered(&self, _request: &Request, _answer: &Answer) {}
}

/// Batches of 1..=`max_batch` rows in a format drawn from `formats`.
pub struct Mix {
    pub generator: Generator,
    pub endpoint: String,
    pub formats: Vec<Format>,
    pub max_batch: usize,
    /// What a caller knows (the gateway looks the rest up), or the model's own inputs.
    pub columns: Columns,
}

impl Mix {
    pub fn draw(&self, rows: usize, format: Format) -> Request {
        let rows = self.generator.take(rows.max(1));
        let body = render(&rows, self.columns, format);
        Request {
            name: format_name(format),
            path: path(&self.endpoint, format),
            content_type: body.content_type,
            body: body.bytes,
            headers: Vec::new(),
            rows,
            key: None,
        }
    }

    pub fn random_format(&self) -> Format {
        match self.formats.len() {
            0 => Format::DataframeSplit,
            n => self.formats[fastrand::usize(..n)],
        }
    }

    pub fn random_rows(&self) -> usize {
        fastrand::usize(1..=self.max_batch.max(1))
    }
}

impl Workload for Mix {
    fn next_request(&self) -> Request {
        self.draw(self.random_rows(), self.random_format())
    }
}

/// The scoring route of a format: V2 bodies go to the V2 route, the others to MLflow's.
pub fn path(endpoint: &str, format: Format) -> String {
    if format.is_v2() {
        format!("/v2/models/{endpoint}/infer")
    } else {
        format!("/serving-endpoints/{endpoint}/invocations")
    }
}

pub fn format_name(format: Format) -> &'static str {
    match format {
        Format::DataframeSplit => "dataframe_split",
        Format::DataframeRecords => "dataframe_records",
        Format::Instances => "instances",
        Format::Inputs => "inputs",
        Format::Csv => "csv",
        Format::V2 => "v2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_follow_the_mix() {
        let mix = Mix {
            generator: Generator::new(1),
            endpoint: "t".into(),
            formats: vec![Format::Csv, Format::V2],
            max_batch: 3,
            columns: Columns::Raw,
        };
        for _ in 0..50 {
            let r = mix.next_request();
            assert!((1..=3).contains(&r.rows.len()));
            match r.name {
                "csv" => {
                    assert_eq!(r.path, "/serving-endpoints/t/invocations");
                    assert_eq!(r.content_type, "text/csv");
                    // A header line and one line per row.
                    assert_eq!(
                        r.body.iter().filter(|b| **b == b'\n').count(),
                        r.rows.len() + 1
                    );
                }
                "v2" => {
                    assert_eq!(r.path, "/v2/models/t/infer");
                    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                    assert_eq!(v["inputs"][0]["shape"][0], r.rows.len());
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn answers_are_short() {
        assert_eq!(short("abc"), "abc");
        assert_eq!(short(&"é".repeat(200)).chars().count(), 163);
    }
}
