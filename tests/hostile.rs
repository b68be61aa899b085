//! Hostile callers against the real binary: each attack gets its refusal within a bounded time,
//! ordinary requests sent during the attack keep succeeding, and the process's peak memory
//! (VmHWM from /proc) stays under a stated bound.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{client, demo_config, endpoint, one_row, Gateway};
use serde_json::{json, Value};

/// The bound on the gateway's peak resident memory during any attack here.
const RSS_BOUND_KIB: u64 = 512 * 1024;

/// Every attack's refusal arrives within this (debug build, 2 shared cores).
const REFUSAL_BOUND: Duration = Duration::from_secs(10);

fn gateway(extra: &str) -> Gateway {
    common::start(
        &demo_config(&endpoint("transactions", "1", "tract"), extra),
        false,
    )
}

/// Peak resident memory of the gateway so far, in KiB.
fn peak_rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

fn assert_memory_bounded(gw: &Gateway) {
    let peak = peak_rss_kib(gw);
    eprintln!("peak RSS {peak} KiB (bound {RSS_BOUND_KIB} KiB)");
    assert!(
        peak < RSS_BOUND_KIB,
        "peak RSS {peak} KiB is over the bound of {RSS_BOUND_KIB} KiB"
    );
}

/// Sends ordinary one-row requests until `stop`, counting the answered ones in `ok` and
/// keeping every failure.
fn ordinary_traffic(
    base: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let c = client();
        let mut failed = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let r = c
                .post(format!("{base}/serving-endpoints/transactions/invocations"))
                .json(&one_row())
                .send();
            match r {
                Ok(r) if r.status().is_success() => {
                    ok.fetch_add(1, Ordering::AcqRel);
                }
                Ok(r) => failed.push(format!("{}: {}", r.status(), r.text().unwrap_or_default())),
                Err(e) => failed.push(e.to_string()),
            }
        }
        failed
    })
}

/// Runs `attack` while ordinary traffic flows (answered before it starts and again once it
/// is over); every ordinary request must succeed.
fn during_ordinary_traffic(gw: &Gateway, attack: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let traffic = ordinary_traffic(gw.base.clone(), stop.clone(), ok.clone());
    common::eventually(REFUSAL_BOUND, || ok.load(Ordering::Acquire) > 0);
    let before = ok.load(Ordering::Acquire);
    attack();
    common::eventually(REFUSAL_BOUND, || ok.load(Ordering::Acquire) > before);
    stop.store(true, Ordering::Release);
    let failed = traffic.join().unwrap();
    assert!(failed.is_empty(), "ordinary requests failed: {failed:?}");
}

/// Posts `body` and checks the refusal: status, the setting named, and the time taken.
fn refused(gw: &Gateway, path: &str, content_type: &str, body: Vec<u8>, status: u16, names: &str) {
    let started = Instant::now();
    let r = client()
        .post(gw.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    let took = started.elapsed();
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(code, status, "{text}");
    assert!(text.contains(names), "'{names}' not in {text}");
    assert!(took < REFUSAL_BOUND, "the refusal took {took:?}");
}

fn limit_count(gw: &Gateway, limit: &str) -> f64 {
    gw.metric(&format!(
        "modelgate_limit_refusals_total{{limit=\"{limit}\"}}"
    ))
    .unwrap_or(0.0)
}

/// V2 inputs of the demo model for `rows` rows.
fn v2_inputs(rows: usize) -> Value {
    let col = |name: &str, dt: &str, v: Value| json!({"name": name, "datatype": dt, "shape": [rows], "data": vec![v; rows]});
    json!([
        col("Product", "BYTES", json!("Product A")),
        col("Amount", "FP32", json!(132.75)),
        col("transactionCount", "INT64", json!(3)),
        col("isTimeout", "BOOL", json!(false)),
        col("MaxProductAmount", "FP64", json!(150.1)),
        col("MaxDifferenceRatio", "FP64", json!(0.12)),
    ])
}

/// The `THP_enabled` line of process `pid`'s /proc status: whether its memory may be backed by
/// transparent huge pages.
fn huge_pages_allowed(pid: &str) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .expect("THP_enabled in /proc/PID/status (Linux 5.0 and later)");
    line.trim() == "1"
}

