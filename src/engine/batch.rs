//! Adaptive batching: concurrent requests to one loaded model run as one engine call.
//!
//! A request's inputs join its model's open batch. The batch runs on the worker that fills it
//! (`max_rows` rows) or finds its first request has waited `max_delay`; until then it is
//! deferred in the pool ([`InferencePool::defer`]): the worker goes on with the queued
//! requests, which may join it, and runs it as soon as it finds the queue empty (after one
//! yield to the threads that queue requests). So a request waits for company only while other
//! requests are queued (any endpoint's: the queue is the pool's), and under load the batch
//! grows with the queue. The
//! inputs are concatenated along their first (row) dimension, the model runs once, and each
//! request gets its own rows of every output back, in its own continuation ([`Waiting`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::Histogram;

use super::pool::{guarded, InferencePool};
use super::{EngineError, LoadedModel, NamedTensor, Tensor, TensorData};

/// A request waiting for its rows of a batch's outputs.
pub trait Waiting: Send {
    /// Nobody waits for the answer any more: its rows are left out of the batch.
    fn gone(&self) -> bool;
    /// Left out because it was gone (counted as the pool counts the jobs it skips).
    fn abandon(self: Box<Self>);
    /// Goes on with the request's outputs (its rows only), on worker `worker`.
    fn resume(self: Box<Self>, worker: usize, outputs: Result<Vec<NamedTensor>, EngineError>);
}

/// One request's part of a batch.
pub struct Item {
    /// The request's bound inputs, one tensor per model input, `rows` rows each.
    pub inputs: Vec<Tensor>,
    pub rows: usize,
    pub waiting: Box<dyn Waiting>,
}

/// When a batch runs.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_rows: usize,
    pub max_delay: Duration,
}

/// The open batch of one loaded model.
pub struct Batcher {
    model: Arc<dyn LoadedModel>,
    open: Mutex<Open>,
    /// Why the model cannot take batches (an input or output of fixed row count), if so.
    unbatchable: Option<String>,
}

#[derive(Default)]
struct Open {
    items: Vec<Item>,
    rows: usize,
    since: Option<Instant>,
    /// A deferred run of this batcher is pending in the pool: at most one at a time, and one
    /// whenever the open batch holds anything.
    armed: bool,
    /// Where the batch's size is counted (its first request's served entity's histogram).
    sizes: Option<Histogram>,
}

/// A batch taken to run: its requests, and where its size is counted.
struct Batch {
    items: Vec<Item>,
    sizes: Option<Histogram>,
}

impl Open {
    fn take(&mut self) -> Batch {
        self.rows = 0;
        self.since = None;
        Batch {
            items: std::mem::take(&mut self.items),
            sizes: self.sizes.take(),
        }
    }
}

impl Batcher {
    pub fn new(model: Arc<dyn LoadedModel>) -> Arc<Self> {
        let fixed = |kind: &str, specs: &[super::TensorSpec]| {
            specs
                .iter()
                .find(|s| !matches!(s.shape.first(), Some(None)))
                .map(|s| {
                    format!(
                        "its {kind} '{}' has shape {:?}, not a free first (row) dimension, so requests cannot be combined",
                        s.name, s.shape
                    )
                })
        };
        let unbatchable =
            fixed("input", model.inputs()).or_else(|| fixed("output", model.outputs()));
        Arc::new(Self {
            model,
            open: Mutex::new(Open::default()),
            unbatchable,
        })
    }

    /// Why the model cannot take batches, if it cannot.
    pub fn unbatchable(&self) -> Option<&str> {
        self.unbatchable.as_deref()
    }

