//! Reads a request body within its bounds: the body limit, the read deadline, and the budget of
//! body bytes held by all requests in flight, taken as each chunk arrives, before it is added
//! to the request's buffer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpMessage, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use crate::error::{Limit, RequestError};

/// The bytes of request bodies held at once by every request in flight
/// (`server.max_inflight_body_bytes`).
#[derive(Debug)]
pub struct BodyBudget {
    held: AtomicUsize,
    max: usize,
    /// `modelgate_inflight_body_bytes`, kept equal to `held`.
    gauge: prometheus::IntGauge,
}

impl BodyBudget {
    pub fn new(max: usize, gauge: prometheus::IntGauge) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            max,
            gauge,
        })
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// An empty share of the budget, for one request.
    pub fn hold(self: &Arc<Self>) -> BodyHold {
        BodyHold {
            budget: self.clone(),
            bytes: 0,
        }
    }

    /// Takes `n` more bytes into `hold`, or refuses when the budget would be exceeded.
    pub fn take(self: &Arc<Self>, hold: &mut BodyHold, n: usize) -> Result<(), RequestError> {
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        if before.saturating_add(n) > self.max {
            self.held.fetch_sub(n, Ordering::AcqRel);
            return Err(RequestError::limit(
                Limit::InflightBodyBytes,
                format!(
                    "the gateway holds {before} bytes of request bodies, at its limit of {} (server.max_inflight_body_bytes): retry later",
                    self.max
                ),
            ));
        }
        hold.bytes += n;
        self.gauge.add(n as i64);
        Ok(())
    }
}

/// A request's share of the body budget: its request body's bytes (from the request's
/// extensions) and then its answer's, given back when the answer is written or abandoned.
pub struct BodyHold {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyHold {
    /// Adds `n` bytes of an answer: counted, never refused (the work is done; new requests are
    /// what the budget turns away).
    pub fn add_answer(&mut self, n: usize) {
        self.budget.held.fetch_add(n, Ordering::AcqRel);
        self.budget.gauge.add(n as i64);
        self.bytes += n;
    }
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.gauge.sub(self.bytes as i64);
    }
}

/// An answer's body that keeps the request's share of the budget, and adds its own bytes to
/// it, until it is written: a caller that reads its answers slowly holds budget, not memory
/// outside every bound.
pub struct HeldBody {
    bytes: Option<Bytes>,
    _hold: Option<BodyHold>,
}

/// Bytes of an answer handed to the connection at a time.
const ANSWER_SLICE: usize = 64 * 1024;

/// The answer `body` of `req`, counted in the body budget until it is sent. Answers are
/// counted, never refused: the work is done, and new requests are what the budget turns away.
pub fn held_answer(req: &HttpRequest, body: Bytes) -> HeldBody {
    let mut hold = req.extensions_mut().remove::<BodyHold>();
    if let Some(h) = hold.as_mut() {
        h.add_answer(body.len());
    }
    HeldBody {
        bytes: Some(body),
        _hold: hold,
    }
}

impl actix_web::body::MessageBody for HeldBody {
    type Error = std::convert::Infallible;

    fn size(&self) -> actix_web::body::BodySize {
        actix_web::body::BodySize::Sized(self.bytes.as_ref().map_or(0, |b| b.len() as u64))
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        // In slices: the server asks for the next one only as the connection drains, so the
        // hold (given back when this body is dropped, after the last slice or when the
        // connection goes) lasts as long as the bytes wait for a slow reader.
        let this = self.get_mut();
        let next = match this.bytes.as_mut() {
            Some(b) if b.len() > ANSWER_SLICE => Some(b.split_to(ANSWER_SLICE)),
            _ => this.bytes.take().filter(|b| !b.is_empty()),
        };
        std::task::Poll::Ready(next.map(Ok))
    }
}

/// How bodies are read: the shared budget and the read deadline.
#[derive(Debug, Clone)]
pub struct BodyReading {
    pub budget: Arc<BodyBudget>,
    /// From the first byte awaited to the last; a caller trickling its body is cut off.
    pub timeout: Duration,
}