#[test]
fn huge_pages_stay_off_unless_the_operator_turns_them_on() {
    // Freed pages go back to the OS after mimalloc's purge delay (1 s); as 2 MiB huge pages
    // each of those came back as a zeroed 2 MiB fault on a request's thread.
    let config = demo_config(&endpoint("transactions", "1", "tract"), "");
    let gw = common::try_start(&config, false, &[]).unwrap();
    assert!(
        !huge_pages_allowed(&gw.pid().to_string()),
        "the gateway runs without huge pages"
    );
    drop(gw);
    // A process started with them off keeps them off (the setting is inherited).
    if !huge_pages_allowed("self") {
        eprintln!("this test runs with huge pages off: the operator's override is not checked");
        return;
    }
    let gw = common::try_start(&config, false, &[("MIMALLOC_ALLOW_THP", "1")]).unwrap();
    assert!(
        huge_pages_allowed(&gw.pid().to_string()),
        "MIMALLOC_ALLOW_THP=1 leaves them to the system's setting"
    );
}

#[test]
fn response_amplification_is_refused() {
    let gw = gateway("");
    let path = "/v2/models/transactions/infer";
    // The attack of the report: 1,000 rows, one output named 1,000 times.
    let outputs: Vec<Value> = (0..1000)
        .map(|_| json!({"name": "probabilities"}))
        .collect();
    let body = json!({"inputs": v2_inputs(1000), "outputs": outputs});
    during_ordinary_traffic(&gw, || {
        for _ in 0..5 {
            refused(
                &gw,
                path,
                "application/json",
                body.to_string().into_bytes(),
                400,
                "asked for more than once",
            );
        }
    });
    assert_eq!(limit_count(&gw, "outputs"), 5.0);
    // Each output once is an ordinary request.
    let once =
        json!({"inputs": v2_inputs(2), "outputs": [{"name": "probabilities"}, {"name": "label"}]});
    let r = gw.post_json(path, &once);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["outputs"].as_array().unwrap().len(), 2);
    assert_memory_bounded(&gw);
}

#[test]
fn oversized_answers_are_refused_not_written() {
    // 1 KiB answers at most: 100 rows of predictions are more.
    let gw = gateway("limits:\n  max_response_bytes: 1024\n");
    let rows: Vec<Value> = (0..100)
        .map(|_| json!(["Product A", 132.75, 3, false, 150.1, 0.12]))
        .collect();
    let body = json!({"dataframe_split": {"columns": one_row()["dataframe_split"]["columns"], "data": rows}});
    during_ordinary_traffic(&gw, || {
        refused(
            &gw,
            "/serving-endpoints/transactions/invocations",
            "application/json",
            body.to_string().into_bytes(),
            413,
            "limits.max_response_bytes",
        );
    });
    assert_eq!(limit_count(&gw, "response_bytes"), 1.0);
    assert_memory_bounded(&gw);
}

#[test]
fn wide_headers_are_refused_in_linear_time() {
    let gw = gateway("");
    let path = "/serving-endpoints/transactions/invocations";
    let width = 300_000;
    let names: Vec<String> = (0..width).map(|i| format!("c{i}")).collect();
    let csv = format!("{}\n{}\n", names.join(","), vec!["1"; width].join(","));
    let split = json!({"dataframe_split": {"columns": names, "data": [vec![1; width]]}});
    let record: serde_json::Map<String, Value> =
        names.iter().map(|n| (n.clone(), json!(1))).collect();
    let records = json!({"dataframe_records": [record]});
    let v2: Vec<Value> = names
        .iter()
        .take(100_000)
        .map(|n| json!({"name": n, "datatype": "INT64", "shape": [1], "data": [1]}))
        .collect();
    let v2 = json!({"inputs": v2});
    during_ordinary_traffic(&gw, || {
        refused(
            &gw,
            path,
            "text/csv",
            csv.into_bytes(),
            400,
            "limits.max_columns",
        );
        refused(
            &gw,
            path,
            "application/json",
            split.to_string().into_bytes(),
            400,
            "limits.max_columns",
        );
        refused(
            &gw,
            path,
            "application/json",
            records.to_string().into_bytes(),
            400,
            "limits.max_columns",
        );
        refused(
            &gw,
            "/v2/models/transactions/infer",
            "application/json",
            v2.to_string().into_bytes(),
            400,
            "limits.max_columns",
        );
    });
    assert_eq!(limit_count(&gw, "columns"), 4.0);
    assert_memory_bounded(&gw);
}

#[test]
fn huge_ids_and_strings_are_refused() {
    let gw = gateway("");
    let big = "x".repeat(1 << 20);
    during_ordinary_traffic(&gw, || huge_ids(&gw, &big));
    assert_eq!(limit_count(&gw, "id_bytes"), 2.0);
    assert_eq!(limit_count(&gw, "string_bytes"), 1.0);
    assert_memory_bounded(&gw);
}

