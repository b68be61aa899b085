//! Decoding a request body into a frame, whatever its protocol, and what the answer must
//! carry back ([`Reply`]).

use crate::error::RequestError;
use crate::protocol::frame::Frame;
use crate::protocol::limits::DecodeLimits;
use crate::protocol::{mlflow, v2};

use super::encode::Reply;
use super::request::Format;

/// A decoded request.
pub struct Decoded {
    pub frame: Frame,
    /// How the answer is written.
    pub reply: Reply,
    /// The caller's own id of the request (`client_request_id`, V2 `id`), kept when `logging`.
    pub client_request_id: Option<String>,
}

/// Decodes `body` within `limits`; `logging` keeps the caller's id for the inference log.
pub fn decode(
    format: &Format,
    body: &[u8],
    limits: &DecodeLimits,
    logging: bool,
) -> Result<Decoded, RequestError> {
    Ok(match format {
        Format::MlflowJson | Format::KserveV1 => {
            let req = mlflow::decode_json_limited(body, limits)?;
            // `params: {"return_features": true}` echoes the joined features (debugging).
            let echo_features = req
                .params
                .as_ref()
                .and_then(|p| p.get("return_features"))
                .and_then(serde_json::Value::as_bool)
                == Some(true);
            Decoded {
                frame: req.frame,
                reply: Reply::Mlflow { echo_features },
                client_request_id: req.client_request_id,
            }
        }
        Format::MlflowCsv => Decoded {
            frame: mlflow::decode_csv_limited(body, limits)?.frame,
            reply: Reply::Mlflow {
                echo_features: false,
            },
            client_request_id: None,
        },
        Format::V2 { header_len, .. } => {
            let mut req = v2::decode_parts(body, *header_len, limits)?;
            let frame = std::mem::take(&mut req.frame);
            let id = if logging { req.id.clone() } else { None };
            Decoded {
                frame,
                reply: Reply::V2(req),
                client_request_id: id,
            }
        }
    })
}
