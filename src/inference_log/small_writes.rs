//! Local table files written in small pieces, so that writing one does not hold the core.
//!
//! The Delta writer hands the object store a Parquet file in parts of several MiB (the 5 MiB
//! parts of a multipart upload, for a compaction's output), and the local store writes each
//! part with one `write` call. The kernel copies it into the page cache without giving the core
//! away: on a kernel without preemption (`PREEMPT_NONE`, the default of many distributions) a
//! 5 MiB write kept the serving threads of that core waiting for 20 to 24 ms, whatever the
//! writer's nice value. This store passes every payload on as slices of at most [`PIECE`]
//! bytes (no copy): each is one call, and the kernel can switch to a waiting request between
//! two of them.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use deltalake::logstore::object_store::{
    path::Path, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    UploadPart,
};
use deltalake::logstore::{ObjectStoreFactory, ObjectStoreRef, StorageConfig};
use deltalake::DeltaResult;
use futures_util::stream::BoxStream;
use url::Url;

/// The most bytes handed to the inner store in one piece: about a millisecond of the kernel's
/// copying at the rate measured above.
pub const PIECE: usize = 256 * 1024;

/// Makes the Delta kernel open `file://` tables through [`SmallWrites`]: its registry of
/// stores is one per process, so this wraps the default for every local table the process
/// opens afterwards (called once, by the inference log's sink).
pub fn register() {
    let file = Url::parse("file://").expect("a valid URL");
    let registry = deltalake::logstore::object_store_factories();
    // Taken out before the insert (the registry's lock on it ends with the statement).
    let Some(default) = registry.get(&file).map(|f| f.value().clone()) else {
        tracing::warn!("the Delta kernel has no store for file:// tables: their files are written as it writes them");
        return;
    };
    registry.insert(file, Arc::new(LocalFactory { default }));
}

/// Opens local tables with the Delta kernel's own factory (its I/O runtime too, when the
/// storage options name one), the store it gives wrapped in [`SmallWrites`].
struct LocalFactory {
    default: Arc<dyn ObjectStoreFactory>,
}

impl ObjectStoreFactory for LocalFactory {
    fn parse_url_opts(
        &self,
        url: &Url,
        config: &StorageConfig,
    ) -> DeltaResult<(ObjectStoreRef, Path)> {
        let (store, path) = self.default.parse_url_opts(url, config)?;
        Ok((Arc::new(SmallWrites::new(store)), path))
    }
}

/// Puts made slow for tests, as a remote store's can be: a delayed put is carried out whether
/// or not its caller still waits for it, as a request already sent is (and as the local
/// store's own writes are, on blocking threads no one stops).
#[cfg(test)]
pub(crate) mod delayed_puts {
    use std::sync::Mutex;
    use std::time::Duration;

    /// Each marker, its delay, and how many puts it has delayed.
    static DELAYS: Mutex<Vec<(String, Duration, usize)>> = Mutex::new(Vec::new());

    /// Delays by `by` every later put to a path that contains `marker` (other tests share the
    /// registry: a marker should name the test's own folder).
    pub(crate) fn delay(marker: &str, by: Duration) {
        DELAYS.lock().unwrap().push((marker.to_owned(), by, 0));
    }

    /// The puts delayed so far for `marker` (each counted as its delay begins).
    pub(crate) fn started(marker: &str) -> usize {
        let delays = DELAYS.lock().unwrap();
        let found = delays.iter().find(|(m, _, _)| m == marker);
        found.map_or(0, |(_, _, n)| *n)
    }

    pub(super) fn of(location: &str) -> Option<Duration> {
        let mut delays = DELAYS.lock().unwrap();
        let delay = delays
            .iter_mut()
            .find(|(m, _, _)| location.contains(m.as_str()))?;
        delay.2 += 1;
        Some(delay.1)
    }
}

/// An object store that passes each payload to `inner` in slices of at most [`PIECE`] bytes.
#[derive(Debug)]
pub struct SmallWrites {
    inner: Arc<dyn ObjectStore>,
}

impl SmallWrites {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner }
    }
}

impl fmt::Display for SmallWrites {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmallWrites({})", self.inner)
    }
}

/// `payload` as the same bytes in pieces of at most [`PIECE`] (slices of its own buffers).
fn in_pieces(payload: PutPayload) -> PutPayload {
    if payload.iter().all(|part| part.len() <= PIECE) {
        return payload;
    }
    let mut pieces: Vec<Bytes> = Vec::new();
    for part in payload.iter() {
        let mut at = 0;
        while at < part.len() {
            let end = (at + PIECE).min(part.len());
            pieces.push(part.slice(at..end));
            at = end;
        }
    }
    PutPayload::from_iter(pieces)
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for SmallWrites {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        #[cfg(test)]
        if let Some(by) = delayed_puts::of(location.as_ref()) {
            let (inner, location) = (self.inner.clone(), location.clone());
            let payload = in_pieces(payload);
            // On a thread of its own, which outlives the caller's runtime as a sent request does.
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(by);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let _ = tx.send(runtime.block_on(inner.put_opts(&location, payload, opts)));
            });
            return rx.await.expect("a delayed put answers");
        }
        // `opts` as given: a Delta commit on a local table is a put with `PutMode::Create`,
        // which must stay create-if-absent.
        self.inner
            .put_opts(location, in_pieces(payload), opts)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SmallParts { upload }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// A multipart upload whose parts reach the inner upload in pieces of at most [`PIECE`].
