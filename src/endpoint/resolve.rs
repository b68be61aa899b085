//! Which served entity answers a request: by the path's pin or version, by the routing key
//! (header or column, per row when a batch's keys differ), or by the split; and the loaded
//! version behind it, falling back to the largest ready route when a routed one has none.

use std::sync::Arc;

use crate::endpoint::config::BatchRouting;
use crate::endpoint::{Generation, ServedEntity};
use crate::error::RequestError;
use crate::protocol::frame::Frame;

/// Which arm answers each row of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Assignment {
    /// One arm for the whole request.
    Whole(usize),
    /// An arm per row.
    Rows(Vec<usize>),
}

/// What a request says about its routing, besides its rows.
#[derive(Debug, Default, Clone, Copy)]
pub struct RouteHints<'a> {
    /// A served entity named by the path: no routing.
    pub pinned: Option<usize>,
    /// The routing-key header's value.
    pub header_key: Option<&'a [u8]>,
    /// One arm for the whole batch whatever its keys (V2 answers name one model version).
    pub whole_batch: bool,
}

impl Generation {
    /// The served entities' names, for error messages.
    pub fn slot_names(&self) -> String {
        self.slots
            .iter()
            .map(|s| &*s.name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The served entity named `name`, or not found naming the ones there are.
    pub fn pinned_slot(&self, name: &str) -> Result<usize, RequestError> {
        self.slot(name).map(|(i, _)| i).ok_or_else(|| {
            RequestError::NotFound(format!(
                "endpoint '{}' has no served entity '{name}' (served entities: {})",
                self.settings.name,
                self.slot_names()
            ))
        })
    }

    /// The served entity named `v`, or else the one serving model version `v`.
    pub fn find_version(&self, v: &str) -> Result<usize, RequestError> {
        self.slot(v)
            .map(|(i, _)| i)
            .or_else(|| {
                self.slots
                    .iter()
                    .position(|s| s.served().is_some_and(|e| e.meta.version == v))
            })
            .ok_or_else(|| {
                RequestError::NotFound(format!(
                    "model '{}' version '{v}' is not served (served entities: {})",
                    self.settings.name,
                    self.slots
                        .iter()
                        .map(|s| match s.served() {
                            Some(e) => format!("{} (version {})", s.name, e.meta.version),
                            None => format!("{} (not loaded)", s.name),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The ready split arm with the largest share.
    pub fn primary_arm(&self) -> Result<usize, RequestError> {
        self.router
            .split_arms
            .iter()
            .copied()
            .find(|&a| self.slots[a].is_ready())
            .ok_or_else(|| {
                RequestError::Unavailable(format!(
                    "endpoint '{}' has no served entity with a loaded model yet",
                    self.settings.name
                ))
            })
    }

    /// The version an arm serves, or unavailable when it has none loaded.
    pub fn ready_entity(&self, arm: usize) -> Result<Arc<ServedEntity>, RequestError> {
        let slot = &self.slots[arm];
        slot.served().ok_or_else(|| {
            RequestError::Unavailable(format!(
                "served entity '{}' of endpoint '{}' has no loaded model",
                slot.name, self.settings.name
            ))
        })
    }

    /// The served entity of a routed arm, or of the next ready arm when it has none (counted).
    pub fn routed_entity(&self, arm: usize) -> Result<(usize, Arc<ServedEntity>), RequestError> {
        if let Some(e) = self.slots[arm].served() {
            return Ok((arm, e));
        }
        self.slots[arm].metrics.fallbacks.inc();
        let other = self.primary_arm()?;
        Ok((other, self.ready_entity(other)?))
    }

    /// The arm of each row of `frame`: the pin, else the header's key, else the key column's
    /// value per row (one arm when all agree), else a random draw by the split.
    pub fn assign(&self, hints: RouteHints<'_>, frame: &Frame) -> Assignment {
        let router = &self.router;
        if let Some(arm) = hints.pinned {
            return Assignment::Whole(arm);
        }
        if let Some(key) = hints.header_key {
            return Assignment::Whole(router.by_key(key));
        }
        let routing = &self.settings.routing;
        // A key column without values (a `[N, 0]` tensor) carries no key.
        let Some(column) = routing
            .key_column
            .as_deref()
            .and_then(|name| frame.column(name))
            .filter(|c| c.row_width() > 0)
        else {
            return Assignment::Whole(router.random());
        };
        let mut key = String::new();
        let rows = frame.rows();
        let whole = rows == 1 || routing.batch == BatchRouting::FirstKey || hints.whole_batch;
        column.key_text(0, &mut key);
        let first = router.by_key(key.as_bytes());
        if whole {
            return Assignment::Whole(first);
        }
        let mut arms = Vec::with_capacity(rows);
        arms.push(first);
        for r in 1..rows {
            column.key_text(r, &mut key);
            arms.push(router.by_key(key.as_bytes()));
        }
        if arms.iter().all(|&a| a == first) {
            Assignment::Whole(first)
        } else {
            Assignment::Rows(arms)
        }
    }
}
