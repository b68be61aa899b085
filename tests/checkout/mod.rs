//! The checkout under test or bench, whose files tests and benches read.

use std::path::PathBuf;

/// `CARGO_MANIFEST_DIR` as cargo sets it for the process it runs, so that a binary that a
/// shared target folder reuses from a build in another checkout reads this one's files; the
/// folder the binary was built in otherwise (run by hand).
pub fn checkout() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}
