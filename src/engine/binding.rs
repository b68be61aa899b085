//! Binds a request frame to a model's input tensors, following rules fixed at load time.
//!
//! Rules (also in README "Input mapping"):
//! - one tensor per input: a column named like an ONNX input feeds that input (a `[N]` column
//!   fits a `[N, 1]` input and back);
//! - one matrix: a model with a single rank-2 input whose name is not a signature column takes
//!   the signature's columns, in signature order, as the columns of an `[N, K]` matrix;
//! - a raw tensor named like the ONNX input (V2, or `inputs` with that name) is always taken as is.
//!
//! Values convert to the input's element type; a value that does not fit names its column.

use super::tensor::TensorSpec;
use crate::data::cast::convert;
use crate::data::frame::{display_name, Column, Frame, UNNAMED_TENSOR};
use crate::data::tensor::{ElemType, Tensor, TensorData};
use crate::error::{RequestError, RequestResult};

#[derive(Debug, Clone)]
enum Source {
    /// The column (or raw tensor) with the input's own name.
    Column,
    /// These scalar columns, stacked in this order into `[N, K]`.
    Matrix(Vec<String>),
}

/// The fixed plan that turns frames into the model's inputs.
#[derive(Debug, Clone)]
pub struct InputBinding {
    inputs: Vec<(TensorSpec, Source)>,
    /// Every column name a request may carry, for error messages.
    expected: Vec<String>,
}

