//! Data every layer above shares: the columnar frame, its values and the tensors made of
//! them, the casts between them, and timestamps. No wire format and no engine here: protocols
//! decode into these types, the join fills them in, engines bind them.

pub mod cast;
pub mod frame;
pub mod tensor;
pub mod time;
