//! Gateway configs for the scenarios, over the demo registry (models/) and its embedded
//! feature tables, as config/demo.yaml and config/ab.yaml have them. Paths are absolute so the
//! gateway can run in a temp dir.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// What every config needs.
pub struct Base<'a> {
    /// The demo registry: `transactions/{1,2}`, `aliases.yaml`, `feature_tables/`.
    pub models: &'a Path,
    /// The registry the gateway serves (the demo registry, or a temp copy of it).
    pub registry: &'a Path,
    /// The gateway's temp dir (inference tables go under it).
    pub workdir: &'a Path,
    pub endpoint: &'a str,
    /// Log every call to inference tables.
    pub inference_log: bool,
}

/// A YAML string (JSON strings are YAML).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn path(p: &Path) -> String {
    quoted(&p.display().to_string())
}

/// Everything but the endpoints; `monitoring` is a YAML block (or empty).
fn head(base: &Base, monitoring: &str) -> String {
    let tables = base.models.join("feature_tables");
    let mut out = String::new();
    let _ = write!(
        out,
        "server:\n  listen: 127.0.0.1:0\n\
         registry:\n  kind: file\n  path: {registry}\n  watch: true\n\
         features:\n  tables:\n\
         \x20   - {{name: transaction_count_ft, path: {count}, primary_keys: [CustomerID], event_timestamp: eventTimestamp}}\n\
         \x20   - {{name: product_3minute_max_price_ft, path: {max}, primary_keys: [Product], timestamp_key: LookupTimestamp}}\n\
         inference_log:\n  location: {tables_dir}\n",
        registry = path(base.registry),
        count = path(&tables.join("transaction_count_ft.jsonl")),
        max = path(&tables.join("product_3minute_max_price_ft.jsonl")),
        tables_dir = path(&base.workdir.join("inference-tables")),
    );
    out.push_str(monitoring);
    out
}

fn capture(base: &Base) -> String {
    if base.inference_log {
        format!(
            "    auto_capture_config: {{table_name_prefix: {}}}\n",
            quoted(&base.endpoint.replace('-', "_"))
        )
    } else {
        String::new()
    }
}

/// One endpoint serving `transactions` at `version` (a number or an alias such as
/// `champion`, which the gateway follows when it moves).
pub fn single(base: &Base, version: &str, monitoring: &str) -> String {
    format!(
        "{}endpoints:\n  - name: {}\n    served_entities:\n      - {{entity_name: transactions, entity_version: {}}}\n{}",
        head(base, monitoring),
        quoted(base.endpoint),
        quoted(version),
        capture(base)
    )
}

/// The A/B endpoint of docs/traffic.md: champion and challenger aliases, `challenger_percent`
/// to the challenger, sticky per CustomerID (and per X-Routing-Key header).
pub fn ab(base: &Base, champion: &str, challenger: &str, challenger_percent: u8) -> String {
    format!(
        "{head}endpoints:\n  - name: {name}\n    served_entities:\n\
         \x20     - {{name: {a}, entity_name: transactions, entity_version: champion}}\n\
         \x20     - {{name: {b}, entity_name: transactions, entity_version: challenger}}\n\
         \x20   traffic_config:\n      routes:\n\
         \x20       - {{served_entity_name: {a}, traffic_percentage: {pa}}}\n\
         \x20       - {{served_entity_name: {b}, traffic_percentage: {pb}}}\n\
         \x20   routing:\n      key_column: CustomerID\n      key_header: X-Routing-Key\n{cap}",
        head = head(base, ""),
        name = quoted(base.endpoint),
        a = quoted(champion),
        b = quoted(challenger),
        pa = 100 - challenger_percent,
        pb = challenger_percent,
        cap = capture(base),
    )
}

/// Monitoring with one tumbling window of `seconds` (so a short run closes several).
pub fn short_windows(seconds: u64) -> String {
    format!("monitoring:\n  enabled: true\n  windows: [{seconds}s]\n  min_count: 100\n")
}

/// Copies the `transactions` model of the demo registry (its versions and aliases) into
/// `dest/transactions`, for a scenario that moves the alias; returns `dest`.
pub fn copy_registry(models: &Path, dest: &Path) -> Result<PathBuf> {
    copy_dir(&models.join("transactions"), &dest.join("transactions"))?;
    Ok(dest.to_owned())
}

/// Removes a version's `feature_spec.yaml` from a registry copy: the version then takes its
/// model inputs from the request.
pub fn drop_feature_spec(registry: &Path, version: &str) -> Result<()> {
    let spec = registry
        .join("transactions")
        .join(version)
        .join("feature_spec.yaml");
    match std::fs::remove_file(&spec) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", spec.display())),
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| {
                format!("copying {} to {}", entry.path().display(), target.display())
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use modelgate::settings::Settings;

    /// Every config passes the gateway's own loader and validation.
    #[test]
    fn configs_load_as_gateway_settings() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a dir: with \"quotes\"");
        let base = Base {
            models: &odd,
            registry: &odd,
            workdir: &odd,
            endpoint: "load-test",
            inference_log: true,
        };
        let configs = [
            single(&base, "champion", ""),
            single(&base, "1", &short_windows(4)),
            ab(&base, "champion", "challenger", 10),
        ];
        for (i, yaml) in configs.iter().enumerate() {
            let file = dir.path().join(format!("c{i}.yaml"));
            std::fs::write(&file, yaml).unwrap();
            let settings =
                Settings::load(Some(&file), None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            assert_eq!(settings.endpoints.len(), 1, "{yaml}");
            assert_eq!(settings.endpoints[0].name, "load-test");
            assert_eq!(settings.registry.path, odd, "{yaml}");
            assert_eq!(settings.features.tables.len(), 2);
        }
    }
}
