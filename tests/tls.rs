//! HTTPS over real TLS connections: certificates made with the `openssl` command, HTTP/2
//! negotiated by ALPN, and a certificate swapped on disk while requests keep flowing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::wait_for;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use common::certs::{make_ca, make_leaf, make_signed};

fn der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// Replaces `to` with `from` in one rename (a reader never sees half a file).
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn client(ca: &Path) -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    gw: common::Gateway,
}

fn start() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    make_ca(&dir);
    make_leaf(&dir, "first");
    make_leaf(&dir, "second");
    install(&dir.join("first.pem"), &dir.join("server.pem"));
    install(&dir.join("first.key"), &dir.join("server.key"));
    let extra = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\n    reload_interval_ms: 100\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    let gw = common::start(
        &common::demo_config(&common::endpoint("tx", "1", "tract"), &extra),
        false,
    );
    assert!(gw.base.starts_with("https://"), "{}", gw.base);
    Setup { _dir: tmp, dir, gw }
}

fn served_cert(client: &reqwest::blocking::Client, url: &str) -> Vec<u8> {
    let resp = client.get(url).send().unwrap();
    assert_eq!(resp.status(), 200);
    resp.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the TLS peer certificate")
        .to_vec()
}

#[test]
fn https_with_http2_and_a_certificate_reloaded_mid_traffic() {
    let s = start();
    let url = |p: &str| s.gw.url(p);
    let ca = s.dir.join("ca.pem");
    let body = common::one_row().to_string();
    let scoring = client(&ca);
    let first = scoring
        .post(url("/serving-endpoints/tx/invocations"))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.version(), reqwest::Version::HTTP_2, "ALPN gives h2");
    assert_eq!(
        served_cert(&client(&ca), &url("/livez")),
        der(&s.dir.join("first.pem"))
    );
    // Plain HTTP on the TLS port is refused, not served.
    let plain = reqwest::blocking::Client::new()
        .get(url("/livez").replacen("https://", "http://", 1))
        .send();
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // Traffic on a kept-alive connection while the certificate changes under it.
    let stop = AtomicBool::new(false);
    let (sent, failed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let ok = scoring
                    .post(url("/serving-endpoints/tx/invocations"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .is_ok_and(|r| r.status() == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        // Traffic before the change, across it, and after it.
        let answered = |n: usize| {
            let what = format!("{n} requests answered");
            wait_for(&what, Duration::from_secs(30), || {
                (sent.load(Ordering::Relaxed) >= n).then_some(())
            })
        };
        answered(5);
        install(&s.dir.join("second.key"), &s.dir.join("server.key"));
        install(&s.dir.join("second.pem"), &s.dir.join("server.pem"));
        let second = der(&s.dir.join("second.pem"));
        // New connections get the new certificate.
        wait_for(
            "the new certificate to be served",
            Duration::from_secs(15),
            || (served_cert(&client(&ca), &url("/livez")) == second).then_some(()),
        );
        answered(sent.load(Ordering::Relaxed) + 5);
        stop.store(true, Ordering::Relaxed);
    });
    assert!(sent.load(Ordering::Relaxed) > 10);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed across the reload"
    );

    // A key that does not fit keeps the certificate that works.
    install(&s.dir.join("first.key"), &s.dir.join("server.key"));
    let metrics = client(&ca);
    let text = wait_for(
        "the bad reload to be counted",
        Duration::from_secs(15),
        || {
            let text = metrics.get(url("/metrics")).send().unwrap().text().unwrap();
            text.contains("modelgate_tls_reloads_total{outcome=\"failure\"} 1")
                .then_some(text)
        },
    );
    assert!(text.contains("modelgate_tls_reloads_total{outcome=\"success\"}"));
    assert_eq!(
        served_cert(&client(&ca), &url("/livez")),
        der(&s.dir.join("second.pem"))
    );
}

#[test]
fn a_bad_certificate_stops_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, "not a certificate").unwrap();
    let extra = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        cert.display(),
        dir.path().join("missing.key").display()
    );
    let err = common::try_start(
        &common::demo_config(&common::endpoint("tx", "1", "tract"), &extra),
        false,
        &[],
    )
    .err()
    .expect("a bad certificate must stop the start");
    assert!(
        err.contains("server.tls") && err.contains("cert.pem"),
        "{err}"
    );
}

#[test]
fn the_admin_api_needs_a_client_certificate_when_a_client_ca_is_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    make_ca(dir);
    make_leaf(dir, "server");
    // A client certificate from the same CA, for client authentication.
    make_signed(dir, "client", "ml-platform", "extendedKeyUsage=clientAuth");
    let extra = format!(
        "server:\n  tls:\n    cert_file: {}\n    key_file: {}\n    client_ca_file: {}\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display(),
        dir.join("ca.pem").display()
    );
    let gw = common::start(
        &common::demo_config(&common::endpoint("tx", "1", "tract"), &extra),
        false,
    );
    let anonymous = client(&dir.join("ca.pem"));
    let denied = anonymous
        .get(gw.url("/api/2.0/serving-endpoints"))
        .send()
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body: serde_json::Value = denied.json().unwrap();
    assert_eq!(body["error_code"], "PERMISSION_DENIED");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("client certificate"));
    // Scoring takes connections without one.
    let scored = anonymous
        .post(gw.url("/serving-endpoints/tx/invocations"))
        .header("content-type", "application/json")
        .body(common::one_row().to_string())
        .send()
        .unwrap();
    assert_eq!(scored.status(), 200);
    let mut pem = std::fs::read(dir.join("client.pem")).unwrap();
    pem.extend(std::fs::read(dir.join("client.key")).unwrap());
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let admin = reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let listed = admin
        .get(gw.url("/api/2.0/serving-endpoints"))
        .send()
        .unwrap();
    assert_eq!(listed.status(), 200, "{}", listed.text().unwrap());
}
