//! Casts of a column to an element type: what binding a column to a model input does, and
//! what typing a request column for the join does, with the same messages (naming the column
//! and row of the first value that does not fit).

use super::frame::{display_name, Column, ColumnData};
use super::tensor::{ElemType, TensorData};
use crate::error::{RequestError, RequestResult};

fn type_error(col: &Column, row: usize, what: &str, target: ElemType) -> RequestError {
    RequestError::bad(format!(
        "column '{}' row {row} is {what} but the model takes {target} values",
        display_name(&col.name)
    ))
}

fn non_finite(col: &Column, row: usize) -> RequestError {
    RequestError::bad(format!(
        "column '{}' row {row} is not a finite number (NaN and infinities cannot be scored)",
        display_name(&col.name)
    ))
}

/// Converts a column to the element type the model takes, or names the first value that does
/// not fit.
pub fn convert(col: &Column, target: ElemType) -> RequestResult<TensorData> {
    let width = col.row_width().max(1);
    let row = |i: usize| i / width;
    match (&col.data, target) {
        (ColumnData::F64(v), ElemType::F32) => v
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let f = *x as f32;
                if f.is_finite() {
                    Ok(f)
                } else {
                    Err(non_finite(col, row(i)))
                }
            })
            .collect::<RequestResult<_>>()
            .map(TensorData::F32),
        (ColumnData::F64(v), ElemType::F64) => match v.iter().position(|x| !x.is_finite()) {
            Some(i) => Err(non_finite(col, row(i))),
            None => Ok(TensorData::F64(v.clone())),
        },
        (ColumnData::F32(v), ElemType::F32) => Ok(TensorData::F32(v.clone())),
        (ColumnData::F32(v), ElemType::F64) => {
            Ok(TensorData::F64(v.iter().map(|x| *x as f64).collect()))
        }
        (ColumnData::F64(v), ElemType::I64 | ElemType::I32) => {
            let ints = v
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    // 2^63 is exactly representable; everything below it converts exactly.
                    if x.fract() != 0.0 {
                        Err(type_error(
                            col,
                            row(i),
                            &format!("{x}, not a whole number,"),
                            target,
                        ))
                    } else if *x >= I64_LIMIT || *x < -I64_LIMIT {
                        Err(type_error(
                            col,
                            row(i),
                            &format!("{x}, out of int64 range,"),
                            target,
                        ))
                    } else {
                        Ok(*x as i64)
                    }
                })
                .collect::<RequestResult<Vec<i64>>>()?;
            narrow_ints(col, ints, target)
        }
        (ColumnData::I64(v), ElemType::F32) => {
            Ok(TensorData::F32(v.iter().map(|x| *x as f32).collect()))
        }
        (ColumnData::I64(v), ElemType::F64) => {
            Ok(TensorData::F64(v.iter().map(|x| *x as f64).collect()))
        }
        (ColumnData::I64(v), ElemType::I64 | ElemType::I32) => narrow_ints(col, v.clone(), target),
        (ColumnData::I64(v), ElemType::Bool) => v
            .iter()
            .enumerate()
            .map(|(i, x)| match x {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(type_error(col, row(i), &format!("{x}"), target)),
            })
            .collect::<RequestResult<_>>()
            .map(TensorData::Bool),
        (ColumnData::Bool(v), ElemType::Bool) => Ok(TensorData::Bool(v.clone())),
        (ColumnData::Bool(v), ElemType::F32) => Ok(TensorData::F32(
            v.iter().map(|b| u8::from(*b) as f32).collect(),
        )),
        (ColumnData::Bool(v), ElemType::F64) => Ok(TensorData::F64(
            v.iter().map(|b| u8::from(*b) as f64).collect(),
        )),
        (ColumnData::Bool(v), ElemType::I64) => {
            Ok(TensorData::I64(v.iter().map(|b| i64::from(*b)).collect()))
        }
        (ColumnData::Bool(v), ElemType::I32) => {
            Ok(TensorData::I32(v.iter().map(|b| i32::from(*b)).collect()))
        }
        (ColumnData::Str(v), ElemType::Str) => Ok(TensorData::Str(v.clone())),
        (ColumnData::Str(v), _) if col.from_text => parse_text(col, v, target),
        (data, _) => Err(type_error(col, 0, data.type_name_with_article(), target)),
    }
}

