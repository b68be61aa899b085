//! A call's request body within the gateway's bounds before tonic decodes it: its bytes are
//! taken from the body budget shared with REST (`server.max_inflight_body_bytes`) as they
//! arrive, and a `ModelInfer` message is read on the wire first, so that what decoding it would
//! build is known and bounded. Protobuf decoding multiplies some messages: an empty input is
//! 2 bytes on the wire and a few hundred once decoded, so a message of `server.max_body_bytes`
//! could become gigabytes. The wire read counts inputs, outputs and elements, refuses more
//! inputs than `limits.max_columns`, and takes the decoded size from the budget too; the answer
//! names the bound.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;

use super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::proto::{InferParameter, InferTensorContents, ModelInferRequest};
use super::service::status_of;
use crate::error::{Limit, RequestError};
use crate::http::body::{BodyBudget, BodyHold};
use crate::metrics::Metrics;
use crate::protocol::limits::DecodeLimits;

/// A call's share of the body budget: held until its answer is made.
pub type SharedHold = Arc<Mutex<BodyHold>>;

/// The request body of a call, metered; with `scan`, its (first) message is a `ModelInfer`
/// request, read on the wire before it is passed on whole.
pub struct Metered<B> {
    inner: B,
    budget: Arc<BodyBudget>,
    /// Refusals at a bound are counted in `modelgate_limit_refusals_total`.
    metrics: Arc<Metrics>,
    hold: SharedHold,
    scan: Option<Scan>,
}

/// Where a call's scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Gathering the first message.
    Gathering,
    /// The first message is on its way: nothing may follow it (tonic would decode it).
    Passed,
    /// A message tonic refuses at its prefix (compressed, too long): the rest goes through
    /// for it to refuse, unread.
    Through,
}

/// The `ModelInfer` message being gathered: its 5-byte gRPC prefix, then its bytes.
struct Scan {
    limits: DecodeLimits,
    state: State,
    /// The largest message tonic takes (`server.max_body_bytes`): a longer one is passed on at
    /// its prefix, for tonic to refuse before its bytes are gathered.
    max_message: usize,
    buf: BytesMut,
}

impl<B> Metered<B> {
    pub fn new(
        inner: B,
        (budget, metrics): (Arc<BodyBudget>, Arc<Metrics>),
        hold: SharedHold,
        infer: Option<(DecodeLimits, usize)>,
    ) -> Self {
        Self {
            inner,
            budget,
            metrics,
            hold,
            scan: infer.map(|(limits, max_message)| Scan {
                limits,
                state: State::Gathering,
                max_message,
                buf: BytesMut::new(),
            }),
        }
    }

    fn take(&self, n: usize) -> Result<(), RequestError> {
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        self.budget.take(&mut hold, n)
    }

    /// A refusal, counted, as the call's status.
    fn refuse(&self, e: RequestError) -> Status {
        if let Some(limit) = e.exceeded() {
            self.metrics.access.refusals(limit).inc();
        }
        status_of(&e)
    }
}

/// What the scan makes of the bytes so far.
enum Pushed {
    /// The message is not whole yet.
    Wait,
    /// Bytes to pass on, and what their message decodes to (0 when tonic refuses it at its
    /// prefix, or they are not a message's).
    Pass(Bytes, usize),
}

impl Scan {
    /// Adds `data`: the whole message (prefix included) once it is here and checked. A frame
    /// that holds the whole message is read in place, not copied.
    fn push(&mut self, data: Bytes) -> Result<Pushed, RequestError> {
        match self.state {
            State::Through => return Ok(Pushed::Pass(data, 0)),
            State::Passed if data.is_empty() => return Ok(Pushed::Pass(data, 0)),
            State::Passed => return Err(one_message()),
            State::Gathering => {}
        }
        let whole = if self.buf.is_empty() {
            data
        } else {
            self.buf.extend_from_slice(&data);
            Bytes::new()
        };
        let bytes: &[u8] = if whole.is_empty() { &self.buf } else { &whole };
        let Some(decoded) = self.check(bytes)? else {
            if !whole.is_empty() {
                self.buf.extend_from_slice(&whole);
            }
            return Ok(Pushed::Wait);
        };
        self.state = match decoded {
            0 => State::Through,
            _ => State::Passed,
        };
        let message = match whole.is_empty() {
            true => std::mem::take(&mut self.buf).freeze(),
            false => whole,
        };
        Ok(Pushed::Pass(message, decoded))
    }

