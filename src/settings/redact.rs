//! Secrets out of anything printed: `check-config`, logs and errors.

use super::Settings;

/// What stands for a secret in printed settings and logs.
pub const REDACTED: &str = "<redacted>";

/// A URL with its password (`scheme://user:password@host`) replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let shown = if userinfo.contains(':') {
                format!("{user}:{REDACTED}")
            } else if user.is_empty() {
                String::new()
            } else {
                // `redis://token@host`: a lone user part is a password to Redis.
                REDACTED.to_owned()
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

/// Store options whose names say they hold a credential.
fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_uppercase();
    [
        "SECRET",
        "TOKEN",
        "PASSWORD",
        "SESSION",
        "KEY",
        "CREDENTIAL",
        "SAS",
    ]
    .iter()
    .any(|w| key.contains(w))
}

impl Settings {
    /// These settings with every secret replaced by [`REDACTED`], for `check-config` and logs:
    /// registry credentials, the webhook secret, passwords in URLs, store credentials.
    pub fn redacted(&self) -> Settings {
        let mut s = self.clone();
        let hide = |v: &mut Option<String>| {
            if v.is_some() {
                *v = Some(REDACTED.to_owned());
            }
        };
        hide(&mut s.registry.token);
        hide(&mut s.registry.password);
        hide(&mut s.registry.webhook_secret);
        hide(&mut s.promotion.webhook_secret);
        s.registry.uri = s.registry.uri.as_deref().map(redact_url);
        s.features.redis.url = redact_url(&s.features.redis.url);
        let stores = s.inference_log.storage_options.iter_mut();
        for (key, value) in stores.chain(s.registry.storage_options.iter_mut()) {
            if is_secret_option(key) {
                *value = REDACTED.to_owned();
            }
        }
        for value in s.tracing.headers.values_mut() {
            *value = REDACTED.to_owned();
        }
        if let Some(endpoint) = &mut s.tracing.endpoint {
            *endpoint = redact_url(endpoint);
        }
        if let Some(url) = &mut s.promotion.webhook_url {
            *url = redact_url(url);
        }
        if let Some(url) = &mut s.fleet.redis_url {
            *url = redact_url(url);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords_only() {
        assert_eq!(
            redact_url("redis://user:pw@host:6379/1"),
            "redis://user:<redacted>@host:6379/1"
        );
        assert_eq!(redact_url("redis://:pw@host"), "redis://:<redacted>@host");
        assert_eq!(redact_url("redis://token@host"), "redis://<redacted>@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(
            redact_url("http://h/p?q=a@b"),
            "http://h/p?q=a@b",
            "an @ past the host is not userinfo"
        );
    }

    #[test]
    fn the_promotion_webhook_secret_and_url_password_are_hidden() {
        let mut s = Settings::default();
        s.promotion.webhook_url = Some("https://hook:pw-123@hooks.example/p".into());
        s.promotion.webhook_secret = Some("hmac-key-456".into());
        s.fleet.redis_url = Some("redis://:fleet-pw-789@redis:6379".into());
        let shown = serde_yaml::to_string(&s.redacted()).unwrap();
        assert!(!shown.contains("pw-123"), "{shown}");
        assert!(!shown.contains("hmac-key-456"), "{shown}");
        assert!(!shown.contains("fleet-pw-789"), "{shown}");
        assert!(shown.contains("hooks.example"), "{shown}");
    }

    #[test]
    fn tracing_headers_and_endpoint_passwords_are_hidden() {
        let mut s = Settings::default();
        s.tracing
            .headers
            .insert("x-api-key".into(), "vendor-secret".into());
        s.tracing.endpoint = Some("https://user:pw@collector:4318".into());
        let shown = serde_yaml::to_string(&s.redacted()).unwrap();
        assert!(!shown.contains("vendor-secret"), "{shown}");
        assert!(!shown.contains(":pw@"), "{shown}");
        assert!(
            shown.contains("x-api-key"),
            "the header's name stays: {shown}"
        );
    }
}