fn huge_ids(gw: &Gateway, big: &str) {
    let mut body = one_row();
    body["client_request_id"] = json!(big);
    refused(
        gw,
        "/serving-endpoints/transactions/invocations",
        "application/json",
        body.to_string().into_bytes(),
        413,
        "limits.max_id_bytes",
    );
    let v2 = json!({"id": big, "inputs": v2_inputs(1)});
    refused(
        gw,
        "/v2/models/transactions/infer",
        "application/json",
        v2.to_string().into_bytes(),
        413,
        "limits.max_id_bytes",
    );
    let mut long = one_row();
    long["dataframe_split"]["data"][0][0] = json!(big);
    refused(
        gw,
        "/serving-endpoints/transactions/invocations",
        "application/json",
        long.to_string().into_bytes(),
        413,
        "limits.max_string_bytes",
    );
}

/// Opens a connection that declares `declared` body bytes and sends one byte every `gap`.
fn trickle(addr: &str, declared: usize, gap: Duration, stop: Arc<AtomicBool>) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(20))).ok()?;
    let head = format!(
        "POST /serving-endpoints/transactions/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Acquire) {
        if s.write_all(b" ").is_err() {
            break;
        }
        let until = Instant::now() + gap;
        while Instant::now() < until {
            match s.read(&mut buf) {
                Ok(0) => return Some(String::from_utf8_lossy(&answer).into_owned()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                return Some(String::from_utf8_lossy(&answer).into_owned());
            }
        }
    }
    Some(String::from_utf8_lossy(&answer).into_owned())
}

#[test]
fn slowly_trickled_bodies_are_cut_off_while_others_are_served() {
    let gw = gateway("server:\n  body_read_timeout_ms: 1500\n");
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    during_ordinary_traffic(&gw, || {
        let started = Instant::now();
        let trickles: Vec<_> = (0..64)
            .map(|_| {
                let (addr, stop, answered) = (addr.clone(), stop.clone(), answered.clone());
                std::thread::spawn(move || {
                    let answer = trickle(&addr, 1 << 20, Duration::from_millis(100), stop);
                    if answer.as_deref().is_some_and(|a| a.contains(" 408 ")) {
                        answered.fetch_add(1, Ordering::AcqRel);
                    }
                    answer
                })
            })
            .collect();
        // Every trickler gets its 408 (or its connection closed) within the bound.
        let deadline = started + REFUSAL_BOUND;
        while answered.load(Ordering::Acquire) < 64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Release);
        let answers: Vec<_> = trickles.into_iter().map(|t| t.join().unwrap()).collect();
        let timed_out = answers
            .iter()
            .filter(|a| {
                a.as_deref()
                    .is_some_and(|a| a.contains("server.body_read_timeout_ms"))
            })
            .count();
        assert_eq!(timed_out, 64, "answers: {:?}", &answers[..3]);
    });
    assert!(limit_count(&gw, "body_read_timeout") >= 64.0);
    assert_eq!(gw.metric("modelgate_inflight_body_bytes"), Some(0.0));
    assert_memory_bounded(&gw);
}

/// Posts `body` over a raw connection, writing while the answer may already come (a refusal
/// can arrive before the body is sent whole), and returns the answer's text.
fn raw_post(addr: &str, body: Vec<u8>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /serving-endpoints/transactions/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut writer = s.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        for chunk in body.chunks(16 * 1024) {
            if writer.write_all(chunk).is_err() {
                break;
            }
        }
    });
    s.set_read_timeout(Some(REFUSAL_BOUND)).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let _ = sending.join();
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn the_inflight_body_budget_refuses_what_it_cannot_hold() {
    // Bodies of 400 KiB: two held fill most of a 1 MiB budget, a third does not fit.
    let gw = gateway(
        "server:\n  max_body_bytes: 700000\n  max_inflight_body_bytes: 1048576\n  body_read_timeout_ms: 20000\n",
    );
    let addr = gw.base.trim_start_matches("http://").to_owned();
    // Two callers send 400 KiB each, then stall: 800 KiB held.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let head = "POST /serving-endpoints/transactions/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 600000\r\n\r\n";
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![b' '; 400_000]).unwrap();
        stalled.push(s);
    }
    common::eventually(Duration::from_secs(10), || {
        gw.metric("modelgate_inflight_body_bytes")
            .is_some_and(|b| b >= 800_000.0)
    });
    // Small requests fit beside what is held (not during the refusal itself: the refused body
    // holds the rest of the budget until it is refused).
    assert_eq!(gw.invoke("transactions", &one_row()).status, 200);
    let started = Instant::now();
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(400_000)).into_bytes();
    let answer = raw_post(&addr, big);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("server.max_inflight_body_bytes"),
        "{answer}"
    );
    assert!(started.elapsed() < REFUSAL_BOUND);
    assert_eq!(gw.invoke("transactions", &one_row()).status, 200);
    drop(stalled);
    common::eventually(Duration::from_secs(10), || {
        gw.metric("modelgate_inflight_body_bytes") == Some(0.0)
    });
    assert!(limit_count(&gw, "inflight_body_bytes") >= 1.0);
    assert_memory_bounded(&gw);
}