    /// Adds `item` to the open batch, on pool worker `worker`, and runs the batch here when it
    /// is full or its wait is over; else leaves it to this batcher's deferred run in `pool`
    /// (armed by the batch's first request). A request of more than `max_rows` rows runs
    /// alone. `sizes` counts the requests of each engine call.
    pub fn submit(
        self: &Arc<Self>,
        pool: &InferencePool,
        worker: usize,
        limits: BatchLimits,
        item: Item,
        sizes: &Histogram,
    ) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.rows + item.rows > limits.max_rows && !open.items.is_empty() {
            // It does not fit: the open batch runs first, this one starts the next.
            let full = open.take();
            drop(open);
            self.run(worker, full);
            open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        }
        let now = Instant::now();
        let since = *open.since.get_or_insert(now);
        if open.items.is_empty() {
            open.sizes = Some(sizes.clone());
        }
        open.rows += item.rows;
        open.items.push(item);
        let due = since + limits.max_delay;
        if open.rows >= limits.max_rows || now >= due {
            let batch = open.take();
            drop(open);
            self.run(worker, batch);
        } else if !open.armed {
            open.armed = true;
            drop(open);
            let batcher = self.clone();
            pool.defer(due, move |worker| batcher.run_deferred(worker));
        }
    }

    /// The deferred run: whatever the open batch holds now (a batch that filled has run
    /// already; a later one runs early rather than wait for an entry of its own).
    fn run_deferred(&self, worker: usize) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.armed = false;
        if open.items.is_empty() {
            return;
        }
        let batch = open.take();
        drop(open);
        self.run(worker, batch);
    }

    /// One engine call for `items` (those whose caller has gone are left out), and each
    /// request's rows back to it. When the combined call fails, or its outputs cannot be cut
    /// into each request's rows, each request runs alone: it gets the answer, or the error,
    /// it would have got without batching.
    fn run(&self, worker: usize, batch: Batch) {
        let Batch { items, sizes } = batch;
        let (mut items, gone): (Vec<Item>, Vec<Item>) =
            items.into_iter().partition(|i| !i.waiting.gone());
        for item in gone {
            item.waiting.abandon();
        }
        if items.len() <= 1 {
            if let Some(item) = items.pop() {
                observe(&sizes, 1);
                self.run_alone(worker, item);
            }
            return;
        }
        let Ok(inputs) = concat(&items) else {
            return self.run_each(worker, items, &sizes);
        };
        let rows: Vec<usize> = items.iter().map(|i| i.rows).collect();
        let combined = guarded(|| self.model.run(worker, inputs))
            .map_err(|e| e.to_string())
            .and_then(|outputs| outputs.map_err(|e| e.to_string()))
            .and_then(|outputs| split(outputs, &rows));
        match combined {
            Ok(parts) => {
                observe(&sizes, items.len());
                for (item, part) in items.into_iter().zip(parts) {
                    resume(item.waiting, worker, Ok(part));
                }
            }
            Err(why) => {
                tracing::warn!(
                    requests = items.len(),
                    "a batched engine call failed ({why}); its requests run one by one"
                );
                self.run_each(worker, items, &sizes);
            }
        }
    }

    /// One request's own engine call; a panic in it is that request's error alone.
    fn run_alone(&self, worker: usize, item: Item) {
        let outputs = guarded(|| self.model.run(worker, item.inputs))
            .unwrap_or_else(|e| Err(EngineError::Run(e.to_string())));
        resume(item.waiting, worker, outputs);
    }

    fn run_each(&self, worker: usize, items: Vec<Item>, sizes: &Option<Histogram>) {
        for item in items {
            observe(sizes, 1);
            self.run_alone(worker, item);
        }
    }
}

/// Counts one engine call of `requests` requests.
fn observe(sizes: &Option<Histogram>, requests: usize) {
    if let Some(sizes) = sizes {
        sizes.observe(requests as f64);
    }
}

/// Goes on with one request; its panic is its own (its answer says so), not the batch's.
fn resume(w: Box<dyn Waiting>, worker: usize, outputs: Result<Vec<NamedTensor>, EngineError>) {
    if let Err(e) = guarded(|| w.resume(worker, outputs)) {
        tracing::error!("a batched request panicked after inference: {e}");
    }
}

/// The items' inputs concatenated along the row dimension (copied: each item keeps its own,
/// to run alone should the combined call fail); an error when they do not line up
/// (different counts, types or row shapes).
fn concat(items: &[Item]) -> Result<Vec<Tensor>, String> {
    let first = &items[0].inputs;
    for item in &items[1..] {
        if item.inputs.len() != first.len() {
            return Err("requests bound to different numbers of inputs".into());
        }
        for (a, b) in first.iter().zip(&item.inputs) {
            if a.data.elem() != b.data.elem() || a.shape.get(1..) != b.shape.get(1..) {
                return Err("requests bound to inputs of different types or shapes".into());
            }
            if a.shape.is_empty() {
                return Err("a scalar input has no rows to batch".into());
            }
        }
    }
    let total: usize = items.iter().map(|i| i.rows).sum();
    let mut out = Vec::with_capacity(first.len());
    for (j, input) in first.iter().enumerate() {
        let mut shape = input.shape.clone();
        shape[0] = total;
        let len = items.iter().map(|i| i.inputs[j].data.len()).sum();
        let mut data = empty_like(&input.data, len);
        for item in items {
            append(&mut data, &item.inputs[j].data);
        }
        out.push(Tensor { shape, data });
    }
    Ok(out)
}

