//! Bounds on what one decoded request may hold, checked while it is decoded (so a refused
//! request costs time linear in what was read before the bound, never more).

use std::cell::Cell;

use crate::error::{Limit, RequestError, RequestResult};

pub use crate::settings::limits::DecodeLimits;

/// Each bound checked as a request is decoded.
impl DecodeLimits {
    pub fn columns(&self, n: usize) -> RequestResult<()> {
        if n > self.max_columns {
            return Err(RequestError::limit(
                Limit::Columns,
                format!(
                    "the request has {n} or more input columns, over the limit of {} (limits.max_columns)",
                    self.max_columns
                ),
            ));
        }
        Ok(())
    }

    /// `rows` rows so far (the row being added included).
    pub fn rows(&self, rows: usize) -> RequestResult<()> {
        if rows > self.max_rows {
            return Err(RequestError::limit(
                Limit::Rows,
                format!(
                    "the request has more than {max} rows, over the limit of {max} rows per request (inference.max_batch_rows)",
                    max = self.max_rows
                ),
            ));
        }
        Ok(())
    }

    pub fn cells(&self, n: usize) -> RequestResult<()> {
        if n > self.max_cells {
            return Err(RequestError::limit(
                Limit::Cells,
                format!(
                    "the request has more than {} values, over the limit of values per request (limits.max_cells)",
                    self.max_cells
                ),
            ));
        }
        Ok(())
    }

    pub fn string(&self, len: usize, column: &str) -> RequestResult<()> {
        if len > self.max_string_bytes {
            return Err(RequestError::limit(
                Limit::StringBytes,
                format!(
                    "column '{column}' has a string of {len} bytes, over the limit of {} bytes (limits.max_string_bytes)",
                    self.max_string_bytes
                ),
            ));
        }
        Ok(())
    }

    pub fn id(&self, field: &str, len: usize) -> RequestResult<()> {
        if len > self.max_id_bytes {
            return Err(RequestError::limit(
                Limit::IdBytes,
                format!(
                    "'{field}' has {len} bytes, over the limit of {} bytes (limits.max_id_bytes)",
                    self.max_id_bytes
                ),
            ));
        }
        Ok(())
    }

    pub fn response(&self, len: usize) -> RequestResult<()> {
        if len > self.max_response_bytes {
            return Err(RequestError::limit(
                Limit::ResponseBytes,
                format!(
                    "the answer would have over {len} bytes, over the limit of {} bytes (limits.max_response_bytes): send fewer rows or ask for fewer outputs",
                    self.max_response_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// What one decode has taken so far, against its limits.
#[derive(Debug, Default)]
pub struct Budget {
    pub limits: DecodeLimits,
    cells: Cell<usize>,
}

impl Budget {
    pub fn new(limits: DecodeLimits) -> Self {
        Self {
            limits,
            cells: Cell::new(0),
        }
    }

    /// Takes `n` more values.
    pub fn take_cells(&self, n: usize) -> RequestResult<()> {
        let total = self.cells.get().saturating_add(n);
        self.cells.set(total);
        self.limits.cells(total)
    }

    /// Takes one more value; strings are checked for their length.
    pub fn take_value(&self, string_len: Option<usize>, column: &str) -> RequestResult<()> {
        if let Some(len) = string_len {
            self.limits.string(len, column)?;
        }
        self.take_cells(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits {
            max_columns: 2,
            max_cells: 3,
            max_string_bytes: 4,
            max_id_bytes: 5,
            max_response_bytes: 6,
            max_rows: 7,
        }
    }

    fn refused(r: RequestResult<()>) -> (Limit, String) {
        match r {
            Err(RequestError::LimitExceeded { limit, message }) => (limit, message),
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn bounds_are_inclusive_and_errors_name_the_setting() {
        let l = limits();
        l.columns(2).unwrap();
        let (limit, m) = refused(l.columns(3));
        assert_eq!(limit, Limit::Columns);
        assert!(m.contains("limits.max_columns"), "{m}");
        l.rows(7).unwrap();
        assert_eq!(refused(l.rows(8)).0, Limit::Rows);
        l.string(4, "c").unwrap();
        let (limit, m) = refused(l.string(5, "c"));
        assert_eq!(limit, Limit::StringBytes);
        assert!(m.contains("column 'c'") && m.contains("limits.max_string_bytes"));
        l.id("id", 5).unwrap();
        assert_eq!(refused(l.id("id", 6)).0, Limit::IdBytes);
        l.response(6).unwrap();
        assert_eq!(refused(l.response(7)).0, Limit::ResponseBytes);
    }

    #[test]
    fn a_budget_counts_values_across_calls() {
        let b = Budget::new(limits());
        b.take_value(None, "a").unwrap();
        b.take_cells(2).unwrap();
        let (limit, m) = refused(b.take_value(None, "a"));
        assert_eq!(limit, Limit::Cells);
        assert!(m.contains("limits.max_cells"), "{m}");
        let b = Budget::new(limits());
        assert_eq!(refused(b.take_value(Some(9), "s")).0, Limit::StringBytes);
    }

    #[test]
    fn zero_limits_are_settings_problems() {
        assert!(DecodeLimits::default().problem().is_none());
        let l = DecodeLimits {
            max_cells: 0,
            ..Default::default()
        };
        assert_eq!(l.problem().unwrap().0, "limits.max_cells");
    }
}
