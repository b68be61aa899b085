//! When a traced request's stages began and ended, noted as it runs; its spans are made from
//! them once it has answered ([`super::spans`]). An untraced request notes nothing.

use std::sync::Arc;
use std::time::Instant;

/// A stage of a request's job, as its span is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for a worker of the inference pool.
    Queue,
    Decode,
    /// Choosing the served entity (split, sticky key, pin).
    Route,
    /// Waiting for the online store's answer (a remote store: Redis).
    Lookup,
    /// Joining looked-up and computed features, and binding the model's inputs.
    Join,
    /// The model's run (in a batch: the batch's wait and run).
    Infer,
    Encode,
}

impl Stage {
    pub fn span_name(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Decode => "decode",
            Self::Route => "route",
            Self::Lookup => "features.lookup",
            Self::Join => "join",
            Self::Infer => "infer",
            Self::Encode => "encode",
        }
    }
}

/// One stage, timed.
#[derive(Debug, Clone)]
pub struct Mark {
    pub stage: Stage,
    pub start: Instant,
    pub end: Instant,
    /// The served entity it was for (join, infer), or the online store's kind (lookup).
    pub detail: Option<Arc<str>>,
}

/// A request's marks; nothing (and no allocation) when it is not traced.
#[derive(Debug, Default)]
pub struct Marks(Option<Vec<Mark>>);

impl Marks {
    pub fn new(traced: bool) -> Self {
        Self(traced.then(|| Vec::with_capacity(8)))
    }

    pub fn on(&self) -> bool {
        self.0.is_some()
    }

    /// Now, when the request is traced (a stage boundary only traces need).
    pub fn now(&self) -> Option<Instant> {
        self.on().then(Instant::now)
    }

    pub fn add(&mut self, stage: Stage, start: Instant, end: Instant, detail: Option<&Arc<str>>) {
        if let Some(marks) = &mut self.0 {
            marks.push(Mark {
                stage,
                start,
                end,
                detail: detail.cloned(),
            });
        }
    }

    pub fn into_vec(self) -> Vec<Mark> {
        self.0.unwrap_or_default()
    }
}
