//! What the commands other than `serve` do, for `main` to call: work on a model and its data
//! offline, with the same engines and profiles the gateway serves with.

pub mod baseline;