/// 2^63: every f64 below it in magnitude that is whole converts to i64 exactly.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

fn narrow_ints(col: &Column, v: Vec<i64>, target: ElemType) -> RequestResult<TensorData> {
    let width = col.row_width().max(1);
    match target {
        ElemType::I32 => v
            .iter()
            .enumerate()
            .map(|(i, x)| {
                i32::try_from(*x).map_err(|_| {
                    type_error(col, i / width, &format!("{x}, out of int32 range,"), target)
                })
            })
            .collect::<RequestResult<_>>()
            .map(TensorData::I32),
        _ => Ok(TensorData::I64(v)),
    }
}

/// CSV cells: parse each into the target type.
fn parse_text(col: &Column, v: &[String], target: ElemType) -> RequestResult<TensorData> {
    let width = col.row_width().max(1);
    let bad = |i: usize, s: &str| type_error(col, i / width, &format!("'{s}'"), target);
    match target {
        ElemType::F32 | ElemType::F64 => {
            let mut out = Vec::with_capacity(v.len());
            for (i, s) in v.iter().enumerate() {
                let x: f64 = s.trim().parse().map_err(|_| bad(i, s))?;
                if !x.is_finite() || (target == ElemType::F32 && !(x as f32).is_finite()) {
                    return Err(non_finite(col, i / width));
                }
                out.push(x);
            }
            Ok(if target == ElemType::F32 {
                TensorData::F32(out.into_iter().map(|x| x as f32).collect())
            } else {
                TensorData::F64(out)
            })
        }
        ElemType::I64 | ElemType::I32 => {
            let ints = v
                .iter()
                .enumerate()
                .map(|(i, s)| s.trim().parse::<i64>().map_err(|_| bad(i, s)))
                .collect::<RequestResult<Vec<i64>>>()?;
            narrow_ints(col, ints, target)
        }
        ElemType::Bool => v
            .iter()
            .enumerate()
            .map(|(i, s)| parse_bool(s).ok_or_else(|| bad(i, s)))
            .collect::<RequestResult<_>>()
            .map(TensorData::Bool),
        ElemType::Str => Ok(TensorData::Str(v.to_vec())),
    }
}

