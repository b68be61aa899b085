//! The join: a feature spec compiled into a plan when a version loads ([`JoinPlan::compile`]),
//! then per request, in stages:
//!
//! 1. the request's columns typed, what the model still needs, one key per row and table
//!    (`request.rs`);
//! 2. one batched lookup in the online store, awaited without holding a thread
//!    ([`JoinPlan::lookup`]);
//! 3. each looked-up value resolved to an [`Outcome`] and counted (`resolve.rs`);
//! 4. a value not present follows its feature's policy: default, null or reject;
//! 5. the on-demand functions (`compute.rs`);
//! 6. the model's frame, its columns in order (`assemble.rs`).
//!
//! Stages 3 to 6 are CPU work: [`JoinPlan::complete`], on the inference pool. [`JoinPlan::join`]
//! does all six in one call, blocking on the lookup.

mod assemble;
mod coerce;
mod compute;
mod outcome;
mod plan;
mod request;
mod resolve;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub use outcome::Outcome;
pub use plan::JoinPlan;
use request::Joining;

use super::expr::Value;
use super::store::{Answer, Pending, StoreError};
use crate::data::frame::Frame;
use crate::error::{RequestError, RequestResult};

/// A request's lookup, done: what the CPU stages need, owned (no borrow of the frame or the
/// plan), to be completed on the inference pool with [`JoinPlan::complete`].
pub struct Looked {
    joining: Joining,
    fetched: Fetched,
}

/// What the online store gave.
enum Fetched {
    Answer(Answer),
    /// Down or late: every looked-up value is missing (timed out) and follows its policy.
    Down,
}

/// The store's answer as the join takes it: down or late is no error, anything else is.
fn take_answer(answer: Result<Answer, StoreError>) -> RequestResult<Fetched> {
    match answer {
        Ok(a) => Ok(Fetched::Answer(a)),
        Err(StoreError::Timeout | StoreError::Unreachable(_)) => Ok(Fetched::Down),
        Err(e) => Err(RequestError::Internal(e.to_string())),
    }
}

impl JoinPlan {
    /// Stages 1 and 2: types the request's columns and looks up what the model needs, in one
    /// batch. `ignore` is a column (the routing key) the request may carry besides the spec's.
    ///
    /// The typing and keying run now, on the caller's thread; the future then only waits for
    /// the store (an embedded store has answered already). It holds no borrow of the frame or
    /// the plan, and ends by the store's deadline (`features.redis.timeout_ms`); dropping it
    /// sooner (the request's own deadline) is safe.
    pub fn lookup(
        &self,
        frame: &Frame,
        ignore: Option<&str>,
    ) -> impl Future<Output = RequestResult<Looked>> + Send + 'static {
        let started = self.prepare(frame, ignore).map(|joining| {
            let pending = self.start_lookup(&joining);
            (joining, pending)
        });
        let timer = self.lookup_duration.clone();
        async move {
            let (joining, pending) = started?;
            let fetched = match pending {
                None => Fetched::Answer(Answer::Rows(Vec::new())),
                Some((pending, started)) => {
                    let answer = pending.await;
                    if let Some(h) = &timer {
                        h.observe(started.elapsed().as_secs_f64());
                    }
                    take_answer(answer)?
                }
            };
            Ok(Looked { joining, fetched })
        }
    }

    /// Stages 3 to 6 (CPU work): resolves the looked-up values, applies the policies, runs the
    /// functions, and builds the model's frame.
    pub fn complete(&self, looked: Looked) -> RequestResult<Joined> {
        let Looked {
            mut joining,
            fetched,
        } = looked;
        let (found, down) = match fetched {
            Fetched::Answer(answer) => {
                let (_, columns) = self.queries(&joining.keys);
                (answer.into_rows(&columns), false)
            }
            Fetched::Down => (vec![None; joining.keys.len()], true),
        };
        self.resolve_lookups(&mut joining, &found, down)?;
        self.compute_functions(&mut joining)?;
        self.assemble(joining)
    }

    /// The joined frame of the model's columns, and every joined column (for
    /// `return_features`), in one call: [`JoinPlan::lookup`] blocking the calling thread while
    /// the store answers, then [`JoinPlan::complete`].
    pub fn join(&self, frame: &Frame, ignore: Option<&str>) -> RequestResult<Joined> {
        let joining = self.prepare(frame, ignore)?;
        let fetched = if joining.keys.is_empty() {
            Fetched::Answer(Answer::Rows(Vec::new()))
        } else {
            let (queries, columns) = self.queries(&joining.keys);
            let started = Instant::now();
            let found = self.store.lookup(&queries, &columns);
            if let Some(h) = &self.lookup_duration {
                h.observe(started.elapsed().as_secs_f64());
            }
            take_answer(found.map(Answer::Rows))?
        };
        self.complete(Looked { joining, fetched })
    }

    /// Whether a lookup waits for a remote store: then it is awaited between two jobs on the
    /// inference pool ([`JoinPlan::lookup`] then [`JoinPlan::complete`]), not on a worker.
    pub fn waits_for_store(&self) -> bool {
        !self.store.answers_inline()
    }

    /// The online store's kind (`embedded`, `redis`).
    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    /// Sends the batch to the store, when there is one: the pending answer and when it left.
    fn start_lookup(&self, joining: &Joining) -> Option<(Pending, Instant)> {
        if joining.keys.is_empty() {
            return None;
        }
        let (queries, columns) = self.queries(&joining.keys);
        let started = Instant::now();
        Some((self.store.start_lookup(&queries, &columns), started))
    }
}