/// Reads the body within `limit`, the read deadline and the shared budget; a refusal at a
/// bound is counted here, for every route that reads a body.
pub async fn read_limited(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Bytes, RequestError> {
    let state = req.app_data::<web::Data<super::AppState>>().cloned();
    let Some(state) = state else {
        return read_body(req, payload, limit, None).await;
    };
    let reading = &state.body_reading;
    let mut hold = BodyHold {
        budget: reading.budget.clone(),
        bytes: 0,
    };
    let result = tokio::time::timeout(
        reading.timeout,
        read_body(req, payload, limit, Some((&reading.budget, &mut hold))),
    )
    .await;
    // Held until the request is answered: its bytes live in the decoded request until then.
    req.extensions_mut().insert(hold);
    let result = result.unwrap_or_else(|_| {
        Err(RequestError::limit(
            Limit::BodyReadTimeout,
            format!(
                "the request body did not arrive within {} ms (server.body_read_timeout_ms)",
                reading.timeout.as_millis()
            ),
        ))
    });
    if let Err(e) = &result {
        state.gateway.count_refusal(e);
    }
    result
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    mut budget: Option<(&Arc<BodyBudget>, &mut BodyHold)>,
) -> Result<Bytes, RequestError> {
    let too_large = || {
        RequestError::limit(
            Limit::BodyBytes,
            format!("the request body is over the limit of {limit} bytes (server.max_body_bytes)"),
        )
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // A client may declare a large body and stall: reserve little up front, grow as bytes come.
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit).min(64 * 1024));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            RequestError::Malformed(format!("the request body could not be read: {e}"))
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        // Taken as they come, not as declared: a caller that declares a large body and
        // stalls holds only what it sent (until the read deadline).
        if let Some((b, hold)) = budget.as_mut() {
            b.take(hold, chunk.len())?;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody;

    use super::*;

    fn budget(max: usize) -> Arc<BodyBudget> {
        BodyBudget::new(max, prometheus::IntGauge::new("g", "held").unwrap())
    }

    #[test]
    fn an_answer_holds_its_request_and_its_own_bytes_until_it_is_written() {
        let b = budget(1 << 20);
        let req = actix_web::test::TestRequest::default().to_http_request();
        let mut hold = BodyHold {
            budget: b.clone(),
            bytes: 0,
        };
        b.take(&mut hold, 1000).unwrap();
        req.extensions_mut().insert(hold);
        let answer = Bytes::from(vec![b'x'; 3 * ANSWER_SLICE + 10]);
        let mut body = held_answer(&req, answer.clone());
        // The request's bytes moved into the answer, which adds its own.
        drop(req);
        assert_eq!(b.held(), 1000 + answer.len());
        assert_eq!(b.gauge.get() as usize, b.held());
        let mut sent = Vec::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        while let std::task::Poll::Ready(Some(Ok(slice))) =
            std::pin::Pin::new(&mut body).poll_next(&mut cx)
        {
            assert!(slice.len() <= ANSWER_SLICE);
            // Still held while slices go out.
            assert_eq!(b.held(), 1000 + answer.len());
            sent.extend_from_slice(&slice);
        }
        assert_eq!(sent, answer);
        drop(body);
        assert_eq!(b.held(), 0);
        assert_eq!(b.gauge.get(), 0);
    }

    #[test]
    fn the_budget_refuses_past_its_bound_and_gives_back_on_drop() {
        let b = budget(100);
        let mut hold = BodyHold {
            budget: b.clone(),
            bytes: 0,
        };
        b.take(&mut hold, 60).unwrap();
        let mut other = BodyHold {
            budget: b.clone(),
            bytes: 0,
        };
        let refused = b.take(&mut other, 41).unwrap_err();
        assert_eq!(refused.exceeded(), Some(Limit::InflightBodyBytes));
        assert!(refused
            .to_string()
            .contains("server.max_inflight_body_bytes"));
        b.take(&mut other, 40).unwrap();
        drop(hold);
        assert_eq!(b.held(), 40);
        drop(other);
        assert_eq!(b.held(), 0);
    }
}
