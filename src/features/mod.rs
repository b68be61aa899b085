//! Online features joined at request time: the feature spec of a model version, the online
//! stores that hold looked-up features, the on-demand function language, and the join.

pub mod embedded;
pub mod expr;
pub mod join;
pub mod redis_store;
pub mod spec;
pub mod store;
