//! Bearer tokens with scopes: `query` for scoring (MLflow invocations, V2 infer and metadata),
//! `manage` for the control plane, labels, feature pushes and admin calls. Tokens are kept as
//! SHA-256 hashes (in a file or an environment variable), compared in constant time, and never
//! logged. Health and metrics can stay open for probes and scrapers.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::RequestError;
use crate::settings::governance::PermissionLevel;

pub use crate::settings::auth::AuthSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Query,
    Manage,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    /// Hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    sha256: String,
    scopes: Vec<Scope>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TokenList {
    Listed { tokens: Vec<TokenEntry> },
    Bare(Vec<TokenEntry>),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("auth.tokens_file {path}: {message}")]
    File { path: String, message: String },
    #[error("auth.tokens_env: the variable {var} is not a token list: {message}")]
    Env { var: String, message: String },
    #[error("{source_name}: token '{name}': {message}")]
    Token {
        source_name: String,
        name: String,
        message: String,
    },
    #[error("auth.enabled is on and no token is configured (auth.tokens_file or ${0})")]
    NoTokens(String),
}

struct Token {
    /// Shared into each request's [`Caller`] without a copy.
    name: std::sync::Arc<str>,
    hash: [u8; 32],
    query: bool,
    manage: bool,
}

/// The tokens and the routes that need none.
pub struct Auth {
    enabled: bool,
    /// The admin API needs a verified client certificate (`server.tls.client_ca_file`).
    admin_needs_client_cert: bool,
    tokens: Vec<Token>,
    open_health: bool,
    open_metrics: bool,
}

/// Who a request came from, for rate limits per user and the inference tables' `requester`.
#[derive(Debug, Clone)]
pub struct Caller(pub std::sync::Arc<str>);

