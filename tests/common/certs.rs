//! Certificates for TLS tests, made with the `openssl` command: a CA, and leaves it signs.

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    super::stdout_of(&mut cmd, &format!("openssl {args:?}"));
}

/// A CA, once per test.
pub fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=modelgate test CA",
        ],
    );
}

/// A server certificate for 127.0.0.1 signed by the CA, as `<name>.pem` / `<name>.key`.
pub fn make_leaf(dir: &Path, name: &str) {
    make_signed(
        dir,
        name,
        "localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
    );
}

/// A key and a certificate for `cn` with `extension`, signed by the CA.
pub fn make_signed(dir: &Path, name: &str, cn: &str, extension: &str) {
    let ext = format!("{name}.cnf");
    std::fs::write(dir.join(&ext), format!("{extension}\n")).unwrap();
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let subject = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subject,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ],
    );
}
