//! Calls beside the load (readiness, the admin and control-plane API, labels, monitoring),
//! with their own client so they are not counted as load.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

#[derive(Clone)]
pub struct Admin {
    client: reqwest::Client,
    base: String,
}

impl Admin {
    pub fn new(base: &str) -> Result<Admin> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the admin HTTP client")?;
        Ok(Admin {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Any status; the body as JSON (or as a JSON string when it is not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {path}: reading the answer"))?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// A GET that must answer 2xx.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let (status, value) = self.call(reqwest::Method::GET, path, None).await?;
        if !(200..300).contains(&status) {
            bail!("GET {path}: {status} {value}");
        }
        Ok(value)
    }

    /// Waits until `GET /readyz` answers 200 (every configured endpoint serves).
    pub async fn wait_ready(&self, limit: Duration) -> Result<()> {
        let until = Instant::now() + limit;
        loop {
            let last = match self.call(reqwest::Method::GET, "/readyz", None).await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {body}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= until {
                bail!("the gateway is not ready after {limit:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `GET /api/2.0/serving-endpoints/{name}`.
    pub async fn endpoint(&self, name: &str) -> Result<Value> {
        self.get(&format!("/api/2.0/serving-endpoints/{name}"))
            .await
    }

    /// `GET /api/2.0/serving-endpoints/{name}/monitoring`.
    pub async fn monitoring(&self, name: &str) -> Result<Value> {
        self.get(&format!("/api/2.0/serving-endpoints/{name}/monitoring"))
            .await
    }
}
