//! `ab`: an endpoint split 90/10 between a champion and a challenger, sticky per routing key.
//! Most requests carry an `X-Routing-Key` header drawn from --keys keys (batches of any size
//! and format); the others are one row keyed by its CustomerID column. Checks: the
//! challenger's share of header-keyed requests and of keys is the route's within tolerance,
//! and every key was answered by one served entity only (the `served-model-name` header).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::json;

use super::{throttled, Ctx};
use crate::cli::AbArgs;
use crate::report::{Check, Outcome};
use crate::traffic::{Answer, Mix, Request, Workload};

const HEADER: &str = "header:";
const COLUMN: &str = "CustomerID:";

struct Ab {
    mix: Mix,
    keys: usize,
    header_share: f64,
    /// Per key: answers per served entity.
    seen: Mutex<HashMap<String, BTreeMap<String, u64>>>,
}

impl Workload for Ab {
    fn next_request(&self) -> Request {
        if fastrand::f64() < self.header_share {
            let key = format!("lt-{}", fastrand::usize(..self.keys.max(1)));
            let mut request = self.mix.next_request();
            request.headers.push(("x-routing-key", key.clone()));
            request.key = Some(format!("{HEADER}{key}"));
            request
        } else {
            let mut request = self.mix.draw(1, self.mix.random_format());
            request.key = request
                .rows
                .first()
                .map(|t| format!("{COLUMN}{}", t.customer_id));
            request
        }
    }

    fn answered(&self, request: &Request, answer: &Answer) {
        if !answer.ok() {
            return;
        }
        if let (Some(key), Some(served)) = (&request.key, &answer.served_name) {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            *seen
                .entry(key.clone())
                .or_default()
                .entry(served.clone())
                .or_default() += 1;
        }
    }
}

/// What the answers say about the split.
#[derive(Debug, Default, PartialEq)]
struct Split {
    /// Header-keyed answers per served entity.
    header_requests: BTreeMap<String, u64>,
    /// Header keys per served entity (a key answered by two counts for both).
    header_keys: BTreeMap<String, u64>,
    column_requests: BTreeMap<String, u64>,
    column_keys: BTreeMap<String, u64>,
    keys: usize,
    /// Keys answered more than once: the ones stickiness is seen on.
    repeated: usize,
    /// Keys answered by more than one served entity.
    split_keys: Vec<String>,
}

fn split(seen: &HashMap<String, BTreeMap<String, u64>>) -> Split {
    let mut s = Split {
        keys: seen.len(),
        ..Split::default()
    };
    for (key, by_entity) in seen {
        let (requests, keys) = if key.starts_with(HEADER) {
            (&mut s.header_requests, &mut s.header_keys)
        } else {
            (&mut s.column_requests, &mut s.column_keys)
        };
        for (entity, n) in by_entity {
            *requests.entry(entity.clone()).or_default() += n;
            *keys.entry(entity.clone()).or_default() += 1;
        }
        if by_entity.values().sum::<u64>() > 1 {
            s.repeated += 1;
        }
        if by_entity.len() > 1 {
            s.split_keys.push(key.clone());
        }
    }
    s.split_keys.sort();
    s
}

/// `name`'s share of a count map.
fn share(counts: &BTreeMap<String, u64>, name: &str) -> (f64, u64) {
    let total: u64 = counts.values().sum();
    let n = counts.get(name).copied().unwrap_or(0);
    (
        if total == 0 {
            0.0
        } else {
            n as f64 / total as f64
        },
        total,
    )
}