/// The result of a join: the model's frame, and every column by name (request, looked up,
/// computed) for `return_features`.
pub struct Joined {
    pub frame: Frame,
    pub env: Vec<(Arc<str>, Vec<Value>)>,
    /// (column of `frame`, rows) the feature's default filled.
    pub defaulted: Vec<(usize, u32)>,
}

/// Columns as JSON records, one per row (`return_features`); timestamps as ISO 8601 text.
pub fn write_records(columns: &[(Arc<str>, Vec<Value>)], rows: usize, buf: &mut Vec<u8>) {
    let out: Vec<serde_json::Value> = (0..rows)
        .map(|r| {
            columns
                .iter()
                .map(|(name, values)| (name.to_string(), values[r].to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect();
    let _ = serde_json::to_writer(&mut *buf, &out);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::data::frame::{Column, ColumnData};
    use crate::features::embedded::EmbeddedStore;
    use crate::features::spec::FeatureSpec;
    use crate::features::store::{Found, OnlineStore, Query, TableSettings};

    const SPEC: &str = r#"
request_columns:
  - {name: id, type: int}
  - {name: at, type: timestamp}
  - {name: amount, type: float}
request_timestamp: at
lookups:
  - table: t
    lookup_key: [id]
    features:
      - {name: n, type: int, default: -1, on_missing: default, max_age_seconds: 60}
      - {name: x, type: float, on_missing: null}
      - {name: must, type: float, on_missing: reject}
functions:
  - {name: ratio, expression: "x / amount", type: float, on_null: default, default: 0.5}
  - {name: strict, expression: "amount - 1", type: float}
model_columns: [n, ratio, must, strict]
"#;

    /// Table `t` (key `id`, event time `ts`) with `rows`, one JSON object a line.
    fn table_of(dir: &std::path::Path, rows: &str) -> TableSettings {
        let path = dir.join("t.jsonl");
        std::fs::write(&path, rows).unwrap();
        TableSettings {
            name: "t".into(),
            path,
            primary_keys: vec!["id".into()],
            timestamp_key: None,
            event_timestamp: Some("ts".into()),
        }
    }

    fn plan(dir: &std::path::Path) -> JoinPlan {
        let rows = concat!(
            "{\"id\": 1, \"n\": 5, \"x\": 2.0, \"must\": 1.5, \"ts\": \"2026-11-22T10:00:00Z\"}\n",
            "{\"id\": 2, \"n\": 7, \"must\": 2.5, \"ts\": \"2026-11-22T09:00:00Z\"}\n",
        );
        let store = EmbeddedStore::open(vec![table_of(dir, rows)]).unwrap();
        let spec: FeatureSpec = serde_yaml::from_str(SPEC).unwrap();
        JoinPlan::compile(&spec, Arc::new(store), None).unwrap()
    }

    fn frame(ids: &[i64], at: &str, amounts: &[f64]) -> Frame {
        Frame {
            columns: vec![
                Column::scalar("id", ColumnData::I64(ids.to_vec())),
                Column::scalar("at", ColumnData::Str(vec![at.to_owned(); ids.len()])),
                Column::scalar("amount", ColumnData::F64(amounts.to_vec())),
            ],
        }
    }

    fn column<'a>(j: &'a Joined, name: &str) -> &'a [Value] {
        &j.env.iter().find(|(n, _)| &**n == name).unwrap().1
    }

    #[test]
    fn present_values_join_and_functions_compute() {
        let dir = tempfile::tempdir().unwrap();
        let j = plan(dir.path())
            .join(&frame(&[1], "2026-11-22T10:00:30Z", &[4.0]), None)
            .unwrap();
        assert_eq!(column(&j, "n"), [Value::Int(5)]);
        assert_eq!(column(&j, "ratio"), [Value::Float(0.5)]);
        let names: Vec<&str> = j.frame.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["n", "ratio", "must", "strict"]);
        assert_eq!(j.frame.columns[3].data, ColumnData::F64(vec![3.0]));
    }

    #[test]
    fn stale_values_follow_the_policy_and_null_inputs_give_null_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        // Row 2 is an hour old (max age 60 s): n defaults; x is missing (policy null), so the
        // ratio is null and takes its default.
        let j = plan(dir.path())
            .join(&frame(&[2], "2026-11-22T10:00:00Z", &[4.0]), None)
            .unwrap();
        assert_eq!(column(&j, "n"), [Value::Int(-1)]);
        assert_eq!(column(&j, "x"), [Value::Null]);
        assert_eq!(column(&j, "ratio"), [Value::Float(0.5)]);
    }

    #[test]
    fn reject_names_the_key_and_table() {
        let dir = tempfile::tempdir().unwrap();
        let e = plan(dir.path())
            .join(&frame(&[1, 9], "2026-11-22T10:00:30Z", &[4.0, 4.0]), None)
            .err()
            .unwrap();
        assert_eq!(e.status().as_u16(), 422);
        assert_eq!(
            e.to_string(),
            "row 1: feature 'must' for id=9 in table 't' has no value"
        );
    }

    #[test]
    fn a_null_function_result_without_a_default_is_refused_and_nulls_never_reach_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path());
        // amount * amount overflows: a non-finite result is null, and `strict` has no default.
        let spec: FeatureSpec =
            serde_yaml::from_str(&SPEC.replace("amount - 1", "amount * amount").replace(
                "model_columns: [n, ratio, must, strict]",
                "model_columns: [strict, x]",
            ))
            .unwrap();
        let store = p.store.clone();
        let p = JoinPlan::compile(&spec, store, None).unwrap();
        let e = p
            .join(&frame(&[1], "2026-11-22T10:00:30Z", &[f64::MAX]), None)
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("on-demand feature 'strict' is null"),
            "{e}"
        );
        // x is null for id 2 (policy null) and the model takes it: refused by name.
        let e = p
            .join(&frame(&[2], "2026-11-22T10:00:30Z", &[1.0]), None)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("feature 'x' is null and the model needs a value"),
            "{e}"
        );
    }

    #[test]
    fn a_request_with_every_model_column_needs_no_lookup_and_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = Frame {
            columns: vec![
                Column::scalar("n", ColumnData::I64(vec![1])),
                Column::scalar("ratio", ColumnData::F64(vec![0.25])),
                Column::scalar("must", ColumnData::F64(vec![2.0])),
                Column::scalar("strict", ColumnData::F64(vec![3.0])),
            ],
        };
        let j = plan(dir.path()).join(&f, None).unwrap();
        assert_eq!(j.frame.columns[1].data, ColumnData::F64(vec![0.25]));
        // Only `x` is missing: it feeds `ratio`, which the request sent, so nothing is looked up.
        assert!(!j.env.iter().any(|(n, _)| &**n == "x"));
    }

    #[test]
    fn csv_cells_are_text_until_the_spec_types_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id,code,score\n00123,42,1.5\n7,x,NaN\n").unwrap();
        let store = EmbeddedStore::open(vec![TableSettings {
            name: "t".into(),
            path,
            primary_keys: vec!["id".into()],
            timestamp_key: None,
            event_timestamp: None,
        }])
        .unwrap();
        let spec: FeatureSpec = serde_yaml::from_str(
            "request_columns: [{name: id, type: string}]\nlookups: [{table: t, lookup_key: [id], features: [{name: code, type: string}, {name: score, type: float, on_missing: null}]}]\nfunctions: [{name: s2, expression: 'coalesce(score, 0.0)', type: float}]\nmodel_columns: [code, s2]\n",
        )
        .unwrap();
        let p = JoinPlan::compile(&spec, Arc::new(store), None).unwrap();
        let f = |id: &str| Frame {
            columns: vec![Column::scalar("id", ColumnData::Str(vec![id.into()]))],
        };
        let j = p.join(&f("00123"), None).unwrap();
        assert_eq!(j.frame.columns[0].data, ColumnData::Str(vec!["42".into()]));
        assert_eq!(j.frame.columns[1].data, ColumnData::F64(vec![1.5]));
        // A NaN in the file is no value.
        let j = p.join(&f("7"), None).unwrap();
        assert_eq!(column(&j, "score"), [Value::Null]);
        assert_eq!(j.frame.columns[1].data, ColumnData::F64(vec![0.0]));
    }

    #[test]
    fn specs_that_do_not_fit_are_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let store = plan(dir.path()).store.clone();
        for (edit, needle) in [
            (("table: t", "table: nope"), "no table 'nope'"),
            (
                ("lookup_key: [id]", "lookup_key: [who]"),
                "lookup key 'who' is not a request column",
            ),
            (
                ("{name: n, type: int", "{name: nn, type: int"),
                "no column 'nn'",
            ),
            (("x / amount", "x / "), "function 'ratio': at character 5"),
            (
                ("x / amount", "x > amount"),
                "gives bool, not the declared float",
            ),
            (
                ("model_columns: [n,", "model_columns: [zz,"),
                "model column 'zz'",
            ),
            (
                ("default: -1", "default: 'many'"),
                "default \"many\" is not a int",
            ),
            (
                ("lookup_key: [id]", "lookup_key: [id, amount]"),
                "lookup_key has 2 columns but the table's key has 1",
            ),
            (
                (
                    "lookup_key: [id]",
                    "lookup_key: [id]\n    timestamp_lookup_key: at",
                ),
                "needs a table with a timestamp_key",
            ),
            (
                ("default: -1, on_missing: default", "on_missing: default"),
                "on_missing: default but no default",
            ),
        ] {
            let spec: FeatureSpec = serde_yaml::from_str(&SPEC.replace(edit.0, edit.1)).unwrap();
            let e = JoinPlan::compile(&spec, store.clone(), None).err().unwrap();
            assert!(e.contains(needle), "{edit:?}: {e}");
        }
    }

    // ---- the stages and the two-step API ----

    /// A feature with a default and a max age: each outcome is reachable without a refusal.
    const OUTCOMES: &str = r#"