/// A boolean as text: `true`/`false` in the spellings Python and CSV writers use, or `1`/`0`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "true" | "True" | "TRUE" | "1" => Some(true),
        "false" | "False" | "FALSE" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::testing::{names, scalar, text};

    fn bad<T: std::fmt::Debug>(r: RequestResult<T>) -> String {
        match r {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    fn conv(col: &Column, target: ElemType) -> TensorData {
        convert(col, target).unwrap()
    }

    #[test]
    fn floats_to_float_types() {
        let c = scalar("x", ColumnData::F64(vec![0.1, -2.0]));
        assert_eq!(conv(&c, ElemType::F32), TensorData::F32(vec![0.1, -2.0]));
        assert_eq!(conv(&c, ElemType::F64), TensorData::F64(vec![0.1, -2.0]));
        let c = scalar("x", ColumnData::F32(vec![0.5]));
        assert_eq!(conv(&c, ElemType::F32), TensorData::F32(vec![0.5]));
        assert_eq!(conv(&c, ElemType::F64), TensorData::F64(vec![0.5]));
    }

    #[test]
    fn non_finite_values_name_column_and_row() {
        for bad_value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let c = scalar("x", ColumnData::F64(vec![1.0, bad_value]));
            for target in [ElemType::F32, ElemType::F64] {
                assert_eq!(
                    bad(convert(&c, target)),
                    "column 'x' row 1 is not a finite number (NaN and infinities cannot be scored)"
                );
            }
        }
        // Finite in f64 but not in f32.
        let c = scalar("x", ColumnData::F64(vec![1e39]));
        assert!(bad(convert(&c, ElemType::F32)).contains("row 0 is not a finite number"));
        assert_eq!(conv(&c, ElemType::F64), TensorData::F64(vec![1e39]));
    }

    #[test]
    fn non_finite_in_a_row_tensor_reports_the_row() {
        let c = Column {
            name: "t".into(),
            shape: vec![2, 3],
            data: ColumnData::F64(vec![0.0, 0.0, 0.0, 0.0, f64::NAN, 0.0]),
            from_text: false,
        };
        assert!(bad(convert(&c, ElemType::F32)).starts_with("column 't' row 1 "));
        assert!(bad(convert(&c, ElemType::F64)).starts_with("column 't' row 1 "));
    }

    #[test]
    fn whole_floats_to_integers() {
        let c = scalar("x", ColumnData::F64(vec![1.0, -2.0, 0.0]));
        assert_eq!(conv(&c, ElemType::I64), TensorData::I64(vec![1, -2, 0]));
        assert_eq!(conv(&c, ElemType::I32), TensorData::I32(vec![1, -2, 0]));
        let c = scalar("x", ColumnData::F64(vec![1.0, 2.5]));
        assert_eq!(
            bad(convert(&c, ElemType::I64)),
            "column 'x' row 1 is 2.5, not a whole number, but the model takes int64 values"
        );
        let c = scalar("x", ColumnData::F64(vec![f64::NAN]));
        assert!(bad(convert(&c, ElemType::I64)).starts_with("column 'x' row 0 is NaN"));
        let c = scalar("x", ColumnData::F64(vec![3e9]));
        assert!(bad(convert(&c, ElemType::I32)).contains("out of int32 range"));
    }

    #[test]
    fn large_whole_float_is_not_called_fractional() {
        let c = scalar("x", ColumnData::F64(vec![1e16]));
        if let Err(RequestError::BadRequest(m)) = convert(&c, ElemType::I64) {
            assert!(!m.contains("not a whole number"), "{m}");
        }
    }

    #[test]
    fn integers_convert_and_narrow() {
        let c = scalar("x", ColumnData::I64(vec![1, -7]));
        assert_eq!(conv(&c, ElemType::F32), TensorData::F32(vec![1.0, -7.0]));
        assert_eq!(conv(&c, ElemType::F64), TensorData::F64(vec![1.0, -7.0]));
        assert_eq!(conv(&c, ElemType::I64), TensorData::I64(vec![1, -7]));
        assert_eq!(conv(&c, ElemType::I32), TensorData::I32(vec![1, -7]));
        let c = scalar("x", ColumnData::I64(vec![i32::MIN as i64, i32::MAX as i64]));
        assert_eq!(
            conv(&c, ElemType::I32),
            TensorData::I32(vec![i32::MIN, i32::MAX])
        );
        let c = scalar("x", ColumnData::I64(vec![0, i32::MAX as i64 + 1]));
        assert_eq!(
            bad(convert(&c, ElemType::I32)),
            "column 'x' row 1 is 2147483648, out of int32 range, but the model takes int32 values"
        );
    }

    #[test]
    fn int32_narrowing_in_a_row_tensor_reports_the_row() {
        let c = Column {
            name: "t".into(),
            shape: vec![2, 2],
            data: ColumnData::I64(vec![0, 0, 0, i64::MAX]),
            from_text: false,
        };
        let m = bad(convert(&c, ElemType::I32));
        assert!(m.starts_with("column 't' row 1 "), "{m}");
    }

    #[test]
    fn zero_and_one_to_booleans() {
        let c = scalar("x", ColumnData::I64(vec![0, 1, 1]));
        assert_eq!(
            conv(&c, ElemType::Bool),
            TensorData::Bool(vec![false, true, true])
        );
        let c = scalar("x", ColumnData::I64(vec![1, 2]));
        assert_eq!(
            bad(convert(&c, ElemType::Bool)),
            "column 'x' row 1 is 2 but the model takes bool values"
        );
        let c = scalar("x", ColumnData::F64(vec![1.0]));
        assert!(bad(convert(&c, ElemType::Bool)).contains("is a number but the model takes bool"));
    }

    #[test]
    fn booleans_to_numbers() {
        let c = scalar("x", ColumnData::Bool(vec![true, false]));
        assert_eq!(
            conv(&c, ElemType::Bool),
            TensorData::Bool(vec![true, false])
        );
        assert_eq!(conv(&c, ElemType::F32), TensorData::F32(vec![1.0, 0.0]));
        assert_eq!(conv(&c, ElemType::F64), TensorData::F64(vec![1.0, 0.0]));
        assert_eq!(conv(&c, ElemType::I64), TensorData::I64(vec![1, 0]));
        assert_eq!(conv(&c, ElemType::I32), TensorData::I32(vec![1, 0]));
        assert_eq!(
            bad(convert(&c, ElemType::Str)),
            "column 'x' row 0 is a boolean but the model takes string values"
        );
    }

    #[test]
    fn json_strings_are_not_parsed() {
        let c = scalar("s", ColumnData::Str(names(&["1.5"])));
        assert_eq!(conv(&c, ElemType::Str), TensorData::Str(names(&["1.5"])));
        for (target, name) in [
            (ElemType::F32, "float32"),
            (ElemType::F64, "float64"),
            (ElemType::I64, "int64"),
            (ElemType::I32, "int32"),
            (ElemType::Bool, "bool"),
        ] {
            assert_eq!(
                bad(convert(&c, target)),
                format!("column 's' row 0 is a string but the model takes {name} values")
            );
        }
        let c = scalar("n", ColumnData::I64(vec![1]));
        assert!(
            bad(convert(&c, ElemType::Str)).contains("is an integer but the model takes string")
        );
    }

    #[test]
    fn csv_text_parses_into_numbers() {
        let c = text("x", &["1", " 2.5 ", "-3e2"]);
        assert_eq!(
            conv(&c, ElemType::F64),
            TensorData::F64(vec![1.0, 2.5, -300.0])
        );
        assert_eq!(
            conv(&c, ElemType::F32),
            TensorData::F32(vec![1.0, 2.5, -300.0])
        );
        let c = text("x", &["1", " -2 "]);
        assert_eq!(conv(&c, ElemType::I64), TensorData::I64(vec![1, -2]));
        assert_eq!(conv(&c, ElemType::I32), TensorData::I32(vec![1, -2]));
        let c = text("x", &["hello", " world "]);
        assert_eq!(
            conv(&c, ElemType::Str),
            TensorData::Str(names(&["hello", " world "]))
        );
    }

    #[test]
    fn csv_text_errors_quote_the_value() {
        let c = text("x", &["1", "abc"]);
        assert_eq!(
            bad(convert(&c, ElemType::F64)),
            "column 'x' row 1 is 'abc' but the model takes float64 values"
        );
        let c = text("x", &["1.5"]);
        assert_eq!(
            bad(convert(&c, ElemType::I64)),
            "column 'x' row 0 is '1.5' but the model takes int64 values"
        );
        let c = text("x", &["3000000000"]);
        assert_eq!(
            conv(&c, ElemType::I64),
            TensorData::I64(vec![3_000_000_000])
        );
        assert!(bad(convert(&c, ElemType::I32)).contains("out of int32 range"));
    }

    #[test]
    fn csv_text_non_finite_is_refused() {
        for s in ["NaN", "inf", "-infinity"] {
            let c = text("x", &[s]);
            for target in [ElemType::F32, ElemType::F64] {
                assert!(
                    bad(convert(&c, target)).contains("row 0 is not a finite number"),
                    "{s}"
                );
            }
        }
        let c = text("x", &["1e39"]);
        assert!(bad(convert(&c, ElemType::F32)).contains("not a finite number"));
        assert_eq!(conv(&c, ElemType::F64), TensorData::F64(vec![1e39]));
    }

    #[test]
    fn csv_text_booleans() {
        let c = text(
            "x",
            &[
                "true", "True", "TRUE", "1", " false ", "False", "FALSE", "0",
            ],
        );
        assert_eq!(
            conv(&c, ElemType::Bool),
            TensorData::Bool(vec![true, true, true, true, false, false, false, false])
        );
        let c = text("x", &["yes"]);
        assert_eq!(
            bad(convert(&c, ElemType::Bool)),
            "column 'x' row 0 is 'yes' but the model takes bool values"
        );
    }
}
