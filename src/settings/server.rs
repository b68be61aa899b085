//! `server`: listeners, workers, and the bounds on connections and request bodies.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{invalid, SettingsError};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    pub listen: String,
    /// HTTP worker threads; 0 means one per core.
    pub http_workers: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub shutdown_timeout_seconds: u64,
    /// Scoring requests in flight at once; beyond it 429 with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// A scoring request's deadline from its arrival, in ms (0: none); beyond it 504.
    pub request_timeout_ms: u64,
    /// HTTPS with these PEM files (reloaded when they change); plain HTTP without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<super::tls::TlsSettings>,
    /// A second listener (HOST:PORT) for the admin API (routes of the `manage` scope); when set,
    /// those routes answer only there and scoring only on `listen`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// A listener (HOST:PORT) for Open Inference Protocol V2 over gRPC; off when absent.
    pub grpc_listen: Option<String>,
    /// A gRPC connection that moves no byte for this long is closed.
    pub grpc_idle_timeout_seconds: u64,
    /// Bytes of request bodies held at once by all requests in flight; beyond it 503.
    pub max_inflight_body_bytes: usize,
    /// How long a request body may take to arrive, in ms; beyond it 408.
    pub body_read_timeout_ms: u64,
    /// Open connections at once, over all HTTP workers; beyond it new ones wait in the backlog.
    pub max_connections: usize,
    /// Requests in flight at once on one connection (HTTP/2 streams); beyond it 429.
    pub max_streams_per_connection: usize,
    /// Peers (addresses or CIDR ranges) whose `X-Forwarded-For` names the caller, for rate
    /// limits per user and the inference tables' `requester` when no token names it.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            http_workers: 0,
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_timeout_seconds: 30,
            max_concurrent_requests: 1024,
            request_timeout_ms: 30_000,
            tls: None,
            admin_listen: None,
            grpc_listen: None,
            grpc_idle_timeout_seconds: 300,
            max_inflight_body_bytes: 256 * 1024 * 1024,
            body_read_timeout_ms: 10_000,
            max_connections: 10_000,
            max_streams_per_connection: 128,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ServerSettings {
    pub fn listen_addr(&self) -> Result<SocketAddr, SettingsError> {
        self.listen.parse().map_err(|e| {
            invalid(
                "server.listen",
                format!("'{}' is not HOST:PORT: {e}", self.listen),
            )
        })
    }

    /// The admin listener's address, when the admin API has its own.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, SettingsError> {
        let Some(listen) = &self.admin_listen else {
            return Ok(None);
        };
        listen.parse().map(Some).map_err(|e| {
            invalid(
                "server.admin_listen",
                format!("'{listen}' is not HOST:PORT: {e}"),
            )
        })
    }

    /// The gRPC listener's address, when gRPC is on.
    pub fn grpc_addr(&self) -> Result<Option<SocketAddr>, SettingsError> {
        let Some(listen) = &self.grpc_listen else {
            return Ok(None);
        };
        listen.parse().map(Some).map_err(|e| {
            invalid(
                "server.grpc_listen",
                format!("'{listen}' is not HOST:PORT: {e}"),
            )
        })
    }

    /// The bounds that must be above 0, and the body budget that must hold the largest body.
    pub(super) fn check_bounds(&self) -> Result<(), SettingsError> {
        for (key, value) in [
            ("server.max_body_bytes", self.max_body_bytes),
            (
                "server.max_inflight_body_bytes",
                self.max_inflight_body_bytes,
            ),
            ("server.max_connections", self.max_connections),
            (
                "server.max_streams_per_connection",
                self.max_streams_per_connection,
            ),
            (
                "server.max_concurrent_requests",
                self.max_concurrent_requests,
            ),
            (
                "server.grpc_idle_timeout_seconds",
                self.grpc_idle_timeout_seconds as usize,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be above 0"));
            }
        }
        if self.max_inflight_body_bytes < self.max_body_bytes {
            return Err(invalid(
                "server.max_inflight_body_bytes",
                "must be at least server.max_body_bytes (else the largest body is never taken)",
            ));
        }
        if self.body_read_timeout_ms == 0 {
            return Err(invalid("server.body_read_timeout_ms", "must be above 0"));
        }
        Ok(())
    }
}