#[test]
fn an_http2_stream_flood_gets_429s_beyond_the_per_connection_bound() {
    let gw = gateway("server:\n  max_streams_per_connection: 16\n  body_read_timeout_ms: 2000\n");
    let url = gw.url("/serving-endpoints/transactions/invocations");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    during_ordinary_traffic(&gw, || {
        let started = Instant::now();
        let statuses: Vec<u16> = rt.block_on(async {
            // One HTTP/2 connection (h2c prior knowledge) carrying 1,000 streams whose bodies
            // never finish.
            let h2 = reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap();
            let tasks: Vec<_> = (0..1000)
                .map(|_| {
                    let (h2, url) = (h2.clone(), url.clone());
                    tokio::spawn(async move {
                        let stalled =
                            futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
                        let r = h2
                            .post(url)
                            .header("content-type", "application/json")
                            .body(reqwest::Body::wrap_stream(stalled))
                            .send()
                            .await;
                        r.map(|r| r.status().as_u16()).unwrap_or(0)
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        let took = started.elapsed();
        let refused = statuses.iter().filter(|&&s| s == 429).count();
        let timed_out = statuses.iter().filter(|&&s| s == 408).count();
        assert!(
            refused >= 1000 - 16,
            "429s: {refused}, statuses {:?}",
            &statuses[..20]
        );
        assert_eq!(refused + timed_out, 1000, "statuses: {statuses:?}");
        assert!(took < REFUSAL_BOUND, "the flood took {took:?} to answer");
    });
    assert!(limit_count(&gw, "streams_per_connection") >= 984.0);
    assert_memory_bounded(&gw);
}

#[test]
fn requests_past_their_deadline_are_not_run() {
    // One inference worker, a 300 ms deadline: a burst of heavy batches queues behind it.
    let gw = common::try_start(
        &demo_config(
            &endpoint("transactions", "1", "tract"),
            "server:\n  request_timeout_ms: 300\n",
        ),
        false,
        &[("MODELGATE__INFERENCE__WORKERS", "1")],
    )
    .unwrap();
    let rows: Vec<Value> = (0..10_000)
        .map(|i| {
            json!([
                "Product A",
                100.0 + f64::from(i % 50),
                3,
                false,
                150.1,
                0.12
            ])
        })
        .collect();
    let heavy = json!({"dataframe_split": {"columns": one_row()["dataframe_split"]["columns"], "data": rows}})
        .to_string();
    let started = Instant::now();
    let burst: Vec<_> = (0..12)
        .map(|_| {
            let (url, heavy) = (
                gw.url("/serving-endpoints/transactions/invocations"),
                heavy.clone(),
            );
            std::thread::spawn(move || {
                let r = client()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(heavy)
                    .send()
                    .unwrap();
                (r.status().as_u16(), r.text().unwrap())
            })
        })
        .collect();
    let answers: Vec<_> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    for (status, text) in &answers {
        assert!(*status == 200 || *status == 504, "{status}: {text}");
    }
    let late = answers.iter().filter(|(s, _)| *s == 504).count();
    assert!(
        late > 0,
        "no request passed its deadline; make the burst heavier"
    );
    assert!(started.elapsed() < REFUSAL_BOUND);
    // Jobs whose callers had gone were dropped or stopped between stages, not run to the end.
    common::eventually(Duration::from_secs(5), || {
        limit_count(&gw, "deadline") >= 1.0
    });
    assert!(limit_count(&gw, "deadline") <= late as f64);
    assert_eq!(gw.invoke("transactions", &one_row()).status, 200);
}

#[test]
fn value_trees_are_bounded_while_they_are_parsed() {
    // Bodies under the 16 MiB limit that would each be a JSON tree of about 8 million values
    // (over 250 MB as serde_json values) were it built before a limit was checked.
    let gw = gateway("");
    let zeros = vec!["0"; 7_000_000].join(",");
    let v2 = format!(
        r#"{{"inputs": [{{"name": "x", "datatype": "FP32", "shape": [1], "data": [{zeros}]}}]}}"#
    );
    let data_first = format!(r#"{{"dataframe_split": {{"data": [[{zeros}]], "columns": ["x"]}}}}"#);
    let bombs = [
        ("/v2/models/transactions/infer", v2),
        (
            "/serving-endpoints/transactions/invocations",
            format!(r#"{{"instances": [{zeros}]}}"#),
        ),
        (
            "/serving-endpoints/transactions/invocations",
            format!(r#"{{"inputs": {{"x": [{zeros}]}}}}"#),
        ),
        (
            "/serving-endpoints/transactions/invocations",
            format!(r#"{{"dataframe_split": {{"columns": ["x"], "data": [[[{zeros}]]]}}}}"#),
        ),
        ("/serving-endpoints/transactions/invocations", data_first),
        (
            "/serving-endpoints/transactions/invocations",
            format!(
                r#"{{"params": {{"p": [{zeros}]}}, "dataframe_split": {{"columns": ["x"], "data": [[1]]}}}}"#
            ),
        ),
    ];
    during_ordinary_traffic(&gw, || {
        // Two at a time, as two inference workers would take them.
        for pair in bombs.chunks(2) {
            std::thread::scope(|scope| {
                for (path, body) in pair {
                    let gw = &gw;
                    scope.spawn(move || {
                        refused(
                            gw,
                            path,
                            "application/json",
                            body.clone().into_bytes(),
                            413,
                            "limits.max_cells",
                        )
                    });
                }
            });
        }
    });
    assert_eq!(limit_count(&gw, "cells"), bombs.len() as f64);
    assert_memory_bounded(&gw);
}

#[test]
fn the_admin_api_answers_only_on_its_own_listener() {
    let gw = gateway("server:\n  admin_listen: 127.0.0.1:0\n");
    let admin = gw
        .admin
        .clone()
        .expect("the admin listener's address is printed");
    let c = client();
    let status = |url: String| c.get(url).send().unwrap().status().as_u16();
    // The control plane: admin listener only.
    assert_eq!(status(format!("{admin}/api/2.0/serving-endpoints")), 200);
    let on_main = c.get(gw.url("/api/2.0/serving-endpoints")).send().unwrap();
    assert_eq!(on_main.status().as_u16(), 404);
    assert!(on_main.text().unwrap().contains("server.admin_listen"));
    // Scoring: main listener only.
    assert_eq!(gw.invoke("transactions", &one_row()).status, 200);
    let scored = c
        .post(format!(
            "{admin}/serving-endpoints/transactions/invocations"
        ))
        .json(&one_row())
        .send()
        .unwrap();
    assert_eq!(scored.status().as_u16(), 404);
    assert_eq!(status(format!("{admin}/v2/models/transactions")), 404);
    // Health and metrics: both.
    for path in ["/readyz", "/metrics", "/livez"] {
        assert_eq!(status(format!("{admin}{path}")), 200, "{path}");
        assert_eq!(status(gw.url(path)), 200, "{path}");
    }
}

#[test]
fn per_user_rate_limits_see_callers_through_trusted_proxies_only() {
    let endpoint_yaml = format!(
        "{}    rate_limits:\n      - {{calls: 2, key: user, renewal_period: minute}}\n",
        endpoint("transactions", "1", "tract")
    );
    let trusted = common::start(
        &demo_config(
            &endpoint_yaml,
            "server:\n  trusted_proxies: [127.0.0.1/32]\n",
        ),
        false,
    );
    let untrusted = common::start(&demo_config(&endpoint_yaml, ""), false);
    // The limits count per clock minute: start early in one.
    common::eventually(Duration::from_secs(70), || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60
            < 40
    });
    let send = |gw: &Gateway, forwarded: &[&str]| {
        let mut r = client()
            .post(gw.url("/serving-endpoints/transactions/invocations"))
            .json(&one_row());
        for line in forwarded {
            r = r.header("x-forwarded-for", *line);
        }
        r.send().unwrap().status().as_u16()
    };
    // Behind a trusted proxy, each caller has its own allowance, whatever it writes itself
    // in front of the proxy's hop.
    assert_eq!(send(&trusted, &["203.0.113.1"]), 200);
    assert_eq!(send(&trusted, &["9.9.9.9", "203.0.113.1"]), 200);
    assert_eq!(send(&trusted, &["203.0.113.1"]), 429);
    assert_eq!(send(&trusted, &["203.0.113.1, 203.0.113.2"]), 200);
    // From a peer that is not trusted, the header means nothing: one allowance.
    assert_eq!(send(&untrusted, &["203.0.113.1"]), 200);
    assert_eq!(send(&untrusted, &["203.0.113.2"]), 200);
    assert_eq!(send(&untrusted, &["203.0.113.3"]), 429);
}

#[test]
fn made_up_label_keys_never_become_columns() {
    let tables = tempfile::tempdir().unwrap();
    let endpoint_yaml = format!(
        "{}    auto_capture_config: {{table_name_prefix: tx}}\n",
        endpoint("transactions", "1", "tract")
    );
    let gw = common::start(
        &demo_config(
            &endpoint_yaml,
            &format!("inference_log:\n  location: {}\n", tables.path().display()),
        ),
        false,
    );
    // 200 labels with 50 made-up keys each: each key would have been a column of the labels
    // table, padded on every row for good.
    let labels: Vec<Value> = (0..200)
        .map(|i| {
            let keys: serde_json::Map<String, Value> = (0..50)
                .map(|k| (format!("Evil{i}_{k}"), json!(k)))
                .collect();
            json!({"keys": keys, "timestamp": "2026-11-22T10:19:05.123Z", "label": 1})
        })
        .collect();
    let body = json!({ "labels": labels }).to_string().into_bytes();
    during_ordinary_traffic(&gw, || {
        for _ in 0..5 {
            refused(
                &gw,
                "/api/2.0/serving-endpoints/transactions/labels",
                "application/json",
                body.clone(),
                400,
                "inference_log.max_keys_per_label",
            );
        }
    });
    assert_eq!(limit_count(&gw, "label_keys"), 5.0);
    // Declared keys, few of them, are taken.
    let fine = json!({"labels": [
        {"keys": {"CustomerID": 1240}, "timestamp": "2026-11-22T10:19:05.123Z", "label": 1}
    ]});
    let r = gw.post_json("/api/2.0/serving-endpoints/transactions/labels", &fine);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_memory_bounded(&gw);
}

#[test]
fn printed_settings_never_show_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(
        &file,
        "registry:\n  kind: mlflow\n  uri: https://ops:uri-secret@mlflow.internal:5000\n  token: token-secret\n  password: password-secret\n  webhook_secret: hook-secret\nfeatures:\n  redis: {url: 'redis://:redis-secret@cache:6379/0'}\ninference_log:\n  storage_options: {AWS_SECRET_ACCESS_KEY: s3-secret, AWS_REGION: eu-west-1}\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .args(["check-config", file.to_str().unwrap()])
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    for secret in [
        "uri-secret",
        "token-secret",
        "password-secret",
        "hook-secret",
        "redis-secret",
        "s3-secret",
    ] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    // What is not secret stays readable.
    for kept in [
        "mlflow.internal:5000",
        "cache:6379/0",
        "eu-west-1",
        "<redacted>",
    ] {
        assert!(printed.contains(kept), "{kept} missing:\n{printed}");
    }
}

#[test]
fn connections_beyond_the_bound_wait_until_one_closes() {
    // Two HTTP workers, four connections each.
    let gw = gateway("server:\n  http_workers: 2\n  max_connections: 8\n");
    let addr = gw.base.trim_start_matches("http://").to_owned();
    let ask = |s: &mut TcpStream| {
        s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    };
    let answered = |s: &mut TcpStream, wait: Duration| {
        s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 512];
        matches!(s.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
    };
    // Eight kept-alive connections, each answered once: the bound is taken.
    let mut held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            ask(&mut s);
            assert!(answered(&mut s, REFUSAL_BOUND));
            s
        })
        .collect();
    // A ninth is not served while they stay open.
    let mut ninth = TcpStream::connect(&addr).unwrap();
    ask(&mut ninth);
    assert!(
        !answered(&mut ninth, Duration::from_millis(1500)),
        "a ninth connection was served beyond server.max_connections"
    );
    // One closes: the ninth is served.
    held.clear();
    assert!(answered(&mut ninth, REFUSAL_BOUND));
}