impl Auth {
    /// Reads the configured tokens; errors name the file, variable or token.
    pub fn load(settings: &AuthSettings, admin_needs_client_cert: bool) -> Result<Self, AuthError> {
        let mut tokens = Vec::new();
        if !settings.enabled {
            // Off: token lists are not even read (a stray variable cannot stop the start).
            return Ok(Self {
                enabled: false,
                admin_needs_client_cert,
                tokens,
                open_health: true,
                open_metrics: true,
            });
        }
        if let Some(path) = &settings.tokens_file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| AuthError::File {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            let list: TokenList = serde_yaml::from_str(&text).map_err(|e| AuthError::File {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            add_tokens(&mut tokens, list, &format!("auth.tokens_file {shown}"))?;
        }
        if let Ok(text) = std::env::var(&settings.tokens_env) {
            let list: TokenList = serde_yaml::from_str(&text).map_err(|e| AuthError::Env {
                var: settings.tokens_env.clone(),
                message: e.to_string(),
            })?;
            add_tokens(&mut tokens, list, &format!("${}", settings.tokens_env))?;
        }
        if tokens.is_empty() {
            return Err(AuthError::NoTokens(settings.tokens_env.clone()));
        }
        Ok(Self {
            enabled: settings.enabled,
            admin_needs_client_cert,
            tokens,
            open_health: settings.open_health,
            open_metrics: settings.open_metrics,
        })
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Decides a request from its route's class, whether it only reads, its `Authorization`
    /// header and `grant` (the level a token's name is granted directly on the endpoint the
    /// path names, if any): the caller's token name, or the refusal (401 without a known
    /// token, 403 without the scope or a grant). `grant` is asked only when the token lacks
    /// the scope.
    pub fn check(
        &self,
        class: RouteClass,
        reads: bool,
        authorization: Option<&[u8]>,
        client_certificate: bool,
        grant: &dyn Fn(&str) -> Option<PermissionLevel>,
    ) -> Result<Option<Caller>, RequestError> {
        let scope = self.scope_of(class);
        if self.admin_needs_client_cert && scope == Some(Scope::Manage) && !client_certificate {
            return Err(RequestError::PermissionDenied(
                "the admin API needs a client certificate signed by server.tls.client_ca_file"
                    .into(),
            ));
        }
        if !self.enabled {
            return Ok(None);
        }
        let Some(scope) = scope else {
            return Ok(None);
        };
        let presented = authorization
            .and_then(|h| {
                h.strip_prefix(b"Bearer ")
                    .or_else(|| h.strip_prefix(b"bearer "))
            })
            .map(|t| t.trim_ascii())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                RequestError::Unauthenticated(
                    "this route needs a bearer token (Authorization: Bearer <token>)".into(),
                )
            })?;
        let hash: [u8; 32] = Sha256::digest(presented).into();
        // Every token is compared, in constant time, whichever matches.
        let mut found: Option<&Token> = None;
        for t in &self.tokens {
            if constant_time_eq(&t.hash, &hash) {
                found = Some(t);
            }
        }
        let token = found
            .ok_or_else(|| RequestError::Unauthenticated("the bearer token is not known".into()))?;
        let (allowed, needed) = match scope {
            Scope::Query => (token.query, "query"),
            Scope::Manage => (token.manage, "manage"),
        };
        if !allowed {
            let level = match class {
                RouteClass::Manage if reads => PermissionLevel::CanView,
                RouteClass::Manage => PermissionLevel::CanManage,
                _ => PermissionLevel::CanQuery,
            };
            if grant(&token.name).is_none_or(|granted| granted < level) {
                return Err(RequestError::PermissionDenied(format!(
                    "token '{}' does not have the '{needed}' scope this route needs, nor {} on this endpoint",
                    token.name,
                    level.as_str()
                )));
            }
        }
        Ok(Some(Caller(token.name.clone())))
    }

    /// Whether a token of this name is configured (a grant must name one).
    pub fn knows(&self, name: &str) -> bool {
        self.tokens.iter().any(|t| *t.name == *name)
    }

    /// Each token's name and the level its scopes give on every endpoint (`manage`:
    /// CAN_MANAGE, `query`: CAN_QUERY), in configuration order.
    pub fn inherited_levels(&self) -> Vec<(std::sync::Arc<str>, PermissionLevel)> {
        self.tokens
            .iter()
            .map(|t| {
                let level = if t.manage {
                    PermissionLevel::CanManage
                } else {
                    PermissionLevel::CanQuery
                };
                (t.name.clone(), level)
            })
            .collect()
    }

    /// The scope a route needs; none for the open ones.
    fn scope_of(&self, class: RouteClass) -> Option<Scope> {
        match class {
            RouteClass::Health if self.open_health => None,
            RouteClass::Metrics if self.open_metrics => None,
            RouteClass::Webhook => None,
            RouteClass::Health | RouteClass::Metrics | RouteClass::Query => Some(Scope::Query),
            RouteClass::Manage => Some(Scope::Manage),
        }
    }
}

pub use super::routes::RouteClass;

fn add_tokens(out: &mut Vec<Token>, list: TokenList, source: &str) -> Result<(), AuthError> {
    let entries = match list {
        TokenList::Listed { tokens } | TokenList::Bare(tokens) => tokens,
    };
    for e in entries {
        let fail = |message: String| AuthError::Token {
            source_name: source.to_owned(),
            name: e.name.clone(),
            message,
        };
        let bytes = hex::decode(e.sha256.trim())
            .map_err(|err| fail(format!("sha256 is not hex ({err})")))?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| fail(format!("sha256 has {} bytes, not 32", b.len())))?;
        if e.scopes.is_empty() {
            return Err(fail("no scopes (query, manage)".into()));
        }
        if out.iter().any(|t| *t.name == *e.name) {
            return Err(fail("the name is used twice".into()));
        }
        out.push(Token {
            query: e.scopes.contains(&Scope::Query),
            manage: e.scopes.contains(&Scope::Manage),
            name: e.name.as_str().into(),
            hash,
        });
    }
    Ok(())
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(token: &str) -> String {
        hex::encode(Sha256::digest(token.as_bytes()))
    }

