//! `server.tls`: the certificate, key and client CA files, and how often they are reloaded.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the files are checked for changes, in ms.
    #[serde(default = "default_reload_ms")]
    pub reload_interval_ms: u64,
    /// PEM CA certificates: the admin API (routes of the `manage` scope) then needs a client
    /// certificate they signed; other routes take connections with or without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_file: Option<PathBuf>,
}

fn default_reload_ms() -> u64 {
    1000
}
