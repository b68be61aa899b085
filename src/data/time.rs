//! Timestamps as the gateway reads them: ISO 8601 text or epoch milliseconds, to epoch
//! milliseconds (request columns, feature tables, defaults, labels, event times).

/// Milliseconds since the epoch of an RFC 3339 / ISO 8601 timestamp (`2026-11-22T10:19:05.123Z`).
pub fn parse_timestamp(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|t| t.timestamp_millis())
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| {
                    chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f")
                })
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        })
}

/// A timestamp sent as text: ISO 8601, or epoch milliseconds in a CSV cell (`from_text`).
pub fn text_timestamp(s: &str, from_text: bool) -> Option<i64> {
    parse_timestamp(s).or_else(|| from_text.then(|| s.parse().ok()).flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_8601_with_and_without_a_zone() {
        let z = parse_timestamp("2026-11-22T10:19:05.123Z").unwrap();
        assert_eq!(z, 1_795_342_745_123);
        assert_eq!(parse_timestamp(" 2026-11-22T11:19:05.123+01:00 "), Some(z));
        assert_eq!(parse_timestamp("2026-11-22T10:19:05.123"), Some(z));
        assert_eq!(parse_timestamp("2026-11-22 10:19:05.123"), Some(z));
        assert_eq!(parse_timestamp("1795342745123"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn epoch_milliseconds_only_from_text_cells() {
        assert_eq!(
            text_timestamp("1795342745123", true),
            Some(1_795_342_745_123)
        );
        assert_eq!(text_timestamp("1795342745123", false), None);
        assert_eq!(
            text_timestamp("2026-11-22T10:19:05.123Z", false),
            Some(1_795_342_745_123)
        );
    }
}