pub async fn run(ctx: &Ctx<'_>, args: &AbArgs) -> Result<Outcome> {
    let ab = Arc::new(Ab {
        mix: ctx.mix(),
        keys: args.keys,
        header_share: args.header_share.clamp(0.0, 1.0),
        seen: Mutex::new(HashMap::new()),
    });
    let (load, _) = ctx
        .load("ab", "ab", &throttled(ctx.common, &args.pace), ab.clone())
        .await?;
    let s = split(&ab.seen.lock().unwrap_or_else(|e| e.into_inner()));
    let expected = f64::from(args.challenger_percent) / 100.0;
    let (request_share, header_answers) = share(&s.header_requests, &args.challenger);
    let (key_share, header_keys) = share(&s.header_keys, &args.challenger);
    // Which keys land on the challenger is a draw of each key's hash: the share varies by
    // about sqrt(p (1 - p) / keys).
    let sigma = (expected * (1.0 - expected) / header_keys.max(1) as f64).sqrt();
    let tolerance = args.tolerance.max(4.0 * sigma);
    let within = |got: f64, n: u64| n > 0 && (got - expected).abs() <= tolerance;
    let checks = vec![
        Check::no_failures(&load),
        Check::new(
            "sticky keys",
            s.split_keys.is_empty() && s.repeated > 0,
            match s.split_keys.first() {
                Some(k) => format!(
                    "{} of {} keys answered by two served entities, e.g. {k}: {:?}",
                    s.split_keys.len(),
                    s.keys,
                    ab.seen.lock().unwrap_or_else(|e| e.into_inner()).get(k)
                ),
                None => format!(
                    "{} keys, {} of them answered more than once, each by one served entity",
                    s.keys, s.repeated
                ),
            },
        ),
        Check::new(
            "split share (requests)",
            within(request_share, header_answers),
            format!(
                "{} answered {:.2} % of {header_answers} header-keyed requests; route {:.0} % +/- {:.2}",
                args.challenger,
                request_share * 100.0,
                expected * 100.0,
                tolerance * 100.0
            ),
        ),
        Check::new(
            "split share (keys)",
            within(key_share, header_keys),
            format!(
                "{:.2} % of {header_keys} header keys on {}; route {:.0} % +/- {:.2}",
                key_share * 100.0,
                args.challenger,
                expected * 100.0,
                tolerance * 100.0
            ),
        ),
    ];
    let mut md = format!(
        "## A/B split\n\nRoute: {} {} %, {} {} %; tolerance +/- {:.2} points (--tolerance, at least 4 binomial standard deviations over {header_keys} keys).\n\n\
         | keyed by | served entity | answers | share | keys |\n| --- | --- | ---: | ---: | ---: |\n",
        args.champion,
        100 - args.challenger_percent,
        args.challenger,
        args.challenger_percent,
        tolerance * 100.0
    );
    for (label, requests, keys) in [
        ("X-Routing-Key header", &s.header_requests, &s.header_keys),
        (
            "CustomerID column (1 row)",
            &s.column_requests,
            &s.column_keys,
        ),
    ] {
        for (entity, n) in requests {
            let _ = writeln!(
                md,
                "| {label} | {entity} | {n} | {:.2} % | {} |",
                share(requests, entity).0 * 100.0,
                keys.get(entity).copied().unwrap_or(0)
            );
        }
    }
    let _ = writeln!(
        md,
        "\nStickiness: {} keys seen, {} answered more than once, {} answered by two served entities.",
        s.keys,
        s.repeated,
        s.split_keys.len()
    );
    Ok(Outcome {
        checks,
        details: json!({
            "expected_challenger_share": expected,
            "tolerance": tolerance,
            "header_requests": s.header_requests,
            "header_keys": s.header_keys,
            "column_requests": s.column_requests,
            "column_keys": s.column_keys,
            "keys": s.keys,
            "repeated_keys": s.repeated,
            "split_keys": s.split_keys,
        }),
        details_md: md,
        load: Some(load),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_stickiness() {
        let mut seen: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
        let mut add = |key: &str, entity: &str, n: u64| {
            *seen
                .entry(key.to_owned())
                .or_default()
                .entry(entity.to_owned())
                .or_default() += n;
        };
        add("header:a", "champion", 3);
        add("header:b", "challenger", 1);
        add("header:c", "champion", 1);
        add("header:c", "challenger", 1);
        add("CustomerID:1240", "champion", 2);
        let s = split(&seen);
        assert_eq!(s.keys, 4);
        assert_eq!(s.repeated, 3);
        assert_eq!(s.split_keys, vec!["header:c".to_owned()]);
        assert_eq!(s.header_requests["champion"], 4);
        assert_eq!(s.header_requests["challenger"], 2);
        assert_eq!(s.header_keys["challenger"], 2);
        assert_eq!(s.column_requests["champion"], 2);
        assert_eq!(share(&s.header_requests, "challenger"), (2.0 / 6.0, 6));
        assert_eq!(share(&BTreeMap::new(), "x"), (0.0, 0));
    }
}