impl InputBinding {
    /// Compiles the binding from the graph's inputs and the signature's column names, if any.
    pub fn compile(
        model_inputs: &[TensorSpec],
        signature_columns: Option<&[String]>,
    ) -> Result<Self, String> {
        let mut inputs = Vec::with_capacity(model_inputs.len());
        match signature_columns {
            Some(cols)
                if model_inputs.len() == 1
                    && model_inputs[0].shape.len() == 2
                    && !cols.contains(&model_inputs[0].name) =>
            {
                let spec = &model_inputs[0];
                if let Some(k) = spec.shape[1] {
                    if k != cols.len() {
                        return Err(format!(
                            "the signature has {} columns but ONNX input '{}' takes {k} values per row",
                            cols.len(),
                            spec.name
                        ));
                    }
                }
                inputs.push((spec.clone(), Source::Matrix(cols.to_vec())));
            }
            Some(cols) => {
                for spec in model_inputs {
                    if !cols.contains(&spec.name) {
                        return Err(format!(
                            "ONNX input '{}' is not a column of the MLflow signature ({})",
                            spec.name,
                            cols.join(", ")
                        ));
                    }
                    inputs.push((spec.clone(), Source::Column));
                }
                // A signature column no input takes would be asked for, then refused.
                if let Some(extra) = cols
                    .iter()
                    .find(|c| !model_inputs.iter().any(|s| &s.name == *c))
                {
                    return Err(format!(
                        "signature column '{extra}' is not an input of the ONNX graph ({})",
                        model_inputs
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            None => inputs.extend(model_inputs.iter().map(|s| (s.clone(), Source::Column))),
        }
        let expected = match signature_columns {
            Some(cols) => cols.to_vec(),
            None => model_inputs.iter().map(|s| s.name.clone()).collect(),
        };
        Ok(Self { inputs, expected })
    }

    /// The column names a request is expected to carry.
    pub fn expected_columns(&self) -> &[String] {
        &self.expected
    }

    /// The element type the model takes column `name` as, when it takes it.
    pub fn column_type(&self, name: &str) -> Option<ElemType> {
        self.inputs.iter().find_map(|(spec, source)| match source {
            Source::Column if spec.name == name => Some(spec.elem),
            Source::Matrix(cols) if cols.iter().any(|c| c == name) => Some(spec.elem),
            _ => None,
        })
    }

    /// Builds the model's input tensors, in graph input order.
    pub fn bind(&self, frame: &Frame) -> RequestResult<Vec<Tensor>> {
        self.bind_ignoring(frame, None)
    }

    /// As [`InputBinding::bind`], where a column named `ignore` is not an error when the model
    /// does not take it.
    pub fn bind_ignoring(&self, frame: &Frame, ignore: Option<&str>) -> RequestResult<Vec<Tensor>> {
        let mut used: Vec<bool> = frame
            .columns
            .iter()
            .map(|c| Some(c.name.as_str()) == ignore)
            .collect();
        let mut out = Vec::with_capacity(self.inputs.len());
        let single = self.inputs.len() == 1;
        for (spec, source) in &self.inputs {
            let direct = frame
                .columns
                .iter()
                .position(|c| c.name == spec.name || (single && c.name == UNNAMED_TENSOR));
            if let Some(i) = direct {
                used[i] = true;
                out.push(column_tensor(&frame.columns[i], spec)?);
                continue;
            }
            match source {
                Source::Matrix(names) => {
                    let mut cols = Vec::with_capacity(names.len());
                    for name in names {
                        let i = frame
                            .columns
                            .iter()
                            .position(|c| &c.name == name)
                            .ok_or_else(|| self.missing(name))?;
                        used[i] = true;
                        cols.push(&frame.columns[i]);
                    }
                    out.push(matrix_tensor(&cols, spec)?);
                }
                Source::Column => return Err(self.missing(&spec.name)),
            }
        }
        if let Some(i) = used.iter().position(|u| !u) {
            let extra: Vec<&str> = frame
                .columns
                .iter()
                .zip(&used)
                .filter(|(_, u)| !**u)
                .map(|(c, _)| c.name.as_str())
                .collect();
            let shown = if frame.columns[i].name == UNNAMED_TENSOR {
                "an unnamed tensor".to_owned()
            } else {
                format!("{extra:?}")
            };
            return Err(RequestError::bad(format!(
                "unknown input column(s) {shown}: the model takes {}",
                self.expected.join(", ")
            )));
        }
        Ok(out)
    }

    fn missing(&self, name: &str) -> RequestError {
        RequestError::bad(format!(
            "missing input column '{name}': the model takes {}",
            self.expected.join(", ")
        ))
    }
}

/// Fits a column's shape to the input's rank and checks static dimensions.
fn fit_shape(col: &Column, spec: &TensorSpec) -> RequestResult<Vec<usize>> {
    // Room for the trailing 1 up front: a clone has none, and the push below reallocated it
    // for nearly every column of a one-row request.
    let mut shape = Vec::with_capacity(col.shape.len() + 1);
    shape.extend_from_slice(&col.shape);
    if spec.shape.len() == shape.len() + 1 && spec.shape.last().copied().flatten().unwrap_or(1) == 1
    {
        shape.push(1);
    } else if spec.shape.len() + 1 == shape.len() && shape.last() == Some(&1) {
        shape.pop();
    }
    // Every static dimension must match, the batch dimension too (a model fixed to batch 1).
    let fits = shape.len() == spec.shape.len()
        && shape
            .iter()
            .zip(&spec.shape)
            .all(|(have, want)| want.is_none_or(|w| w == *have));
    if !fits {
        return Err(RequestError::bad(format!(
            "input '{}' has shape {:?} but the model takes {:?} (-1 is any size)",
            display_name(&col.name),
            col.shape,
            spec.v2_shape()
        )));
    }
    Ok(shape)
}

fn column_tensor(col: &Column, spec: &TensorSpec) -> RequestResult<Tensor> {
    let shape = fit_shape(col, spec)?;
    Ok(Tensor {
        shape,
        data: convert(col, spec.elem)?,
    })
}

fn matrix_tensor(cols: &[&Column], spec: &TensorSpec) -> RequestResult<Tensor> {
    let rows = cols.first().map_or(0, |c| c.rows());
    if let Some(Some(batch)) = spec.shape.first() {
        if *batch != rows {
            return Err(RequestError::bad(format!(
                "the request has {rows} rows but the model takes batches of exactly {batch}"
            )));
        }
    }
    for c in cols {
        if c.row_width() != 1 {
            return Err(RequestError::bad(format!(
                "column '{}' must hold one value per row, got shape {:?}",
                c.name, c.shape
            )));
        }
    }
    let converted = cols
        .iter()
        .map(|c| convert(c, spec.elem))
        .collect::<RequestResult<Vec<_>>>()?;
    let data = match spec.elem {
        ElemType::F32 => TensorData::F32(interleave(&converted, rows, |d| match d {
            TensorData::F32(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::F64 => TensorData::F64(interleave(&converted, rows, |d| match d {
            TensorData::F64(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::I64 => TensorData::I64(interleave(&converted, rows, |d| match d {
            TensorData::I64(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::I32 => TensorData::I32(interleave(&converted, rows, |d| match d {
            TensorData::I32(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::Bool => TensorData::Bool(interleave(&converted, rows, |d| match d {
            TensorData::Bool(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
        ElemType::Str => TensorData::Str(interleave(&converted, rows, |d| match d {
            TensorData::Str(v) => v,
            _ => unreachable!("converted to the input type"),
        })),
    };
    Ok(Tensor {
        shape: vec![rows, cols.len()],
        data,
    })
}

/// Row-major `[rows, cols]` from one vector per column.
fn interleave<T: Clone>(
    cols: &[TensorData],
    rows: usize,
    get: impl Fn(&TensorData) -> &Vec<T>,
) -> Vec<T> {
    let slices: Vec<&Vec<T>> = cols.iter().map(get).collect();
    let mut out = Vec::with_capacity(rows * slices.len());
    for r in 0..rows {
        out.extend(slices.iter().map(|s| s[r].clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::frame::testing::{names, scalar, text};
    use crate::data::frame::ColumnData;

    fn spec(name: &str, elem: ElemType, shape: &[Option<usize>]) -> TensorSpec {
        TensorSpec::new(name, elem, shape)
    }

    fn frame(columns: Vec<Column>) -> Frame {
        Frame { columns }
    }

    fn bad<T: std::fmt::Debug>(r: RequestResult<T>) -> String {
        match r {
            Err(RequestError::BadRequest(m)) => m,
            other => panic!("expected a bad request, got {other:?}"),
        }
    }

    const N: Option<usize> = None;

    // ---- compile ----

    #[test]
    fn compile_without_signature_binds_by_input_name() {
        let b = InputBinding::compile(
            &[
                spec("a", ElemType::F32, &[N, Some(1)]),
                spec("b", ElemType::I64, &[N]),
            ],
            None,
        )
        .unwrap();
        assert_eq!(b.expected_columns(), names(&["a", "b"]).as_slice());
    }

    #[test]
    fn compile_matrix_mode() {
        let cols = names(&["x1", "x2", "x3"]);
        let b = InputBinding::compile(
            &[spec("float_input", ElemType::F32, &[N, Some(3)])],
            Some(&cols),
        )
        .unwrap();
        assert_eq!(b.expected_columns(), cols.as_slice());
        // A dynamic width takes any number of signature columns.
        InputBinding::compile(&[spec("float_input", ElemType::F32, &[N, N])], Some(&cols)).unwrap();
    }

    #[test]
    fn compile_matrix_width_must_match_signature() {
        let cols = names(&["x1", "x2"]);
        let e = InputBinding::compile(
            &[spec("float_input", ElemType::F32, &[N, Some(3)])],
            Some(&cols),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "the signature has 2 columns but ONNX input 'float_input' takes 3 values per row"
        );
    }

    #[test]
    fn compile_signature_naming_the_inputs_is_per_column() {
        let cols = names(&["a", "b"]);
        let b = InputBinding::compile(
            &[
                spec("a", ElemType::F32, &[N]),
                spec("b", ElemType::F32, &[N]),
            ],
            Some(&cols),
        )
        .unwrap();
        assert_eq!(b.expected_columns(), cols.as_slice());
        // A single rank-2 input named in the signature is not a matrix.
        let cols = names(&["img"]);
        let b = InputBinding::compile(&[spec("img", ElemType::F32, &[N, Some(4)])], Some(&cols))
            .unwrap();
        let f = frame(vec![Column {
            name: "img".into(),
            shape: vec![1, 4],
            data: ColumnData::F64(vec![1.0, 2.0, 3.0, 4.0]),
            from_text: false,
        }]);
        assert_eq!(b.bind(&f).unwrap()[0].shape, vec![1, 4]);
    }

    #[test]
    fn compile_input_outside_signature_is_named() {
        let cols = names(&["a", "b"]);
        let e = InputBinding::compile(
            &[
                spec("a", ElemType::F32, &[N]),
                spec("c", ElemType::F32, &[N]),
            ],
            Some(&cols),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "ONNX input 'c' is not a column of the MLflow signature (a, b)"
        );
        // A single rank-1 input is never a matrix.
        let e = InputBinding::compile(&[spec("c", ElemType::F32, &[N])], Some(&cols)).unwrap_err();
        assert!(e.contains("ONNX input 'c'"), "{e}");
    }

    // ---- bind: columns ----

    fn two_inputs() -> InputBinding {
        InputBinding::compile(
            &[
                spec("a", ElemType::F32, &[N]),
                spec("b", ElemType::I64, &[N, Some(1)]),
            ],
            None,
        )
        .unwrap()
    }

    #[test]
    fn bind_follows_graph_order_not_frame_order() {
        let f = frame(vec![
            scalar("b", ColumnData::I64(vec![1, 2])),
            scalar("a", ColumnData::F64(vec![0.5, 1.5])),
        ]);
        let t = two_inputs().bind(&f).unwrap();
        assert_eq!(
            t,
            vec![
                Tensor {
                    shape: vec![2],
                    data: TensorData::F32(vec![0.5, 1.5])
                },
                Tensor {
                    shape: vec![2, 1],
                    data: TensorData::I64(vec![1, 2])
                },
            ]
        );
    }

    #[test]
    fn bind_missing_column_is_named() {
        let f = frame(vec![scalar("a", ColumnData::F64(vec![1.0]))]);
        assert_eq!(
            bad(two_inputs().bind(&f)),
            "missing input column 'b': the model takes a, b"
        );
    }

    #[test]
    fn bind_extra_columns_are_named() {
        let f = frame(vec![
            scalar("a", ColumnData::F64(vec![1.0])),
            scalar("b", ColumnData::I64(vec![1])),
            scalar("c", ColumnData::I64(vec![1])),
            scalar("d", ColumnData::I64(vec![1])),
        ]);
        assert_eq!(
            bad(two_inputs().bind(&f)),
            r#"unknown input column(s) ["c", "d"]: the model takes a, b"#
        );
    }

    #[test]
    fn unnamed_tensor_binds_to_the_only_input() {
        let b = InputBinding::compile(&[spec("x", ElemType::F32, &[N, Some(2)])], None).unwrap();
        let f = frame(vec![Column {
            name: UNNAMED_TENSOR.into(),
            shape: vec![2, 2],
            data: ColumnData::I64(vec![1, 2, 3, 4]),
            from_text: false,
        }]);
        let t = b.bind(&f).unwrap();
        assert_eq!(t[0].shape, vec![2, 2]);
        assert_eq!(t[0].data, TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn unnamed_tensor_with_several_inputs_is_refused() {
        let f = frame(vec![
            scalar("a", ColumnData::F64(vec![1.0])),
            scalar("b", ColumnData::I64(vec![1])),
            scalar(UNNAMED_TENSOR, ColumnData::I64(vec![1])),
        ]);
        let m = bad(two_inputs().bind(&f));
        assert_eq!(
            m,
            "unknown input column(s) an unnamed tensor: the model takes a, b"
        );
        let f = frame(vec![scalar(UNNAMED_TENSOR, ColumnData::I64(vec![1]))]);
        let m = bad(two_inputs().bind(&f));
        assert!(m.starts_with("missing input column 'a'"), "{m}");
    }

    // ---- bind: shapes ----

    fn one_input(elem: ElemType, shape: &[Option<usize>]) -> InputBinding {
        InputBinding::compile(&[spec("x", elem, shape)], None).unwrap()
    }

    fn column(shape: Vec<usize>, data: ColumnData) -> Column {
        Column {
            name: "x".into(),
            shape,
            data,
            from_text: false,
        }
    }

    #[test]
    fn n_fits_n_by_1_and_back() {
        let f = frame(vec![column(vec![3], ColumnData::F64(vec![1.0, 2.0, 3.0]))]);
        let t = one_input(ElemType::F32, &[N, Some(1)]).bind(&f).unwrap();
        assert_eq!(t[0].shape, vec![3, 1]);
        let t = one_input(ElemType::F32, &[N, N]).bind(&f).unwrap();
        assert_eq!(t[0].shape, vec![3, 1]);

        let f = frame(vec![column(
            vec![3, 1],
            ColumnData::F64(vec![1.0, 2.0, 3.0]),
        )]);
        let t = one_input(ElemType::F32, &[N]).bind(&f).unwrap();
        assert_eq!(t[0].shape, vec![3]);
        let t = one_input(ElemType::F32, &[N, Some(1)]).bind(&f).unwrap();
        assert_eq!(t[0].shape, vec![3, 1]);
    }

    #[test]
    fn n_does_not_fit_n_by_k() {
        let f = frame(vec![column(vec![2], ColumnData::F64(vec![1.0, 2.0]))]);
        let m = bad(one_input(ElemType::F32, &[N, Some(3)]).bind(&f));
        assert_eq!(
            m,
            "input 'x' has shape [2] but the model takes [-1, 3] (-1 is any size)"
        );
        let f = frame(vec![column(vec![2, 2], ColumnData::F64(vec![1.0; 4]))]);
        let m = bad(one_input(ElemType::F32, &[N]).bind(&f));
        assert!(
            m.contains("has shape [2, 2] but the model takes [-1]"),
            "{m}"
        );
    }

    #[test]
    fn static_dimensions_must_match() {
        let f = frame(vec![column(vec![1, 2, 3], ColumnData::F64(vec![0.0; 6]))]);
        one_input(ElemType::F32, &[N, Some(2), N]).bind(&f).unwrap();
        let m = bad(one_input(ElemType::F32, &[N, Some(3), Some(3)]).bind(&f));
        assert!(m.contains("[-1, 3, 3]"), "{m}");
        let m = bad(one_input(ElemType::F32, &[N, Some(2)]).bind(&f));
        assert!(m.contains("has shape [1, 2, 3]"), "{m}");
    }

    #[test]
    fn unnamed_tensor_shape_error_says_so() {
        let f = frame(vec![Column {
            name: UNNAMED_TENSOR.into(),
            shape: vec![1, 3],
            data: ColumnData::F64(vec![0.0; 3]),
            from_text: false,
        }]);
        let m = bad(one_input(ElemType::F32, &[N, Some(2)]).bind(&f));
        assert!(
            m.starts_with("input '(unnamed tensor)' has shape [1, 3]"),
            "{m}"
        );
    }

    // ---- bind: matrix ----

    fn matrix(elem: ElemType) -> InputBinding {
        InputBinding::compile(
            &[spec("float_input", elem, &[N, Some(3)])],
            Some(&names(&["x1", "x2", "x3"])),
        )
        .unwrap()
    }

    #[test]
    fn matrix_stacks_in_signature_order() {
        let f = frame(vec![
            scalar("x3", ColumnData::F64(vec![3.0, 30.0])),
            scalar("x1", ColumnData::I64(vec![1, 10])),
            scalar("x2", ColumnData::Bool(vec![true, false])),
        ]);
        let t = matrix(ElemType::F32).bind(&f).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].shape, vec![2, 3]);
        assert_eq!(
            t[0].data,
            TensorData::F32(vec![1.0, 1.0, 3.0, 10.0, 0.0, 30.0])
        );
    }

    #[test]
    fn matrix_of_every_type() {
        let ints = |n: &str| scalar(n, ColumnData::I64(vec![0, 1]));
        let f = frame(vec![ints("x1"), ints("x2"), ints("x3")]);
        assert_eq!(
            matrix(ElemType::F64).bind(&f).unwrap()[0].data,
            TensorData::F64(vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
        );
        assert_eq!(
            matrix(ElemType::I64).bind(&f).unwrap()[0].data,
            TensorData::I64(vec![0, 0, 0, 1, 1, 1])
        );
        assert_eq!(
            matrix(ElemType::I32).bind(&f).unwrap()[0].data,
            TensorData::I32(vec![0, 0, 0, 1, 1, 1])
        );
        assert_eq!(
            matrix(ElemType::Bool).bind(&f).unwrap()[0].data,
            TensorData::Bool(vec![false, false, false, true, true, true])
        );
        let strs = |n: &str| text(n, &[n, "z"]);
        let f = frame(vec![strs("x1"), strs("x2"), strs("x3")]);
        assert_eq!(
            matrix(ElemType::Str).bind(&f).unwrap()[0].data,
            TensorData::Str(names(&["x1", "x2", "x3", "z", "z", "z"]))
        );
    }

    #[test]
    fn matrix_parses_csv_text() {
        let f = frame(vec![
            text("x1", &["1"]),
            text("x2", &["2.5"]),
            text("x3", &[" -3 "]),
        ]);
        let t = matrix(ElemType::F32).bind(&f).unwrap();
        assert_eq!(t[0].data, TensorData::F32(vec![1.0, 2.5, -3.0]));
        let f = frame(vec![
            text("x1", &["1"]),
            text("x2", &["abc"]),
            text("x3", &["3"]),
        ]);
        let m = bad(matrix(ElemType::F32).bind(&f));
        assert_eq!(
            m,
            "column 'x2' row 0 is 'abc' but the model takes float32 values"
        );
    }

    #[test]
    fn matrix_missing_and_extra_columns() {
        let f = frame(vec![
            scalar("x1", ColumnData::F64(vec![1.0])),
            scalar("x3", ColumnData::F64(vec![1.0])),
        ]);
        assert_eq!(
            bad(matrix(ElemType::F32).bind(&f)),
            "missing input column 'x2': the model takes x1, x2, x3"
        );
        let f = frame(vec![
            scalar("x1", ColumnData::F64(vec![1.0])),
            scalar("x2", ColumnData::F64(vec![1.0])),
            scalar("x3", ColumnData::F64(vec![1.0])),
            scalar("x4", ColumnData::F64(vec![1.0])),
        ]);
        assert_eq!(
            bad(matrix(ElemType::F32).bind(&f)),
            r#"unknown input column(s) ["x4"]: the model takes x1, x2, x3"#
        );
    }

    #[test]
    fn matrix_columns_must_be_scalars() {
        let f = frame(vec![
            scalar("x1", ColumnData::F64(vec![1.0])),
            Column {
                name: "x2".into(),
                shape: vec![1, 2],
                data: ColumnData::F64(vec![1.0, 2.0]),
                from_text: false,
            },
            scalar("x3", ColumnData::F64(vec![1.0])),
        ]);
        assert_eq!(
            bad(matrix(ElemType::F32).bind(&f)),
            "column 'x2' must hold one value per row, got shape [1, 2]"
        );
    }

    #[test]
    fn matrix_input_given_as_raw_tensor() {
        let raw = |name: &str| Column {
            name: name.into(),
            shape: vec![1, 3],
            data: ColumnData::F64(vec![1.0, 2.0, 3.0]),
            from_text: false,
        };
        for name in ["float_input", UNNAMED_TENSOR] {
            let t = matrix(ElemType::F32).bind(&frame(vec![raw(name)])).unwrap();
            assert_eq!(t[0].shape, vec![1, 3]);
            assert_eq!(t[0].data, TensorData::F32(vec![1.0, 2.0, 3.0]));
        }
    }

    #[test]
    fn matrix_conversion_error_names_the_column() {
        let f = frame(vec![
            scalar("x1", ColumnData::F64(vec![1.0, 2.0])),
            scalar("x2", ColumnData::Str(names(&["a", "b"]))),
            scalar("x3", ColumnData::F64(vec![1.0, 2.0])),
        ]);
        assert_eq!(
            bad(matrix(ElemType::F32).bind(&f)),
            "column 'x2' row 0 is a string but the model takes float32 values"
        );
    }

    #[test]
    fn csv_text_binds_through_a_column_input() {
        let b = InputBinding::compile(&[spec("x", ElemType::F32, &[N, Some(1)])], None).unwrap();
        let t = b.bind(&frame(vec![text("x", &["1", "2"])])).unwrap();
        assert_eq!(
            t,
            vec![Tensor {
                shape: vec![2, 1],
                data: TensorData::F32(vec![1.0, 2.0])
            }]
        );
    }
}
