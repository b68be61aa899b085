//! Label values from closed sets, as enums: the recording side and the forgetting side use
//! the same `ALL` list, so a new value cannot leave series behind when an endpoint goes.

macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        /// As its label value, where one shows in JSON (an endpoint's `last_swap.outcome`).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

label_values!(
    /// `status_class`: a response status by its hundreds.
    StatusClass {
        Informational => "1xx",
        Success => "2xx",
        Redirection => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
    }
);

impl StatusClass {
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => Self::Informational,
            200..=299 => Self::Success,
            300..=399 => Self::Redirection,
            400..=499 => Self::ClientError,
            _ => Self::ServerError,
        }
    }
}

label_values!(
    /// `lane`: where a request's job ran: on the HTTP worker that decoded it, or on the pool.
    Lane {
        Inline => "inline",
        Pool => "pool",
    }
);

label_values!(
    /// `stage`: a stage of the request path, in request order.
    Stage {
        Queue => "queue",
        Decode => "decode",
        Inference => "inference",
        Encode => "encode",
    }
);

label_values!(
    /// `outcome` of swaps, loads, config updates and TLS reloads.
    Outcome {
        Success => "success",
        Failure => "failure",
    }
);

label_values!(
    /// `outcome` of an inference table's compaction (skipped: its shard's compaction thread
    /// had its most waiting, or had stopped).
    CompactionOutcome {
        Success => "success",
        Failure => "failure",
        Skipped => "skipped",
    }
);

label_values!(
    /// `outcome` of a shadow copy.
    ShadowOutcome {
        Success => "success",
        Error => "error",
        Dropped => "dropped",
    }
);

label_values!(
    /// `table`: an inference table of an endpoint.
    LogTable {
        Payload => "payload",
        Predictions => "predictions",
        Labels => "labels",
    }
);

label_values!(
    /// `reason` rows were not logged.
    DropReason {
        QueueFull => "queue_full",
        SampledDown => "sampled_down",
        CommitFailed => "commit_failed",
        Shutdown => "shutdown",
        InvalidRows => "invalid_rows",
        WriterPanic => "writer_panic",
    }
);

label_values!(
    /// `outcome` of a posted label.
    LabelOutcome {
        Joined => "joined",
        Unmatched => "unmatched",
        Duplicate => "duplicate",
        Invalid => "invalid",
        Forwarded => "forwarded",
    }
);

label_values!(
    /// `reason` scored rows left the pending-labels queue unlabelled.
    PendingDrop {
        Expired => "expired",
        MaxPendingRows => "max_pending_rows",
        MaxPendingBytes => "max_pending_bytes",
        DuplicateId => "duplicate_id",
    }
);

/// `shadow`: whether rows were a shadow's copy.
pub fn shadow(is_shadow: bool) -> &'static str {
    if is_shadow {
        "true"
    } else {
        "false"
    }
}

label_values!(
    /// `decision` of `modelgate_promotion_decisions_total`: what an endpoint's promotion
    /// evaluation decided.
    PromotionDecision {
        Promoted => "promoted",
        RolledBack => "rolled_back",
        Refused => "refused",
        Passed => "passed",
        Reset => "reset",
        Failed => "failed",
    }
);

label_values!(
    /// `state` of `modelgate_promotion_state`: where an endpoint's promotion stands.
    PromotionState {
        Off => "off",
        Collecting => "collecting",
        WaitingForLabels => "waiting_for_labels",
        Refused => "refused",
        Passed => "passed",
        Promoted => "promoted",
        RolledBack => "rolled_back",
        Failed => "failed",
    }
);

label_values!(
    /// `change`: an endpoint config change made through another replica, as this one applied it.
    ConfigChange {
        Created => "created",
        Updated => "updated",
        Deleted => "deleted",
        Failed => "failed",
    }
);
