//! What a served entity's updater is doing right now (resolving, downloading n of m bytes,
//! loading, validating, warming), for `/readyz`, the endpoint state and the status page: a large
//! model takes minutes, and "not ready" alone does not say whether it is stuck.

use std::sync::Mutex;

use serde::Serialize;

use crate::registry::Download;

/// One step of a load, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Resolving,
    Downloading,
    Loading,
    Validating,
    Warming,
}

impl Step {
    /// The step as a log line says it.
    pub fn doing(self) -> &'static str {
        match self {
            Self::Resolving => "resolving the version",
            Self::Downloading => "fetching the version's files",
            Self::Loading => "loading the model in its engine",
            Self::Validating => "validating with the input example",
            Self::Warming => "warming up",
        }
    }
}

#[derive(Debug, Default)]
pub struct Activity {
    now: Mutex<Option<Current>>,
    /// The bytes of the version being downloaded (the registry writes them as they arrive).
    pub download: Download,
}

#[derive(Debug, Clone)]
struct Current {
    step: Step,
    version: Option<String>,
    since_ms: u64,
}

/// What [`Activity::view`] shows: absent when nothing is under way.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ActivityView {
    pub step: Step,
    /// The version being loaded, once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Milliseconds since the Unix epoch when this step began.
    pub since_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,
    /// Absent while the size is not known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
}

impl Activity {
    /// Step `step` begins (of `version`, when known; else the version stays as it was).
    pub fn enter(&self, step: Step, version: Option<&str>, now_ms: u64) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        let version = version
            .map(str::to_owned)
            .or_else(|| now.as_ref().and_then(|c| c.version.clone()));
        if step == Step::Downloading {
            self.download.begin(0);
        }
        *now = Some(Current {
            step,
            version,
            since_ms: now_ms,
        });
    }

    /// The update ended (whatever its outcome).
    pub fn clear(&self) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn view(&self) -> Option<ActivityView> {
        let now = self.now.lock().unwrap_or_else(|e| e.into_inner()).clone()?;
        let (done, total) = self.download.bytes();
        // A registry that reads local files reports no bytes: none are shown.
        let downloading = now.step == Step::Downloading && (done > 0 || total > 0);
        Some(ActivityView {
            step: now.step,
            version: now.version,
            since_ms: now.since_ms,
            bytes_done: downloading.then_some(done),
            bytes_total: (downloading && total > 0).then_some(total),
        })
    }
}

/// Clears an activity when dropped: an update that returns early or panics shows no step.
pub struct Clears<'a>(pub &'a Activity);

impl Drop for Clears<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_download_shows_its_bytes_and_later_steps_keep_the_version() {
        let a = Activity::default();
        assert_eq!(a.view(), None);
        a.enter(Step::Resolving, None, 1);
        a.enter(Step::Downloading, Some("3"), 2);
        a.download.begin(200);
        a.download.advance(50);
        let v = a.view().unwrap();
        assert_eq!(
            (v.step, v.version.as_deref(), v.bytes_done, v.bytes_total),
            (Step::Downloading, Some("3"), Some(50), Some(200))
        );
        a.enter(Step::Warming, None, 3);
        let v = a.view().unwrap();
        assert_eq!(
            (v.step, v.version.as_deref(), v.bytes_done, v.since_ms),
            (Step::Warming, Some("3"), None, 3)
        );
        drop(Clears(&a));
        assert_eq!(a.view(), None);
    }
}