    /// `None` until `bytes` hold the whole first message; then what it decodes to.
    fn check(&self, bytes: &[u8]) -> Result<Option<usize>, RequestError> {
        if bytes.len() < 5 {
            return Ok(None);
        }
        let compressed = bytes[0] != 0;
        let len = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes")) as usize;
        // Compressed (no grpc-encoding is enabled) or too long: tonic refuses it at its prefix
        // (0: nothing to decode here).
        if compressed || len > self.max_message {
            return Ok(Some(0));
        }
        match bytes.len().cmp(&(5 + len)) {
            std::cmp::Ordering::Less => Ok(None),
            std::cmp::Ordering::Greater => Err(one_message()),
            std::cmp::Ordering::Equal => decoded_size(&bytes[5..], &self.limits).map(Some),
        }
    }
}

fn one_message() -> RequestError {
    RequestError::bad("a ModelInfer call carries one message, and more bytes followed it")
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        loop {
            let frame = match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                None => {
                    // A message cut short: passed on as it came, for tonic to refuse.
                    let rest = self
                        .scan
                        .as_mut()
                        .map(|s| std::mem::take(&mut s.buf).freeze());
                    return Poll::Ready(rest.filter(|r| !r.is_empty()).map(|r| Ok(Frame::data(r))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(Status::from_error(e.into())))),
                Some(Ok(frame)) => frame,
            };
            let data = match frame.into_data() {
                Ok(data) => data,
                Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
            };
            if let Err(refused) = self.take(data.len()) {
                return Poll::Ready(Some(Err(self.refuse(refused))));
            }
            let Some(scan) = self.scan.as_mut() else {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            };
            match scan.push(data) {
                Ok(Pushed::Wait) => continue,
                Err(refused) => return Poll::Ready(Some(Err(self.refuse(refused)))),
                Ok(Pushed::Pass(message, decoded)) => {
                    // What decoding will build, held as the wire bytes are.
                    if let Err(refused) = self.take(decoded) {
                        let status = self.refuse(refused);
                        return Poll::Ready(Some(Err(decoded_refusal(status, decoded))));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(message))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.scan.as_ref().is_none_or(|s| s.buf.is_empty()) && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A call's answer, its bytes added to the call's share of the body budget as the server
/// takes them: the share is given back when the answer is done (or the caller gone), so a
/// caller that reads slowly holds budget, as REST's answers do.
pub struct HeldAnswer {
    inner: tonic::body::Body,
    hold: SharedHold,
}

impl HeldAnswer {
    pub fn new(inner: tonic::body::Body, hold: SharedHold) -> Self {
        Self { inner, hold }
    }
}

impl Body for HeldAnswer {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            let n = data.map_or(0, Bytes::len);
            self.hold
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add_answer(n);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn decoded_refusal(refused: Status, decoded: usize) -> Status {
    Status::new(
        refused.code(),
        format!(
            "the message decodes to about {decoded} bytes: {}",
            refused.message()
        ),
    )
}

/// The most a decoded repeated field or map takes per element, over its elements' own size:
/// a `Vec` grows to twice what it holds at most, a map's table to about three times.
const VEC_SLACK: usize = 2;
const MAP_SLACK: usize = 3;

/// Bytes a `ModelInfer` message takes once decoded, at most, read from its wire form without
/// decoding it; inputs and outputs counted against `limits.max_columns` on the way.
pub fn decoded_size(message: &[u8], limits: &DecodeLimits) -> Result<usize, RequestError> {
    let mut size = std::mem::size_of::<ModelInferRequest>();
    let (mut inputs, mut outputs, mut raws) = (0usize, 0usize, 0usize);
    let mut wire = Wire::new(message);
    while let Some((field, value)) = wire.field()? {
        match (field, value) {
            (4, Value::Len(entry)) => size += param_entry(entry),
            (5, Value::Len(input)) => {
                inputs += 1;
                limits.columns(inputs)?;
                size += VEC_SLACK * std::mem::size_of::<InferInputTensor>() + input_size(input)?;
            }
            (6, Value::Len(output)) => {
                outputs += 1;
                if outputs > limits.max_columns {
                    return Err(RequestError::limit(
                        Limit::Outputs,
                        format!(
                            "the call asks for more than {} outputs (limits.max_columns)",
                            limits.max_columns
                        ),
                    ));
                }
                size += VEC_SLACK * std::mem::size_of::<InferRequestedOutputTensor>()
                    + output_size(output)?;
            }
            (7, Value::Len(raw)) => {
                // One raw entry per input (more is refused after decoding).
                raws += 1;
                limits.columns(raws)?;
                size += VEC_SLACK * std::mem::size_of::<Bytes>() + raw.len();
            }
            (_, value) => size += value.len(),
        }
    }
    Ok(size)
}

/// A map entry of `parameters`: its key and value, in a map's table.
fn param_entry(entry: &[u8]) -> usize {
    MAP_SLACK * (std::mem::size_of::<(String, InferParameter)>() + 1) + entry.len()
}

fn input_size(input: &[u8]) -> Result<usize, RequestError> {
    let mut size = 0;
    let mut wire = Wire::new(input);
    while let Some((field, value)) = wire.field()? {
        size += match (field, value) {
            // shape: packed varints, or one per field.
            (3, Value::Len(packed)) => VEC_SLACK * 8 * varints(packed),
            (3, _) => VEC_SLACK * 8,
            (4, Value::Len(entry)) => param_entry(entry),
            (5, Value::Len(contents)) => {
                std::mem::size_of::<InferTensorContents>() + contents_size(contents)?
            }
            (_, value) => value.len(),
        };
    }
    Ok(size)
}

fn output_size(output: &[u8]) -> Result<usize, RequestError> {
    let mut size = 0;
    let mut wire = Wire::new(output);
    while let Some((field, value)) = wire.field()? {
        size += match (field, value) {
            (2, Value::Len(entry)) => param_entry(entry),
            (_, value) => value.len(),
        };
    }
    Ok(size)
}

/// Typed contents: each repeated field's elements at their decoded width.
fn contents_size(contents: &[u8]) -> Result<usize, RequestError> {
    let mut size = 0;
    let mut wire = Wire::new(contents);
    while let Some((field, value)) = wire.field()? {
        // (decoded width, packed on the wire as varints?)
        let (width, varint) = match field {
            1 => (1, true),
            2 | 4 => (4, true),
            3 | 5 => (8, true),
            6 => (4, false),
            7 => (8, false),
            8 => {
                size += VEC_SLACK * std::mem::size_of::<Bytes>() + value.len();
                continue;
            }
            _ => {
                size += value.len();
                continue;
            }
        };
        let elements = match value {
            Value::Len(packed) if varint => varints(packed),
            Value::Len(packed) => packed.len() / width,
            _ => 1,
        };
        size += VEC_SLACK * width * elements;
    }
    Ok(size)
}

/// Varints in a packed field: each ends with a byte below 0x80.
fn varints(packed: &[u8]) -> usize {
    packed.iter().filter(|b| **b < 0x80).count()
}

/// A field's value on the wire.
enum Value<'a> {
    Varint,
    Fixed64,
    Fixed32,
    Len(&'a [u8]),
}

impl Value<'_> {
    /// Its bytes on the wire (what a scalar or string takes decoded, about).
    fn len(&self) -> usize {
        match self {
            Value::Varint | Value::Fixed64 => 8,
            Value::Fixed32 => 4,
            Value::Len(b) => b.len(),
        }
    }
}

/// Protobuf's wire format, field by field.
struct Wire<'a> {
    buf: &'a [u8],
}

impl<'a> Wire<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn malformed(what: &str) -> RequestError {
        RequestError::bad(format!(
            "the ModelInfer message is not valid protobuf: {what}"
        ))
    }

    fn varint(&mut self) -> Result<u64, RequestError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.buf.first() else {
                return Err(Self::malformed("a varint is cut short"));
            };
            self.buf.advance(1);
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Self::malformed("a varint is longer than 10 bytes"))
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RequestError> {
        if self.buf.len() < n {
            return Err(Self::malformed("a field is longer than the message"));
        }
        let (taken, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, RequestError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => {
                self.varint()?;
                Value::Varint
            }
            1 => {
                self.bytes(8)?;
                Value::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?)
                    .map_err(|_| Self::malformed("a length is too large"))?;
                Value::Len(self.bytes(n)?)
            }
            5 => {
                self.bytes(4)?;
                Value::Fixed32
            }
            other => return Err(Self::malformed(&format!("wire type {other}"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::super::proto::model_infer_request::InferInputTensor;
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    #[test]
    fn a_real_request_is_estimated_near_its_decoded_size() {
        let request = ModelInferRequest {
            model_name: "m".into(),
            inputs: (0..4)
                .map(|i| InferInputTensor {
                    name: format!("x{i}"),
                    datatype: "FP32".into(),
                    shape: vec![1000, 1],
                    ..Default::default()
                })
                .collect(),
            raw_input_contents: (0..4).map(|_| vec![0u8; 4000].into()).collect(),
            ..Default::default()
        };
        let wire = request.encode_to_vec();
        let estimate = decoded_size(&wire, &limits()).unwrap();
        assert!(estimate >= wire.len(), "{estimate} < {}", wire.len());
        assert!(
            estimate < 2 * wire.len(),
            "{estimate} for {} wire bytes",
            wire.len()
        );
    }

    #[test]
    fn empty_inputs_cost_what_they_decode_to_and_are_counted_as_columns() {
        // 2 bytes on the wire each, hundreds once decoded.
        let many = ModelInferRequest {
            inputs: vec![InferInputTensor::default(); 1000],
            ..Default::default()
        };
        let wire = many.encode_to_vec();
        let estimate = decoded_size(&wire, &limits()).unwrap();
        assert!(estimate > 1000 * std::mem::size_of::<InferInputTensor>());
        assert!(estimate > 100 * wire.len());
        let too_many = ModelInferRequest {
            inputs: vec![InferInputTensor::default(); limits().max_columns + 1],
            ..Default::default()
        };
        let refused = decoded_size(&too_many.encode_to_vec(), &limits()).unwrap_err();
        assert_eq!(refused.exceeded(), Some(Limit::Columns));
    }

    #[test]
    fn packed_numbers_count_at_their_decoded_width() {
        let contents = InferTensorContents {
            int64_contents: vec![0; 10_000],
            ..Default::default()
        };
        let request = ModelInferRequest {
            inputs: vec![InferInputTensor {
                contents: Some(contents),
                ..Default::default()
            }],
            ..Default::default()
        };
        let wire = request.encode_to_vec();
        // One byte each on the wire, eight decoded.
        assert!(decoded_size(&wire, &limits()).unwrap() >= 8 * 10_000);
    }

    #[test]
    fn a_message_longer_than_allowed_is_passed_on_at_its_prefix() {
        let mut long = scan();
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&1001u32.to_be_bytes());
        prefix.extend_from_slice(b"abc");
        // Not gathered: tonic sees the length at once and refuses it.
        let Ok(Pushed::Pass(passed, 0)) = long.push(Bytes::from(prefix)) else {
            panic!("not passed on at once");
        };
        assert_eq!(passed.len(), 8);
        // The rest of it goes through unread, for tonic to refuse (not as a second message).
        let rest = long.push(Bytes::from_static(b"more of the long message"));
        assert!(matches!(rest, Ok(Pushed::Pass(_, 0))));
        let mut within = scan();
        let mut short = vec![0u8];
        short.extend_from_slice(&10u32.to_be_bytes());
        let waiting = within.push(Bytes::from(short));
        assert!(
            matches!(waiting, Ok(Pushed::Wait)),
            "waits for its 10 bytes"
        );
    }

    fn scan() -> Scan {
        Scan {
            limits: limits(),
            state: State::Gathering,
            max_message: 1000,
            buf: BytesMut::new(),
        }
    }

    /// `message` with its gRPC prefix.
    fn framed(message: &ModelInferRequest) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
        framed.extend_from_slice(&body);
        framed
    }

    #[test]
    fn nothing_may_follow_the_one_message() {
        let one = framed(&ModelInferRequest::default());
        // A second message in the same frame, or in a later one.
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert!(scan().push(Bytes::from(two)).is_err());
        let mut s = scan();
        assert!(matches!(
            s.push(Bytes::from(one.clone())),
            Ok(Pushed::Pass(_, _))
        ));
        assert!(s.push(Bytes::from(one)).is_err());
        // A message in two frames is passed on whole.
        let mut s = scan();
        let one = framed(&ModelInferRequest {
            id: "x".repeat(100),
            ..Default::default()
        });
        let first = s.push(Bytes::copy_from_slice(&one[..50]));
        assert!(matches!(first, Ok(Pushed::Wait)));
        let Ok(Pushed::Pass(whole, _)) = s.push(Bytes::copy_from_slice(&one[50..])) else {
            panic!("not passed on");
        };
        assert_eq!(&whole[..], &one[..]);
    }

    #[test]
    fn garbage_is_refused_not_estimated() {
        for bad in [&[0x2a, 0x80][..], &[0x2a, 0x05, 0x01], &[0x0b], &[0xff; 11]] {
            let e = decoded_size(bad, &limits()).unwrap_err();
            assert!(e.to_string().contains("not valid protobuf"), "{e}");
        }
    }
}
