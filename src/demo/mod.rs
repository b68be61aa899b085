//! The demo scenario's traffic (shared/DEMO.md): card transactions with a drift knob.
//!
//! [`TransactionStream`] is train.py's generator (`generate_stream` + `compute_features`) as an
//! endless, seeded iterator on a simulated clock: the same distributions the demo models were
//! trained on, with labels and streaming features. [`bodies::render`] turns a batch into a
//! scoring request body in any format the gateway reads. Integration tests drive traffic with
//! it (and flip [`TransactionStream::set_drift`]); load tests generate from it.
//!
//! ```
//! use modelgate::demo::bodies::{render, Columns, Format};
//! use modelgate::demo::TransactionStream;
//! let mut stream = TransactionStream::new(42, 1_795_000_000_000);
//! let batch: Vec<_> = stream.by_ref().take(8).collect();
//! let body = render(&batch, Columns::Raw, Format::V2);
//! assert!(modelgate::protocol::v2::decode(&body.bytes).is_ok());
//! ```

pub mod bodies;
mod dist;
pub mod transactions;
pub mod windows;

pub use transactions::{Transaction, TransactionStream};
