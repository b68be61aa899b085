//! A version's files straight from the object store MLflow keeps them in, for tracking servers
//! that do not proxy artifacts (`mlflow server --no-serve-artifacts`, or runs logged with an
//! `s3://` artifact root): `s3://`, `gs://`, `abfss://` / `az://` and `file:` locations, read
//! with the `object_store` crate (the one the inference tables are written with).
//!
//! Credentials come as each cloud's SDKs take them: `AWS_*` (and MLflow's
//! `MLFLOW_S3_ENDPOINT_URL`), `GOOGLE_*`, `AZURE_*` environment variables, then
//! `registry.storage_options` over them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Download, RegistryError};
use crate::progress::{Progress, Unit};

/// The schemes read here.
const SCHEMES: [&str; 7] = [
    "s3://", "s3a://", "gs://", "abfss://", "abfs://", "az://", "file:",
];

/// Whether `location` is an object-store URL this module reads.
pub fn is_object_location(location: &str) -> bool {
    SCHEMES.iter().any(|s| location.starts_with(s))
}

/// The store's options: the environment's cloud variables, then `overrides`.
pub fn options(overrides: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    if let Ok(endpoint) = std::env::var("MLFLOW_S3_ENDPOINT_URL") {
        out.entry("AWS_ENDPOINT_URL".into()).or_insert(endpoint);
    }
    out.extend(overrides.clone());
    // An endpoint given as http:// was chosen so (a MinIO on the cluster, say): allow it.
    let http_endpoint = out
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("aws_endpoint_url") && v.starts_with("http://"));
    if http_endpoint {
        out.entry("AWS_ALLOW_HTTP".into())
            .or_insert_with(|| "true".into());
    }
    out
}

/// Copies every file under `location` into `local`, telling `progress` (and the log, every few
/// seconds) how far it has got.
pub fn download(
    location: &str,
    local: &Path,
    options: &BTreeMap<String, String>,
    max_bytes: u64,
    what: &str,
    progress: &Download,
) -> Result<(), RegistryError> {
    let refused = |message: String| RegistryError::Refused(format!("{location}: {message}"));
    let url = reqwest::Url::parse(location).map_err(|e| refused(format!("not a URL: {e}")))?;
    let (store, prefix) = object_store::parse_url_opts(&url, options.iter())
        .map_err(|e| refused(format!("no object store for it: {e}")))?;
    // Its own thread and runtime: callers are blocking threads, some inside the server's.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RegistryError::Unreachable(e.to_string()))?;
                let copy = copy_all(&*store, &prefix, local, location, max_bytes, what, progress);
                runtime.block_on(copy)
            })
            .join()
            .unwrap_or_else(|_| Err(RegistryError::Unreachable("the download panicked".into())))
    })
}

async fn copy_all(
    store: &dyn ObjectStore,
    prefix: &object_store::path::Path,
    local: &Path,
    location: &str,
    max_bytes: u64,
    what: &str,
    progress: &Download,
) -> Result<(), RegistryError> {
    let unreachable =
        |e: object_store::Error| RegistryError::Unreachable(format!("{location}: {e}"));
    let mut files = Vec::new();
    let mut listing = store.list(Some(prefix));
    while let Some(meta) = listing.next().await {
        files.push(meta.map_err(unreachable)?);
    }
    if files.is_empty() {
        return Err(RegistryError::Refused(format!(
            "artifact location '{location}' holds no files"
        )));
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    let has_mlmodel = files
        .iter()
        .any(|f| local_path(local, prefix, &f.location) == Some(local.join("MLmodel")));
    super::check_listing(location, has_mlmodel, total, max_bytes)?;
    progress.begin(total);
    let mut shown = Progress::start(
        &format!("downloading {what} from {location}"),
        total,
        Unit::Bytes,
    );
    for meta in files {
        let path = local_path(local, prefix, &meta.location).ok_or_else(|| {
            RegistryError::Refused(format!(
                "artifact '{}' is not a plain path under {location}",
                meta.location
            ))
        })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| RegistryError::io(dir, e))?;
        }
        let mut out = std::fs::File::create(&path).map_err(|e| RegistryError::io(&path, e))?;
        let mut got = 0u64;
        let mut body = store
            .get(&meta.location)
            .await
            .map_err(unreachable)?
            .into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(unreachable)?;
            got += chunk.len() as u64;
            if got > meta.size {
                break;
            }
            out.write_all(&chunk)
                .map_err(|e| RegistryError::io(&path, e))?;
            progress.advance(chunk.len() as u64);
            shown.set(progress.bytes().0);
        }
        if got != meta.size {
            return Err(RegistryError::Unreachable(format!(
                "artifact '{}' came with {got} bytes, the listing says {}",
                meta.location, meta.size
            )));
        }
        // Flushed to disk, so the cache's rename publishes whole files even after a crash.
        out.sync_all().map_err(|e| RegistryError::io(&path, e))?;
    }
    Ok(())
}

/// Where an object under `prefix` goes under `local`: its path below the prefix, part by part
/// (no part that could leave `local`).
fn local_path(
    local: &Path,
    prefix: &object_store::path::Path,
    object: &object_store::path::Path,
) -> Option<PathBuf> {
    let mut path = local.to_owned();
    let mut parts = 0;
    for part in object.prefix_match(prefix)? {
        let part = part.as_ref();
        if part.is_empty() || part == "." || part == ".." || part.contains(['/', '\\']) {
            return None;
        }
        path.push(part);
        parts += 1;
    }
    (parts > 0).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_location_is_copied_whole_with_its_progress() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("model/sub")).unwrap();
        std::fs::write(src.path().join("model/MLmodel"), b"flavors: {}\n").unwrap();
        std::fs::write(src.path().join("model/sub/data.bin"), vec![7u8; 1000]).unwrap();
        let dest = tempfile::tempdir().unwrap();
        let progress = Download::default();
        let location = format!("file://{}", src.path().join("model").display());
        assert!(is_object_location(&location));
        let none = BTreeMap::new();
        download(&location, dest.path(), &none, 1 << 20, "m", &progress).unwrap();
        assert_eq!(
            std::fs::read(dest.path().join("sub/data.bin")).unwrap(),
            vec![7u8; 1000]
        );
        assert!(dest.path().join("MLmodel").exists());
        assert_eq!(progress.bytes(), (1012, 1012));
        let empty = format!("file://{}", src.path().join("nothing").display());
        let e = download(&empty, dest.path(), &none, 1 << 20, "m", &progress).unwrap_err();
        assert!(e.to_string().contains("holds no files"), "{e}");
        // Over the bound, or no model folder (a location that is anything else): not copied.
        let e = download(&location, dest.path(), &none, 1000, "m", &progress).unwrap_err();
        assert!(
            e.to_string()
                .contains("over registry.max_version_bytes (1000)"),
            "{e}"
        );
        let root = format!("file://{}", src.path().display());
        let e = download(&root, dest.path(), &none, 1 << 20, "m", &progress).unwrap_err();
        assert!(e.to_string().contains("has no MLmodel file"), "{e}");
    }

    #[test]
    fn mlflow_s3_endpoint_becomes_the_stores_and_http_is_allowed_for_it() {
        let mut given = BTreeMap::new();
        given.insert(
            "AWS_ENDPOINT_URL".to_owned(),
            "http://minio:9000".to_owned(),
        );
        let o = options(&given);
        assert_eq!(o["AWS_ENDPOINT_URL"], "http://minio:9000");
        assert_eq!(o["AWS_ALLOW_HTTP"], "true");
        assert!(!is_object_location("mlflow-artifacts:/0/x"));
    }
}
