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

    /// Takes `n` more bytes into `hold`, or refuses when the budget would be exceeded.
    fn take(self: &Arc<Self>, hold: &mut BodyHold, n: usize) -> Result<(), RequestError> {
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

/// A request's share of the body budget, given back when the request ends (it lives in the
/// request's extensions, dropped with the request).
pub struct BodyHold {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl Drop for BodyHold {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::AcqRel);
        self.budget.gauge.sub(self.bytes as i64);
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
