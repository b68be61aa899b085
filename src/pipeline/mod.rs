//! The request pipeline, one stage per file:
//!
//! - [`gateway`]: the entry point; finds the endpoint, admits, runs the job, records the
//!   request's metrics and inference-table row.
//! - [`admission`]: requests in flight, rate limits, the deadline.
//! - [`lane`]: where the job runs: inline on the HTTP worker for small jobs on fast versions
//!   (`inference.inline`, on by default), else on the inference pool.
//! - `job`: the request's work: one job, or two around a lookup in a remote online store
//!   (awaited without holding a thread).
//! - [`score`]: the job itself: [`decode`] -> route (`endpoint::resolve`) -> join and infer
//!   -> [`encode`], with [`split`] for a batch routed to several arms.
//! - [`sinks`]: the one after-inference hook (row metrics, monitor, inference log).
//! - [`shadow`]: copies for shadow routes, after the answer.
//! - [`views`]: the metrics scrape, monitoring reports, label joins.

pub mod admission;
mod batch;
pub mod decode;
pub mod encode;
mod gateway;
mod job;
pub mod labels;
pub mod lane;
pub mod marks;
pub mod request;
pub mod score;
pub mod shadow;
pub mod sinks;
mod spans;
mod split;
mod views;

pub use admission::Limits;
pub use gateway::Gateway;
pub use request::{Answer, Failure, Format, Invocation, Scored, ServedBy, Timings};
pub use score::{finish, route, score, Job};
pub use shadow::mirror;
pub use sinks::{LogTicket, Sinks};