    /// Tokens on, read from a file holding `text`.
    fn load_file(text: &str) -> Result<Auth, AuthError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(&path, text).unwrap();
        Auth::load(
            &AuthSettings {
                enabled: true,
                tokens_file: Some(path),
                tokens_env: "MODELGATE_TEST_NO_SUCH_VARIABLE".into(),
                ..Default::default()
            },
            false,
        )
    }

    fn auth() -> Auth {
        load_file(&format!(
            "tokens:\n  - {{name: app, sha256: {}, scopes: [query]}}\n  - {{name: ops, sha256: {}, scopes: [query, manage]}}\n",
            sha("q-secret"),
            sha("m-secret")
        ))
        .unwrap()
    }

    #[test]
    fn scopes_decide_routes() {
        let a = auth();
        let (post, get) = ((), ());
        let invoke = "/serving-endpoints/tx/invocations";
        let admin = "/api/2.0/serving-endpoints";
        // The class comes from the route table, whatever the method.
        let code = |_: &(), path: &str, header: Option<&[u8]>| match a.check(
            super::super::routes::class_of(path),
            false,
            header,
            false,
            &no_grant,
        ) {
            Ok(Some(c)) => c.0.to_string(),
            Ok(None) => "open".into(),
            Err(e) => e.code().into(),
        };
        assert_eq!(code(&post, invoke, None), "UNAUTHENTICATED");
        assert_eq!(code(&post, invoke, Some(b"Bearer nope")), "UNAUTHENTICATED");
        assert_eq!(
            code(&post, invoke, Some(b"Basic q-secret")),
            "UNAUTHENTICATED"
        );
        assert_eq!(code(&post, invoke, Some(b"Bearer q-secret")), "app");
        assert_eq!(
            code(&post, admin, Some(b"Bearer q-secret")),
            "PERMISSION_DENIED"
        );
        assert_eq!(code(&post, admin, Some(b"Bearer m-secret")), "ops");
        assert_eq!(code(&get, "/v2/models/tx", Some(b"Bearer q-secret")), "app");
        assert_eq!(code(&get, "/readyz", None), "open");
        assert_eq!(code(&get, "/metrics", None), "open");
        assert_eq!(code(&get, "/no/such/route", None), "UNAUTHENTICATED");
    }

    #[test]
    fn the_admin_api_can_need_a_client_certificate() {
        let a = Auth::load(&AuthSettings::default(), true).unwrap();
        let check = |class, cert| a.check(class, false, None, cert, &no_grant);
        let denied = check(RouteClass::Manage, false).unwrap_err();
        assert_eq!(denied.code(), "PERMISSION_DENIED");
        assert!(check(RouteClass::Manage, true).unwrap().is_none());
        // Scoring does not need one.
        assert!(check(RouteClass::Query, false).is_ok());
    }

    fn no_grant(_: &str) -> Option<PermissionLevel> {
        None
    }

    /// A direct grant on the endpoint a path names lends what the token's scopes lack, up to
    /// its level: CAN_VIEW reads, CAN_QUERY scores, CAN_MANAGE changes.
    #[test]
    fn grants_on_an_endpoint_add_to_scopes() {
        let a = auth();
        let q = Some(&b"Bearer q-secret"[..]);
        let decide = |class, reads, level: Option<PermissionLevel>| {
            a.check(class, reads, q, false, &|name: &str| {
                assert_eq!(name, "app");
                level
            })
            .map(|c| c.unwrap().0.to_string())
            .map_err(|e| e.code())
        };
        use PermissionLevel::*;
        assert_eq!(
            decide(RouteClass::Manage, true, None),
            Err("PERMISSION_DENIED")
        );
        assert_eq!(
            decide(RouteClass::Manage, true, Some(CanView)),
            Ok("app".into())
        );
        assert_eq!(
            decide(RouteClass::Manage, false, Some(CanQuery)),
            Err("PERMISSION_DENIED")
        );
        assert_eq!(
            decide(RouteClass::Manage, false, Some(CanManage)),
            Ok("app".into())
        );
        // The query scope is enough to score: the grant is not even asked.
        let scoring = a.check(
            RouteClass::Query,
            false,
            q,
            false,
            &|_: &str| unreachable!(),
        );
        assert!(scoring.is_ok());
        assert!(a.knows("ops") && !a.knows("nobody"));
        let levels: Vec<_> = a
            .inherited_levels()
            .into_iter()
            .map(|(n, l)| (n.to_string(), l))
            .collect();
        assert_eq!(
            levels,
            [("app".to_owned(), CanQuery), ("ops".to_owned(), CanManage)]
        );
    }

    #[test]
    fn bad_token_lists_are_refused_with_the_token_named() {
        let settings = |text: &str| load_file(text).err().map(|e| e.to_string());
        let e = settings("tokens: [{name: a, sha256: zz, scopes: [query]}]").unwrap();
        assert!(e.contains("token 'a': sha256 is not hex"), "{e}");
        let e = settings("tokens: [{name: a, sha256: abcd, scopes: [query]}]").unwrap();
        assert!(e.contains("2 bytes, not 32"), "{e}");
        let e = settings(&format!("[{{name: a, sha256: {}, scopes: []}}]", sha("x"))).unwrap();
        assert!(e.contains("no scopes"), "{e}");
        let e = settings("tokens: []").unwrap();
        assert!(e.contains("no token is configured"), "{e}");
    }
}