#[derive(Debug)]
struct SmallParts {
    upload: Box<dyn MultipartUpload>,
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl MultipartUpload for SmallParts {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.upload.put_part(in_pieces(data))
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.upload.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.upload.abort().await
    }
}

#[cfg(test)]
mod tests {
    use deltalake::logstore::object_store::local::LocalFileSystem;
    use deltalake::logstore::object_store::ObjectStoreExt;

    use super::*;

    /// Bytes 0, 1, 2, ... wrapping, `len` of them.
    fn counting(len: usize) -> Bytes {
        (0..len).map(|i| i as u8).collect::<Vec<u8>>().into()
    }

    #[test]
    fn a_large_payload_is_passed_on_as_the_same_bytes_in_small_pieces() {
        let first = counting(3 * PIECE + 17);
        let second = counting(PIECE / 2);
        let payload = PutPayload::from_iter([first.clone(), second.clone()]);
        let pieces = in_pieces(payload);
        let lengths: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        assert_eq!(lengths, [PIECE, PIECE, PIECE, 17, PIECE / 2]);
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined, [first, second].concat());
    }

    #[test]
    fn a_payload_of_small_parts_is_passed_on_as_it_is() {
        let payload = PutPayload::from_iter([counting(PIECE), counting(10)]);
        let lengths: Vec<usize> = in_pieces(payload).iter().map(Bytes::len).collect();
        assert_eq!(lengths, [PIECE, 10]);
    }

    #[tokio::test]
    async fn files_written_in_one_go_or_in_parts_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let store = SmallWrites::new(Arc::new(local));
        let whole = counting(2 * PIECE + 5);
        let one_go = Path::from("one.bin");
        store.put(&one_go, whole.clone().into()).await.unwrap();
        assert_eq!(
            store.get(&one_go).await.unwrap().bytes().await.unwrap(),
            whole
        );

        let in_parts = Path::from("parts.bin");
        let mut upload = store.put_multipart(&in_parts).await.unwrap();
        upload.put_part(whole.clone().into()).await.unwrap();
        upload.put_part(counting(7).into()).await.unwrap();
        upload.complete().await.unwrap();
        let read = store.get(&in_parts).await.unwrap().bytes().await.unwrap();
        assert_eq!(read, [whole, counting(7)].concat());
    }

    /// An in-memory store that notes the length of every piece of every payload it is given.
    #[derive(Debug, Default)]
    struct Noting {
        inner: object_store::memory::InMemory,
        pieces: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl fmt::Display for Noting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Noting")
        }
    }

    fn note(pieces: &std::sync::Mutex<Vec<usize>>, payload: &PutPayload) {
        pieces
            .lock()
            .unwrap()
            .extend(payload.iter().map(Bytes::len));
    }

    #[async_trait]
    impl ObjectStore for Noting {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Result<PutResult> {
            note(&self.pieces, &payload);
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            let upload = self.inner.put_multipart_opts(location, opts).await?;
            Ok(Box::new(NotingParts {
                upload,
                pieces: self.pieces.clone(),
            }))
        }

        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[derive(Debug)]
    struct NotingParts {
        upload: Box<dyn MultipartUpload>,
        pieces: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    #[async_trait]
    impl MultipartUpload for NotingParts {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            note(&self.pieces, &data);
            self.upload.put_part(data)
        }

        async fn complete(&mut self) -> Result<PutResult> {
            self.upload.complete().await
        }

        async fn abort(&mut self) -> Result<()> {
            self.upload.abort().await
        }
    }

    /// What the inner store is given, whole files and parts alike: no piece over [`PIECE`].
    #[tokio::test]
    async fn the_inner_store_is_given_no_piece_over_the_limit() {
        let noting = Arc::new(Noting::default());
        let pieces = noting.pieces.clone();
        let store = SmallWrites::new(noting);
        let big = counting(PIECE + 1);
        store
            .put(&Path::from("a"), big.clone().into())
            .await
            .unwrap();
        let mut upload = store.put_multipart(&Path::from("b")).await.unwrap();
        upload.put_part(big.into()).await.unwrap();
        upload.complete().await.unwrap();
        assert_eq!(*pieces.lock().unwrap(), [PIECE, 1, PIECE, 1]);
    }
}
