//! Encoding an answer in the caller's protocol: MLflow's `{"predictions": ...}` (with the
//! joined features when asked) or a V2 infer response; the other half of [`super::decode`].

use crate::endpoint::ServedEntity;
use crate::engine::outputs::OutputMapping;
use crate::engine::NamedTensor;
use crate::error::{Limit, RequestError};
use crate::features::join::Joined;
use crate::protocol::v2;

/// How a decoded request is answered.
pub enum Reply {
    /// `{"predictions": ...}`; with `"features"` too when the request asked
    /// (`params: {"return_features": true}`).
    Mlflow { echo_features: bool },
    /// The V2 request less its inputs: its id and the outputs asked for.
    V2(v2::InferRequest),
}

impl Reply {
    /// Whether the joined features are written into the answer.
    pub fn echoes_features(&self) -> bool {
        matches!(
            self,
            Self::Mlflow {
                echo_features: true
            }
        )
    }

    /// The V2 outputs asked for are the model's, checked before inference (so a list of
    /// made-up names costs no inference).
    pub fn check_outputs(&self, entity: &ServedEntity) -> Result<(), RequestError> {
        let Self::V2(v2::InferRequest {
            outputs: Some(names),
            ..
        }) = self
        else {
            return Ok(());
        };
        let known = entity.loaded.outputs();
        match names.iter().find(|n| !known.iter().any(|o| &o.name == *n)) {
            None => Ok(()),
            Some(unknown) => Err(RequestError::limit(
                Limit::Outputs,
                format!(
                    "unknown output '{unknown}' in 'outputs': the model outputs {}",
                    known
                        .iter()
                        .map(|o| o.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Writes the answer of one served entity (`endpoint` names the V2 model); the JSON's
    /// length when raw tensors follow it (V2's binary tensor data extension).
    pub fn write(
        &self,
        endpoint: &str,
        entity: &ServedEntity,
        outputs: &[NamedTensor],
        rows: usize,
        joined: Option<&Joined>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, RequestError> {
        match self {
            Self::Mlflow { echo_features } => {
                buf.extend_from_slice(b"{\"predictions\":");
                entity.meta.outputs.write_predictions(outputs, rows, buf);
                if let (true, Some(joined)) = (echo_features, joined) {
                    buf.extend_from_slice(b",\"features\":");
                    crate::features::join::write_records(&joined.env, rows, buf);
                }
                buf.push(b'}');
                Ok(None)
            }
            Self::V2(req) => v2::write_response(
                endpoint,
                &entity.meta.version,
                req.id.as_deref(),
                outputs,
                req.outputs.as_deref(),
                &|name| req.binary_output(name),
                buf,
            ),
        }
    }
}

/// MLflow predictions of a batch split across arms, in the request's row order: row `r` is
/// the next row of `parts[arm_of_row[r]]`.
pub fn write_split(
    parts: &[(&OutputMapping, &[NamedTensor])],
    arm_of_row: &[usize],
    buf: &mut Vec<u8>,
) {
    let mut next = vec![0usize; parts.len()];
    buf.extend_from_slice(b"{\"predictions\":[");
    for (r, &g) in arm_of_row.iter().enumerate() {
        if r > 0 {
            buf.push(b',');
        }
        let (mapping, outputs) = parts[g];
        mapping.write_prediction(outputs, next[g], buf);
        next[g] += 1;
    }
    buf.extend_from_slice(b"]}");
}
