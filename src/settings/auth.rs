//! `auth`: bearer tokens and which routes need them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Require a bearer token on every route that is not open.
    pub enabled: bool,
    /// A YAML or JSON file: `tokens: [{name, sha256, scopes: [query, manage]}]`.
    pub tokens_file: Option<PathBuf>,
    /// An environment variable holding more tokens, the same shape (a list, or `{tokens: [..]}`).
    pub tokens_env: String,
    /// `/livez`, `/readyz`, `/ping`, `/health`, `/version`, `/v2/health/*` without a token.
    pub open_health: bool,
    /// `/metrics` without a token.
    pub open_metrics: bool,
    /// Serve without tokens on a listener beyond loopback. Off by default: such a listener
    /// needs `enabled: true` or this, said in so many words.
    pub allow_anonymous: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            tokens_file: None,
            tokens_env: "MODELGATE_TOKENS".into(),
            open_health: true,
            open_metrics: true,
            allow_anonymous: false,
        }
    }
}
