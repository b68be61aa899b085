//! Labels relayed between replicas: a label posted to one replica whose prediction waits on
//! another (the load balancer sent the scoring call elsewhere) is appended to a Redis stream
//! (`<prefix>:labels`, at most [`MAX_ENTRIES`] posts of [`MAX_LABELS_PER_POST`] labels kept)
//! that every replica reads. The
//! stream keeps what a replica missed while it reconnected; what a label holds is the
//! pipeline's business (opaque JSON here).

use std::time::Duration;

use crate::settings::fleet::FleetSettings;

use super::conn::{connect, Conn, StoreError};

/// Posts the stream keeps (older ones are trimmed, approximately, as Redis does with `~`).
pub const MAX_ENTRIES: usize = 1_000;
/// Labels in one post: a call's unmatched labels are cut into posts of at most this many, so
/// that the stream holds at most [`MAX_ENTRIES`] x this many labels.
pub const MAX_LABELS_PER_POST: usize = 100;
/// How long one read waits for new posts (the thread looks whether it should stop between).
const BLOCK_MS: u64 = 1_000;
/// Posts read at once.
const READ_COUNT: usize = 10;

/// One relayed post: the endpoint and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Relayed {
    pub endpoint: String,
    pub labels: String,
}

/// The stream of labels the replicas relay to each other.
pub struct LabelRelay {
    conn: Conn,
    key: String,
    /// This replica (its own posts are not read back).
    replica: String,
}

/// One read's answer: per stream, its entries, each an id and its field/value pairs.
type ReadReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

impl LabelRelay {
    pub fn new(settings: &FleetSettings) -> Result<Self, String> {
        Ok(Self {
            conn: Conn::open(settings)?,
            key: format!("{}:labels", settings.key_prefix),
            replica: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Appends the posts (each a JSON list of at most [`MAX_LABELS_PER_POST`] labels) of
    /// `endpoint` for the other replicas, in one round trip.
    pub fn relay(&self, endpoint: &str, posts: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for labels in posts {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("MAXLEN")
                .arg("~")
                .arg(MAX_ENTRIES)
                .arg("*")
                .arg("from")
                .arg(&self.replica)
                .arg("endpoint")
                .arg(endpoint)
                .arg("labels")
                .arg(labels)
                .ignore();
        }
        self.conn.run(|c| pipe.query::<()>(c))
    }

    /// Calls `deliver` with each post of the other replicas, on a thread of its own, from the
    /// posts made after it first reached the store, until the handle is dropped.
    pub fn spawn_reader(
        &self,
        deliver: impl Fn(Relayed) + Send + 'static,
    ) -> std::io::Result<crate::periodic::Periodic> {
        let client = self.conn.client().clone();
        let (key, replica, timeout) = (self.key.clone(), self.replica.clone(), self.conn.timeout());
        let mut conn: Option<redis::Connection> = None;
        // The last post read ("$" until the stream's end is known).
        let mut last: Option<String> = None;
        crate::periodic::spawn(
            "modelgate-fleet-labels",
            Duration::from_millis(100),
            move || {
                if conn.is_none() {
                    let read_timeout = timeout + Duration::from_millis(BLOCK_MS);
                    conn = connect(&client, timeout, read_timeout).ok();
                }
                let Some(c) = conn.as_mut() else {
                    return;
                };
                // Read on while reads come back full (a burst of posts is drained at once).
                loop {
                    let read = match &last {
                        None => stream_end(c, &key).map(|end| {
                            last = Some(end);
                            Vec::new()
                        }),
                        Some(from) => read_after(c, &key, from),
                    };
                    match read {
                        Ok(entries) => {
                            let full = entries.len() == READ_COUNT;
                            for (id, fields) in entries {
                                last = Some(id);
                                if let Some(post) = relayed(&fields, &replica) {
                                    deliver(post);
                                }
                            }
                            if !full {
                                break;
                            }
                        }
                        Err(_) => {
                            conn = None;
                            break;
                        }
                    }
                }
            },
        )
    }
}

/// The id of the stream's last post ("0-0" when empty): reading starts after it.
fn stream_end(c: &mut redis::Connection, key: &str) -> redis::RedisResult<String> {
    let last: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
        .arg(key)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(c)?;
    Ok(last
        .into_iter()
        .next()
        .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
}

/// The posts after `from` (waiting up to [`BLOCK_MS`] for one), each an id and its fields.
fn read_after(
    c: &mut redis::Connection,
    key: &str,
    from: &str,
) -> redis::RedisResult<Vec<(String, Vec<String>)>> {
    let reply: ReadReply = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(READ_COUNT)
        .arg("BLOCK")
        .arg(BLOCK_MS)
        .arg("STREAMS")
        .arg(key)
        .arg(from)
        .query(c)?;
    Ok(reply
        .into_iter()
        .flatten()
        .flat_map(|(_, entries)| entries)
        .collect())
}

/// A post of another replica (none for this replica's own, or a malformed one).
fn relayed(fields: &[String], replica: &str) -> Option<Relayed> {
    let field = |name: &str| {
        fields
            .chunks(2)
            .find(|kv| kv.len() == 2 && kv[0] == name)
            .map(|kv| kv[1].clone())
    };
    if field("from")? == replica {
        return None;
    }
    Some(Relayed {
        endpoint: field("endpoint")?,
        labels: field("labels")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_names_its_endpoint_and_labels_and_this_replicas_own_are_skipped() {
        let fields = |from: &str| -> Vec<String> {
            ["from", from, "endpoint", "tx", "labels", "[]"]
                .map(String::from)
                .to_vec()
        };
        assert_eq!(
            relayed(&fields("other"), "me"),
            Some(Relayed {
                endpoint: "tx".into(),
                labels: "[]".into()
            })
        );
        assert_eq!(relayed(&fields("me"), "me"), None);
        assert_eq!(relayed(&["from".into()], "me"), None);
    }
}