fn empty_like(data: &TensorData, capacity: usize) -> TensorData {
    match data {
        TensorData::F32(_) => TensorData::F32(Vec::with_capacity(capacity)),
        TensorData::F64(_) => TensorData::F64(Vec::with_capacity(capacity)),
        TensorData::I64(_) => TensorData::I64(Vec::with_capacity(capacity)),
        TensorData::I32(_) => TensorData::I32(Vec::with_capacity(capacity)),
        TensorData::Bool(_) => TensorData::Bool(Vec::with_capacity(capacity)),
        TensorData::Str(_) => TensorData::Str(Vec::with_capacity(capacity)),
    }
}

/// Copies `from`'s values to the end of `to` (same type, checked by the caller).
fn append(to: &mut TensorData, from: &TensorData) {
    match (to, from) {
        (TensorData::F32(a), TensorData::F32(b)) => a.extend_from_slice(b),
        (TensorData::F64(a), TensorData::F64(b)) => a.extend_from_slice(b),
        (TensorData::I64(a), TensorData::I64(b)) => a.extend_from_slice(b),
        (TensorData::I32(a), TensorData::I32(b)) => a.extend_from_slice(b),
        (TensorData::Bool(a), TensorData::Bool(b)) => a.extend_from_slice(b),
        (TensorData::Str(a), TensorData::Str(b)) => a.extend_from_slice(b),
        _ => unreachable!("types checked before appending"),
    }
}

/// The outputs cut into each request's rows (`rows`, in order); an output that is not one
/// row per input row cannot be cut.
fn split(outputs: Vec<NamedTensor>, rows: &[usize]) -> Result<Vec<Vec<NamedTensor>>, String> {
    let total: usize = rows.iter().sum();
    let mut parts: Vec<Vec<NamedTensor>> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for output in outputs {
        let shape = &output.tensor.shape;
        if shape.first() != Some(&total) {
            return Err(format!(
                "the model's output '{}' has shape {shape:?}, not one row per input row ({total}): it cannot be batched",
                output.name
            ));
        }
        let width = output.tensor.row_width();
        let mut data = output.tensor.data;
        // Cut from the end so each cut moves only its own values.
        let mut cuts = Vec::with_capacity(rows.len());
        let mut end = total;
        for &n in rows.iter().rev() {
            end -= n;
            cuts.push(split_off(&mut data, end * width));
        }
        for (part, (cut, &n)) in parts.iter_mut().zip(cuts.into_iter().rev().zip(rows)) {
            let mut shape = shape.clone();
            shape[0] = n;
            part.push(NamedTensor {
                name: output.name.clone(),
                tensor: Tensor { shape, data: cut },
            });
        }
    }
    Ok(parts)
}