request_columns:
  - {name: id, type: int}
  - {name: at, type: timestamp}
request_timestamp: at
lookups:
  - table: t
    lookup_key: [id]
    features:
      - {name: n, type: int, default: -1, on_missing: default, max_age_seconds: 60}
      - {name: k, type: int, default: 0}
model_columns: [n, k]
"#;

    fn table(dir: &std::path::Path) -> TableSettings {
        let rows = concat!(
            "{\"id\": 1, \"n\": 5, \"k\": 1, \"ts\": \"2026-11-22T10:00:00Z\"}\n",
            "{\"id\": 2, \"n\": 7, \"k\": 2, \"ts\": \"2026-11-22T09:00:00Z\"}\n",
        );
        table_of(dir, rows)
    }

    /// A store that knows table `t` and answers every lookup with `error`.
    struct Failing {
        table: TableSettings,
        error: StoreError,
    }

    impl OnlineStore for Failing {
        fn lookup(
            &self,
            _: &[Query<'_>],
            _: &[&[String]],
        ) -> Result<Vec<Option<Found>>, StoreError> {
            Err(self.error.clone())
        }
        fn table(&self, _: &str) -> Option<TableSettings> {
            Some(self.table.clone())
        }
        fn columns(&self, _: &str) -> Option<Vec<String>> {
            None
        }
        fn kind(&self) -> &'static str {
            "failing"
        }
    }

    /// A remote-like store: its answer is decoded later, from the columns `complete` gives back.
    struct Deferred(TableSettings);

    impl OnlineStore for Deferred {
        fn lookup(
            &self,
            _: &[Query<'_>],
            _: &[&[String]],
        ) -> Result<Vec<Option<Found>>, StoreError> {
            unreachable!("the two-step join starts lookups")
        }
        fn start_lookup(&self, queries: &[Query<'_>], _: &[&[String]]) -> Pending {
            let keys: Vec<String> = queries.iter().map(|q| q.key.to_owned()).collect();
            Box::pin(std::future::ready(Ok(Answer::Undecoded(Box::new(
                move |columns: &[&[String]]| {
                    keys.iter()
                        .zip(columns)
                        .map(|(k, cols)| {
                            assert_eq!(*cols, ["n".to_owned(), "k".to_owned()]);
                            (k == "1").then(|| Found {
                                values: vec![Value::Int(11), Value::Int(12)],
                                event_ms: None,
                            })
                        })
                        .collect()
                },
            )))))
        }
        fn table(&self, _: &str) -> Option<TableSettings> {
            Some(self.0.clone())
        }
        fn columns(&self, _: &str) -> Option<Vec<String>> {
            None
        }
        fn kind(&self) -> &'static str {
            "deferred"
        }
    }

    fn outcome_plan(store: Arc<dyn OnlineStore>, m: &crate::metrics::Metrics) -> JoinPlan {
        let spec: FeatureSpec = serde_yaml::from_str(OUTCOMES).unwrap();
        JoinPlan::compile(&spec, store, Some(m)).unwrap()
    }

    fn request(ids: &[i64], at: &str) -> Frame {
        Frame {
            columns: vec![
                Column::scalar("id", ColumnData::I64(ids.to_vec())),
                Column::scalar("at", ColumnData::Str(vec![at.to_owned(); ids.len()])),
            ],
        }
    }

    fn counted(m: &crate::metrics::Metrics, outcome: &str) -> u64 {
        m.features
            .values
            .with_label_values(&["t", "n", outcome])
            .get()
    }

    /// Runs a future that never waits (the embedded and test stores answer at once).
    fn now<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = futures_util::task::noop_waker();
        match f.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("the lookup waited"),
        }
    }

    #[test]
    fn each_outcome_is_reached_and_counted_under_its_label() {
        let dir = tempfile::tempdir().unwrap();
        let m = crate::metrics::Metrics::new();
        let store = EmbeddedStore::open(vec![table(dir.path())]).unwrap();
        let p = outcome_plan(Arc::new(store), &m);
        // id 1 is 30 s old (present), id 2 an hour (stale), id 9 has no row (missing).
        let j = p
            .join(&request(&[1, 2, 9], "2026-11-22T10:00:30Z"), None)
            .unwrap();
        assert_eq!(
            column(&j, "n"),
            [Value::Int(5), Value::Int(-1), Value::Int(-1)]
        );
        assert_eq!(j.defaulted, [(0, 2), (1, 1)]);
        for down in [
            StoreError::Timeout,
            StoreError::Unreachable("refused".into()),
        ] {
            let failing = Failing {
                table: table(dir.path()),
                error: down,
            };
            let q = outcome_plan(Arc::new(failing), &m);
            let j = q
                .join(&request(&[1], "2026-11-22T10:00:30Z"), None)
                .unwrap();
            assert_eq!(column(&j, "n"), [Value::Int(-1)]);
        }
        // Sent by the caller: counted as such (when its table is looked up for `k`), not looked
        // up.
        let mut sent = request(&[1, 2], "2026-11-22T10:00:30Z");
        sent.columns
            .push(Column::scalar("n", ColumnData::I64(vec![3, 4])));
        p.join(&sent, None).unwrap();
        let got: Vec<u64> = Outcome::ALL
            .iter()
            .map(|o| counted(&m, o.as_str()))
            .collect();
        assert_eq!(got, [1, 1, 1, 2], "present, missing, stale, timed_out");
        assert_eq!(counted(&m, "defaulted"), 4);
        assert_eq!(counted(&m, "request"), 2);
    }

    #[test]
    fn a_store_error_that_is_no_outage_is_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let failing = Failing {
            table: table(dir.path()),
            error: StoreError::UnknownTable("t".into()),
        };
        let m = crate::metrics::Metrics::new();
        let p = outcome_plan(Arc::new(failing), &m);
        let e = p
            .join(&request(&[1], "2026-11-22T10:00:30Z"), None)
            .err()
            .unwrap();
        assert_eq!(e.status().as_u16(), 500);
    }

    #[test]
    fn reject_says_stale_or_timed_out() {
        let dir = tempfile::tempdir().unwrap();
        let m = crate::metrics::Metrics::new();
        let strict = OUTCOMES.replace("default: -1, on_missing: default", "on_missing: reject");
        let spec: FeatureSpec = serde_yaml::from_str(&strict).unwrap();
        let store = EmbeddedStore::open(vec![table(dir.path())]).unwrap();
        let p = JoinPlan::compile(&spec, Arc::new(store), Some(&m)).unwrap();
        let e = p
            .join(&request(&[1, 2], "2026-11-22T10:00:30Z"), None)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "row 1: feature 'n' for id=2 in table 't' is older than its max age of 60 s"
        );
        let failing = Failing {
            table: table(dir.path()),
            error: StoreError::Timeout,
        };
        let p = JoinPlan::compile(&spec, Arc::new(failing), Some(&m)).unwrap();
        let e = p
            .join(&request(&[1], "2026-11-22T10:00:30Z"), None)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "row 0: feature 'n' for id=1 in table 't' could not be looked up (the online store did not answer in time)"
        );
        // Counted up to the refused row, as before it.
        assert_eq!(counted(&m, "present"), 1);
        assert_eq!(counted(&m, "stale"), 1);
        assert_eq!(counted(&m, "timed_out"), 1);
    }

    #[test]
    fn lookup_then_complete_is_the_one_call_join() {
        fn owned<T: Send + 'static>(t: T) -> T {
            t
        }
        let dir = tempfile::tempdir().unwrap();
        let p = plan(dir.path());
        for (ids, at) in [
            (&[1][..], "2026-11-22T10:00:30Z"),
            (&[2, 1], "2026-11-22T10:00:00Z"),
        ] {
            let f = frame(ids, at, &vec![4.0; ids.len()]);
            // The future owns what it needs: the frame may go before it is awaited.
            let pending = owned(p.lookup(&f, None));
            drop(f);
            let looked = owned(now(pending).unwrap());
            let two = p.complete(looked).unwrap();
            let one = p
                .join(&frame(ids, at, &vec![4.0; ids.len()]), None)
                .unwrap();
            assert_eq!(two.frame, one.frame);
            assert_eq!(two.env, one.env);
            assert_eq!(two.defaulted, one.defaulted);
        }
        // Errors of the first stage come from the future.
        let bad = Frame {
            columns: vec![Column::scalar("nope", ColumnData::I64(vec![1]))],
        };
        let e = now(p.lookup(&bad, None)).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("unknown input column(s) [\"nope\"]"),
            "{e}"
        );
    }

    #[test]
    fn an_undecoded_answer_is_decoded_by_complete_with_each_querys_columns() {
        let dir = tempfile::tempdir().unwrap();
        let m = crate::metrics::Metrics::new();
        let p = outcome_plan(Arc::new(Deferred(table(dir.path()))), &m);
        let looked = now(p.lookup(&request(&[1, 9], "2026-11-22T10:00:30Z"), None)).unwrap();
        let j = p.complete(looked).unwrap();
        assert_eq!(column(&j, "n"), [Value::Int(11), Value::Int(-1)]);
        assert_eq!(counted(&m, "present"), 1);
        assert_eq!(counted(&m, "missing"), 1);
    }
}
