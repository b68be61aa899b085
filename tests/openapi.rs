//! The OpenAPI document: `docs/openapi.json` is what `modelgate openapi` prints (CI fails when
//! the code's routes or schemas change and the file does not), and every route it documents is
//! served by the real gateway.

mod common;

use std::process::Command;

#[test]
fn the_committed_document_is_the_generated_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_modelgate"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let committed = std::fs::read_to_string(common::repo().join("docs/openapi.json")).unwrap();
    assert!(
        generated == committed,
        "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json`"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn every_documented_route_is_served() {
    let gw = common::start(
        &common::demo_config(&common::endpoint("tx", "1", "tract"), ""),
        false,
    );
    let routes = modelgate::http::openapi::routes();
    assert!(routes.len() >= 25, "{routes:?}");
    for (method, path) in routes {
        let path = path
            .replace("{endpoint}", "tx")
            .replace("{model}", "tx")
            .replace("{served}", "transactions-1")
            .replace("{version}", "1")
            .replace("{table}", "transaction_count_ft")
            .replace("{serving_endpoint_id}", "tx")
            // Deleting is checked on a name that does not exist.
            .replace("{name}", if method == "delete" { "nope" } else { "tx" });
        let client = common::client();
        let request = match method {
            "get" => client.get(gw.url(&path)),
            "post" => client.post(gw.url(&path)),
            "put" => client.put(gw.url(&path)),
            "patch" => client.patch(gw.url(&path)),
            "delete" => client.delete(gw.url(&path)),
            other => panic!("method {other}"),
        };
        let reply = common::reply(
            request
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .unwrap(),
        );
        assert!(
            !reply.text.contains("no route for"),
            "{method} {path} is documented but not served: {} {}",
            reply.status,
            reply.text
        );
    }
}
