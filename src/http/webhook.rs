//! MLflow model-registry webhooks: a signed event (version created, alias set or deleted)
//! refreshes the endpoints that serve that model at once, instead of at the next poll.
//!
//! MLflow signs `"{delivery id}.{timestamp}.{raw body}"` with HMAC-SHA256 and the shared secret
//! and sends `X-MLflow-Signature: v1,<base64>`. A missing or wrong signature, or a timestamp
//! more than five minutes off, is 401 and reloads nothing.

use actix_web::http::header::ContentType;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::body::read_limited;
use super::error::ApiError;
use super::AppState;
use crate::endpoint::updater::Trigger;
use crate::error::RequestError;

/// How far a delivery's timestamp may be from our clock (the Standard Webhooks convention).
const TOLERANCE_SECONDS: u64 = 300;
/// Registry events are small; a larger body is refused before it is read.
const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Delivery ids seen within the tolerance window, at most this many.
const MAX_REMEMBERED: usize = 10_000;

/// Recently accepted delivery ids: a replayed (or retried) delivery refreshes nothing again.
#[derive(Default)]
pub struct SeenDeliveries(std::sync::Mutex<std::collections::VecDeque<(String, i64)>>);

impl SeenDeliveries {
    /// Records `id`; false when it was already seen within the window.
    fn first_time(&self, id: &str, now: i64) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        while seen.front().is_some_and(|(_, at)| {
            now.abs_diff(*at) > TOLERANCE_SECONDS || seen.len() >= MAX_REMEMBERED
        }) {
            seen.pop_front();
        }
        if seen.iter().any(|(known, _)| known == id) {
            return false;
        }
        seen.push_back((id.to_owned(), now));
        true
    }
}

/// A delivery without a valid signature. Not [`ApiError`]: webhooks are not bearer-token
/// routes, so the answer carries no `WWW-Authenticate: Bearer` challenge.
fn unauthorized(message: &str) -> HttpResponse {
    HttpResponse::Unauthorized()
        .content_type(ContentType::json())
        .body(json!({ "error_code": "UNAUTHENTICATED", "message": message }).to_string())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Checks MLflow's signature of a delivery; the error says what is wrong.
pub fn verify(
    secret: &str,
    delivery_id: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
) -> Result<(), &'static str> {
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| "X-MLflow-Timestamp is not a number of seconds")?;
    if now.abs_diff(sent) > TOLERANCE_SECONDS {
        return Err("the delivery's timestamp is more than five minutes off");
    }
    let encoded = signature
        .strip_prefix("v1,")
        .ok_or("X-MLflow-Signature is not a v1 signature")?;
    let given = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| "X-MLflow-Signature is not base64")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| "the webhook secret is unusable")?;
    mac.update(delivery_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&given)
        .map_err(|_| "the signature does not match")
}

pub async fn mlflow_webhook(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Some(secret) = state.webhook_secret.clone() else {
        return Err(RequestError::NotFound(
            "MLflow webhooks are not enabled: set registry.webhook_secret".into(),
        )
        .into());
    };
    // Headers first: nothing unsigned is read beyond them.
    let (Some(id), Some(ts), Some(sig)) = (
        header(&req, "x-mlflow-delivery-id"),
        header(&req, "x-mlflow-timestamp"),
        header(&req, "x-mlflow-signature"),
    ) else {
        return Ok(unauthorized(
            "X-MLflow-Delivery-Id, X-MLflow-Timestamp and X-MLflow-Signature are required",
        ));
    };
    let body = read_limited(&req, payload, MAX_EVENT_BYTES.min(state.max_body_bytes)).await?;
    let now = crate::clock::now_s();
    if let Err(why) = verify(&secret, id, ts, &body, sig, now) {
        tracing::warn!(delivery = id, "refused an MLflow webhook: {why}");
        return Ok(unauthorized(why));
    }
    if !state.webhook_deliveries.first_time(id, now) {
        return Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(json!({ "accepted": true, "duplicate": true }).to_string()));
    }
    let event: Value = serde_json::from_slice(&body)
        .map_err(|e| RequestError::bad(format!("the webhook body is not JSON: {e}")))?;
    let model = event["data"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (names, slots) = state.gateway.serving_model(&model);
    tracing::info!(delivery = id, event = %format!("{}.{}", event["entity"].as_str().unwrap_or("?"), event["action"].as_str().unwrap_or("?")), model = %model, endpoints = ?names, "MLflow webhook");
    // Answer at once (MLflow waits for us); the refresh runs on the blocking pool.
    let updater = state.updater.clone();
    actix_web::rt::task::spawn_blocking(move || {
        for slot in &slots {
            updater.refresh(slot, Trigger::Webhook, false);
        }
    });
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(json!({ "accepted": true, "model": model, "endpoints": names }).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // What the promotion webhook sends is what this receiver accepts.
    use crate::promotion::webhook::sign;

    #[test]
    fn a_delivery_id_counts_once_within_the_window() {
        let seen = SeenDeliveries::default();
        assert!(seen.first_time("a", 1000));
        assert!(!seen.first_time("a", 1100));
        assert!(seen.first_time("b", 1100));
        // Out of the window, the id is forgotten (its signature would be stale anyway).
        assert!(seen.first_time("a", 1500));
    }

    #[test]
    fn extreme_timestamps_are_refused_without_overflow() {
        assert!(verify("s", "d", "-9223372036854775808", b"{}", "v1,AAAA", 1000).is_err());
        assert!(verify("s", "d", "9223372036854775807", b"{}", "v1,AAAA", i64::MIN).is_err());
    }

    #[test]
    fn accepts_mlflow_signatures_and_refuses_everything_else() {
        let body = br#"{"entity": "model_version_alias", "action": "created", "data": {"name": "m", "alias": "champion", "version": "2"}}"#;
        let sig = sign("s3cr3t", "d-1", "1000", body);
        assert_eq!(verify("s3cr3t", "d-1", "1000", body, &sig, 1000), Ok(()));
        assert_eq!(verify("s3cr3t", "d-1", "1000", body, &sig, 1299), Ok(()));
        assert!(verify("other", "d-1", "1000", body, &sig, 1000).is_err());
        assert!(verify("s3cr3t", "d-2", "1000", body, &sig, 1000).is_err());
        assert!(verify("s3cr3t", "d-1", "1000", b"{}", &sig, 1000).is_err());
        assert_eq!(
            verify("s3cr3t", "d-1", "1000", body, &sig, 1301),
            Err("the delivery's timestamp is more than five minutes off")
        );
        assert!(verify("s3cr3t", "d-1", "x", body, &sig, 1000).is_err());
        assert!(verify(
            "s3cr3t",
            "d-1",
            "1000",
            body,
            &sig.replace("v1,", "v2,"),
            1000
        )
        .is_err());
        assert!(verify("s3cr3t", "d-1", "1000", body, "v1,!!!", 1000).is_err());
    }
}
