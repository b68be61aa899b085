//! Wire formats: decode request bodies into a [`frame::Frame`], encode predictions.

pub mod columns;
pub mod frame;
pub mod mlflow;
pub mod mlflow_json;
pub mod v2;