fn split_off(data: &mut TensorData, at: usize) -> TensorData {
    match data {
        TensorData::F32(v) => TensorData::F32(v.split_off(at)),
        TensorData::F64(v) => TensorData::F64(v.split_off(at)),
        TensorData::I64(v) => TensorData::I64(v.split_off(at)),
        TensorData::I32(v) => TensorData::I32(v.split_off(at)),
        TensorData::Bool(v) => TensorData::Bool(v.split_off(at)),
        TensorData::Str(v) => TensorData::Str(v.split_off(at)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::engine::binding::InputBinding;
    use crate::engine::tract_engine::TractModel;

    /// A request's continuation that hands its outputs to the test.
    struct Collect(mpsc::Sender<Result<Vec<NamedTensor>, EngineError>>);

    impl Waiting for Collect {
        fn gone(&self) -> bool {
            false
        }

        fn abandon(self: Box<Self>) {}

        fn resume(self: Box<Self>, _: usize, outputs: Result<Vec<NamedTensor>, EngineError>) {
            self.0.send(outputs).unwrap();
        }
    }

    fn tensor(shape: &[usize], data: TensorData) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    fn item(
        inputs: Vec<Tensor>,
        rows: usize,
    ) -> (Item, mpsc::Receiver<Result<Vec<NamedTensor>, EngineError>>) {
        let (tx, rx) = mpsc::channel();
        let item = Item {
            inputs,
            rows,
            waiting: Box::new(Collect(tx)),
        };
        (item, rx)
    }

    #[test]
    fn inputs_concatenate_by_row_and_outputs_split_back_in_order() {
        let rows = [2, 1, 3];
        let items: Vec<Item> = rows
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let f: Vec<f32> = (0..n * 2).map(|v| (i * 100 + v) as f32).collect();
                let s: Vec<String> = (0..n).map(|r| format!("{i}.{r}")).collect();
                let inputs = vec![
                    tensor(&[n, 2], TensorData::F32(f)),
                    tensor(&[n], TensorData::Str(s)),
                ];
                item(inputs, n).0
            })
            .collect();
        let joined = concat(&items).unwrap();
        assert_eq!(joined[0].shape, [6, 2]);
        assert_eq!(
            joined[0].data,
            TensorData::F32(vec![
                0., 1., 2., 3., 100., 101., 200., 201., 202., 203., 204., 205.
            ])
        );
        let names = ["0.0", "0.1", "1.0", "2.0", "2.1", "2.2"].map(String::from);
        assert_eq!(joined[1].data, TensorData::Str(names.to_vec()));
        // What a model gives back, one row per input row: each request gets its own rows.
        let outputs = vec![NamedTensor {
            name: "p".into(),
            tensor: joined[0].clone(),
        }];
        let parts = split(outputs, &rows).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[1][0].tensor.shape, [1, 2]);
        assert_eq!(parts[1][0].tensor.data, TensorData::F32(vec![100., 101.]));
        assert_eq!(parts[2][0].tensor.shape, [3, 2]);
        assert_eq!(
            parts[2][0].tensor.data,
            TensorData::F32(vec![200., 201., 202., 203., 204., 205.])
        );
        assert_eq!(parts[0][0].name, "p");
    }

    #[test]
    fn outputs_not_one_row_per_input_row_and_mismatched_inputs_are_refused() {
        let outputs = vec![NamedTensor {
            name: "total".into(),
            tensor: tensor(&[1], TensorData::F64(vec![1.0])),
        }];
        let e = split(outputs, &[1, 2]).unwrap_err();
        assert!(
            e.contains("'total'") && e.contains("cannot be batched"),
            "{e}"
        );
        let items = vec![
            item(vec![tensor(&[1, 2], TensorData::F32(vec![1., 2.]))], 1).0,
            item(vec![tensor(&[1, 3], TensorData::F32(vec![1., 2., 3.]))], 1).0,
        ];
        assert!(concat(&items).is_err());
    }

    fn demo_onnx() -> Vec<u8> {
        // Relative to the package root, where cargo runs the tests (not the folder the test
        // binary was built in, which a shared target folder may have built elsewhere).
        std::fs::read("models/transactions/1/model.onnx").unwrap()
    }

    /// The demo's logistic regression on tract, its input binding, and `rows` rows of
    /// different inputs bound to its tensors.
    fn demo_inputs(model: &TractModel, first: usize, rows: usize) -> Vec<Tensor> {
        let binding = InputBinding::compile(model.inputs(), None).unwrap();
        let data: Vec<String> = (first..first + rows)
            .map(|r| {
                format!(
                    "[\"Product {}\", {}.5, {}, {}, 150.0, 0.{}]",
                    ["A", "B", "C"][r % 3],
                    10 * r + 3,
                    r % 7,
                    r % 2 == 0,
                    r % 9 + 1
                )
            })
            .collect();
        let body = format!(
            "{{\"dataframe_split\": {{\"columns\": [\"Product\", \"Amount\", \"transactionCount\", \"isTimeout\", \"MaxProductAmount\", \"MaxDifferenceRatio\"], \"data\": [{}]}}}}",
            data.join(",")
        );
        let request = crate::protocol::mlflow::decode_json(body.as_bytes()).unwrap();
        binding.bind(&request.frame).unwrap()
    }

    /// Two requests, the second queued while the first is bound: one engine call, and each
    /// gets exactly the outputs it gets alone.
    #[test]
    fn a_request_waits_for_a_queued_one_and_both_get_their_own_rows() {
        let model = Arc::new(TractModel::load(&demo_onnx()).unwrap());
        let alone: Vec<Vec<NamedTensor>> = [(0, 2), (2, 1)]
            .iter()
            .map(|&(first, rows)| model.run(0, demo_inputs(&model, first, rows)).unwrap())
            .collect();
        let batcher = Batcher::new(model.clone());
        assert!(batcher.unbatchable().is_none());
        let sizes = Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap();
        let limits = BatchLimits {
            max_rows: 64,
            max_delay: Duration::from_secs(3600),
        };
        let pool = InferencePool::new(1, 4);
        let (first_item, first_rx) = item(demo_inputs(&model, 0, 2), 2);
        let (second_item, second_rx) = item(demo_inputs(&model, 2, 1), 1);
        let (started_tx, started_rx) = mpsc::channel();
        std::thread::scope(|s| {
            let (p, b, z) = (pool.clone(), batcher.clone(), sizes.clone());
            s.spawn(move || {
                let q = p.clone();
                p.run_blocking(move |worker| {
                    started_tx.send(()).unwrap();
                    // The second request is queued behind this one: the first waits for it.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while q.queued() == 0 {
                        assert!(Instant::now() < deadline, "the second request never queued");
                        std::thread::yield_now();
                    }
                    b.submit(&q, worker, limits, first_item, &z);
                })
                .unwrap();
            });
            // Queued only once the first holds the only worker.
            started_rx.recv().unwrap();
            let (q, b, z) = (pool.clone(), batcher.clone(), sizes.clone());
            pool.run_blocking(move |worker| b.submit(&q, worker, limits, second_item, &z))
                .unwrap();
        });
        let first = first_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        let second = second_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(first, alone[0]);
        assert_eq!(second, alone[1]);
        assert_eq!(sizes.get_sample_count(), 1, "one engine call");
        assert_eq!(sizes.get_sample_sum(), 2.0, "of both requests");
    }

    /// A request whose caller has gone is left out of the call and counted, not answered.
    #[test]
    fn a_request_whose_caller_went_is_left_out_and_counted() {
        struct Gone(Arc<std::sync::atomic::AtomicUsize>);
        impl Waiting for Gone {
            fn gone(&self) -> bool {
                true
            }
            fn abandon(self: Box<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            fn resume(self: Box<Self>, _: usize, _: Result<Vec<NamedTensor>, EngineError>) {
                panic!("a gone request is not resumed");
            }
        }
        let model = Arc::new(TractModel::load(&demo_onnx()).unwrap());
        let alone = model.run(0, demo_inputs(&model, 5, 2)).unwrap();
        let batcher = Batcher::new(model.clone());
        let abandoned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (kept, kept_rx) = item(demo_inputs(&model, 5, 2), 2);
        let gone = Item {
            inputs: demo_inputs(&model, 0, 1),
            rows: 1,
            waiting: Box::new(Gone(abandoned.clone())),
        };
        let sizes = Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap();
        batcher.run(
            0,
            Batch {
                items: vec![gone, kept],
                sizes: Some(sizes.clone()),
            },
        );
        assert_eq!(kept_rx.try_recv().unwrap().unwrap(), alone);
        assert_eq!(abandoned.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            sizes.get_sample_sum(),
            1.0,
            "the call held the one request left"
        );
    }

    /// A request the model refuses does not fail the others of its batch: they run one by
    /// one and each gets what it would alone.
    #[test]
    fn a_bad_request_in_a_batch_fails_alone() {
        let model = Arc::new(TractModel::load(&demo_onnx()).unwrap());
        let alone = model.run(0, demo_inputs(&model, 3, 2)).unwrap();
        let batcher = Batcher::new(model.clone());
        let (good, good_rx) = item(demo_inputs(&model, 3, 2), 2);
        let mut bad_inputs = demo_inputs(&model, 0, 1);
        bad_inputs.pop();
        let (bad, bad_rx) = item(bad_inputs, 1);
        let sizes = Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap();
        batcher.run(
            0,
            Batch {
                items: vec![bad, good],
                sizes: Some(sizes.clone()),
            },
        );
        assert_eq!(good_rx.try_recv().unwrap().unwrap(), alone);
        assert!(bad_rx.try_recv().unwrap().is_err());
        assert_eq!(sizes.get_sample_count(), 2, "two calls of one request");
        assert_eq!(sizes.get_sample_sum(), 2.0);
    }
}
