//! The frame lives in `data`, under every layer that reads it; this path stays for the request
//! path's imports.

pub use crate::data::frame::Frame;
