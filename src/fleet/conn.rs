//! The fleet's way to Redis: one blocking connection per user, made on first use (with the
//! fleet's deadline on connecting, reading and writing) and made anew after any failure, so
//! that half an answer is never read as the next one.

use std::sync::Mutex;
use std::time::Duration;

use crate::settings::fleet::FleetSettings;

/// A round trip to the store that did not succeed.
#[derive(Debug, thiserror::Error)]
#[error("the fleet's shared store ({store}) did not answer: {source}")]
pub struct StoreError {
    store: String,
    source: redis::RedisError,
    /// The command may have reached the store (it failed after the connection was made).
    sent: bool,
}

impl StoreError {
    /// A failure to reach the store: nothing was sent.
    pub fn new(store: &str, source: redis::RedisError) -> Self {
        Self {
            store: store.to_owned(),
            source,
            sent: false,
        }
    }

    /// A failure after the command went out: the store may have run it.
    pub fn after_sending(store: &str, source: redis::RedisError) -> Self {
        Self {
            sent: true,
            ..Self::new(store, source)
        }
    }

    /// Whether the store may have run the command all the same.
    pub fn maybe_done(&self) -> bool {
        self.sent
    }
}

/// A connection to `fleet.redis_url`, shared by the calls of one user in turn.
pub struct Conn {
    client: redis::Client,
    /// The URL with its password hidden, for messages.
    shown: String,
    timeout: Duration,
    conn: Mutex<Option<redis::Connection>>,
}

impl Conn {
    pub fn open(settings: &FleetSettings) -> Result<Self, String> {
        let url = settings.redis_url.clone().unwrap_or_default();
        let client =
            redis::Client::open(url.as_str()).map_err(|e| format!("fleet.redis_url: {e}"))?;
        Ok(Self {
            client,
            shown: crate::settings::redact::redact_url(&url),
            timeout: Duration::from_millis(settings.timeout_ms),
            conn: Mutex::new(None),
        })
    }

    /// The store, as messages name it (no password).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The client, for a thread that holds a connection of its own.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The deadline of one round trip.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs `f` on the shared connection, made anew after a failure.
    pub fn run<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.run_with(false, f)
    }

    /// [`Conn::run`] for a command that must not be sent twice (a compare-and-set): a
    /// connection kept from before is tried with a `PING` first, and made anew if that fails
    /// (a Redis that restarted since), so that a failure of `f` itself means it may have run.
    pub fn run_once<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        self.run_with(true, f)
    }

    fn run_with<T>(
        &self,
        ping_first: bool,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut slot = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        if ping_first {
            let alive = slot
                .as_mut()
                .is_some_and(|c| redis::cmd("PING").query::<String>(c).is_ok());
            if !alive {
                *slot = None;
            }
        }
        if slot.is_none() {
            let made = connect(&self.client, self.timeout, self.timeout)
                .map_err(|e| StoreError::new(&self.shown, e))?;
            *slot = Some(made);
        }
        let conn = slot.as_mut().expect("connected above");
        f(conn).map_err(|e| {
            if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                // The command may have run; the connection may hold half an answer.
                *slot = None;
                StoreError::after_sending(&self.shown, e)
            } else {
                // Redis answered with an error (loading, read-only, out of memory, a
                // malformed reply): the command did not run.
                StoreError::new(&self.shown, e)
            }
        })
    }
}

/// A connection with the deadline `timeout` on connecting and writing, `read_timeout` on
/// reading (longer for a blocking read).
pub fn connect(
    client: &redis::Client,
    timeout: Duration,
    read_timeout: Duration,
) -> redis::RedisResult<redis::Connection> {
    let conn = client.get_connection_with_timeout(timeout)?;
    conn.set_read_timeout(Some(read_timeout))?;
    conn.set_write_timeout(Some(timeout))?;
    Ok(conn)
}
