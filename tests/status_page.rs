//! The status page (`GET /`) in a real headless browser (Debian's `chromium`): what it shows
//! for each endpoint and served entity equals what the API says, and a screenshot is saved.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// `chromium`: `MODELGATE_CHROMIUM`, else Debian's package through the repo script (once).
fn chromium() -> PathBuf {
    path_from_env_or_script("MODELGATE_CHROMIUM", "scripts/chromium.sh")
}

/// A headless run of chromium with `args` and the page's URL; its stdout.
fn headless(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    succeed(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(args)
            .arg(url),
    )
}

/// The text of the first `<td class="CLASS">` after `from` in `html`.
fn cell<'a>(html: &'a str, from: usize, class: &str) -> &'a str {
    let open = format!("<td class=\"{class}\">");
    let start = from + html[from..].find(&open).unwrap() + open.len();
    let end = start + html[start..].find("</td>").unwrap();
    &html[start..end]
}

const AB: &str = "  - name: ab
    served_entities:
      - {name: champion, entity_name: transactions, entity_version: champion}
      - {name: challenger, entity_name: transactions, entity_version: challenger}
    traffic_config:
      routes:
        - {served_entity_name: champion, traffic_percentage: 90}
        - {served_entity_name: challenger, traffic_percentage: 10}
";

#[test]
fn the_page_shows_each_endpoints_versions_and_split_as_the_api_does() {
    let gw = start(&demo_config(&format!("{AB}{SHADOW_YAML}"), ""), true);
    for _ in 0..20 {
        assert_eq!(gw.invoke("ab", &one_row()).status, 200);
    }
    let listed = gw.get("/api/2.0/serving-endpoints").json();
    let endpoints = listed["endpoints"].as_array().unwrap().clone();
    assert_eq!(endpoints.len(), 2);

    let dom = headless(&gw.url("/"), &["--dump-dom"]);
    assert!(dom.contains("<title>modelgate</title>"), "{dom}");
    for endpoint in &endpoints {
        let name = endpoint["name"].as_str().unwrap();
        let section = dom
            .find(&format!("data-endpoint=\"{name}\""))
            .unwrap_or_else(|| panic!("no section for '{name}': {dom}"));
        let state: Value = gw.get(&format!("/api/2.0/serving-endpoints/{name}")).json();
        let routes = state["config"]["traffic_config"]["routes"]
            .as_array()
            .unwrap();
        for entity in state["config"]["served_entities"].as_array().unwrap() {
            let served = entity["name"].as_str().unwrap();
            let row = section
                + dom[section..]
                    .find(&format!("data-served-entity=\"{served}\""))
                    .unwrap_or_else(|| panic!("no row for '{name}/{served}': {dom}"));
            assert_eq!(
                cell(&dom, row, "version"),
                entity["served_version"].as_str().unwrap(),
                "{name}/{served}"
            );
            let route = routes
                .iter()
                .find(|r| r["served_entity_name"] == served)
                .unwrap();
            let traffic = match route["shadow"].as_bool() {
                Some(true) => "shadow".to_owned(),
                _ => format!("{} %", route["traffic_percentage"]),
            };
            assert_eq!(cell(&dom, row, "traffic"), traffic, "{name}/{served}");
        }
    }
    // The A/B endpoint took traffic: its champion shows a rate and latencies.
    let champion = dom.find("data-served-entity=\"champion\"").unwrap();
    let rate: f64 = cell(&dom, champion, "num").parse().unwrap();
    assert!(rate > 0.0, "{dom}");
    // Rates cover the last few seconds, not the process's life: with no request since, the
    // champion's falls to zero.
    wait_for(
        "the champion's rate to fall to 0",
        Duration::from_secs(30),
        || {
            let page = gw.get("/").text;
            let row = page.find("data-served-entity=\"champion\"")?;
            (cell(&page, row, "num") == "0.0").then_some(())
        },
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &gw.url("/"),
        &[
            "--window-size=1400,520",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
