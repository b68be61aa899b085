//! Wire formats: decode request bodies into a [`frame::Frame`], encode predictions.

pub mod bounded;
pub mod columns;
pub mod frame;
pub mod json_write;
pub mod limits;
pub mod mlflow;
pub mod mlflow_json;
#[cfg(test)]
mod test_strategies;
pub mod v2;
pub mod v2_binary;
