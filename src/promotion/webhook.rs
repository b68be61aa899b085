//! Decisions announced over HTTP: each one POSTed as JSON to `promotion.webhook_url`, signed as
//! MLflow signs its webhooks (so a receiver that checks MLflow's deliveries checks ours):
//! HMAC-SHA256 over `"{delivery id}.{timestamp}.{body}"`, sent as
//! `X-MLflow-Signature: v1,<base64>` beside `X-MLflow-Delivery-Id` and `X-MLflow-Timestamp`.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// MLflow's webhook signature of a delivery: `v1,<base64 HMAC-SHA256>`.
pub fn sign(secret: &str, delivery_id: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any size");
    mac.update(delivery_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Where decisions go, and the key that signs them.
#[derive(Clone)]
pub struct Webhook {
    url: String,
    secret: String,
    timeout: Duration,
}

impl Webhook {
    pub fn new(url: &str, secret: &str, timeout: Duration) -> Self {
        Self {
            url: url.to_owned(),
            secret: secret.to_owned(),
            timeout,
        }
    }

    /// A sender with its HTTP client. Blocking: make it, use it and drop it on the
    /// promotion thread (a blocking client may not be made or dropped on the async runtime).
    pub fn connect(&self) -> Result<Sender, String> {
        let client = reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| format!("cannot build the webhook's HTTP client: {e}"))?;
        Ok(Sender {
            hook: self.clone(),
            client,
        })
    }
}

/// A [`Webhook`] with a client, owned by the thread that delivers.
pub struct Sender {
    hook: Webhook,
    client: reqwest::blocking::Client,
}

impl Sender {
    /// POSTs `body` once, signed at `now_s`; the error says why it did not arrive.
    pub fn deliver(&self, body: &[u8], now_s: i64) -> Result<(), String> {
        let id = uuid::Uuid::new_v4().to_string();
        let timestamp = now_s.to_string();
        let signature = sign(&self.hook.secret, &id, &timestamp, body);
        let answer = self
            .client
            .post(&self.hook.url)
            .header("Content-Type", "application/json")
            .header("X-MLflow-Delivery-Id", &id)
            .header("X-MLflow-Timestamp", &timestamp)
            .header("X-MLflow-Signature", signature)
            .body(body.to_vec())
            .send()
            // Without the URL: it may carry credentials.
            .map_err(|e| e.without_url().to_string())?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", answer.status()))
        }
    }
}
