//! The MLflow `MLmodel` file: the `onnx` flavor and the model signature.

use serde::Deserialize;

/// The parts of `MLmodel` the gateway uses.
#[derive(Debug, Clone, Deserialize)]
pub struct MlModel {
    #[serde(default)]
    pub flavors: Flavors,
    #[serde(default)]
    pub signature: Option<RawSignature>,
    #[serde(default)]
    pub model_uuid: Option<String>,
    #[serde(default)]
    pub utc_time_created: Option<String>,
    #[serde(default)]
    pub mlflow_version: Option<String>,
    #[serde(default)]
    pub saved_input_example_info: Option<InputExampleInfo>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Flavors {
    pub onnx: Option<OnnxFlavor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OnnxFlavor {
    /// The ONNX file, relative to the model directory.
    #[serde(default = "default_onnx_file")]
    pub data: String,
    #[serde(default)]
    pub onnx_version: Option<String>,
}

fn default_onnx_file() -> String {
    "model.onnx".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputExampleInfo {
    pub artifact_path: Option<String>,
    pub serving_input_path: Option<String>,
}

/// The signature as MLflow stores it: JSON strings inside the YAML.
#[derive(Debug, Clone, Deserialize)]
pub struct RawSignature {
    pub inputs: Option<String>,
    pub outputs: Option<String>,
}

/// One entry of an MLflow schema: a named column or a tensor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchemaEntry {
    #[serde(rename = "type")]
    pub kind: ColumnType,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_required")]
    pub required: bool,
    #[serde(default, rename = "tensor-spec")]
    pub tensor_spec: Option<TensorSpecJson>,
}

fn default_required() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TensorSpecJson {
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// A parsed signature.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    pub inputs: Vec<SchemaEntry>,
    pub outputs: Vec<SchemaEntry>,
}

/// The `type` of a schema entry: an MLflow column type, or `tensor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Boolean,
    Integer,
    Long,
    Float,
    Double,
    String,
    Binary,
    Datetime,
    Tensor,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Long => "long",
            Self::Float => "float",
            Self::Double => "double",
            Self::String => "string",
            Self::Binary => "binary",
            Self::Datetime => "datetime",
            Self::Tensor => "tensor",
        }
    }
}

impl std::fmt::Display for ColumnType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Signature {
    pub fn parse(raw: &RawSignature) -> Result<Self, String> {
        let parse = |field: &str, text: &Option<String>| -> Result<Vec<SchemaEntry>, String> {
            let Some(text) = text else {
                return Ok(Vec::new());
            };
            let raw: Vec<serde_json::Value> = serde_json::from_str(text)
                .map_err(|e| format!("signature.{field} is not a valid MLflow schema: {e}"))?;
            // Entry by entry, so an error names its index (an unknown `type` with the known ones).
            let mut entries = Vec::with_capacity(raw.len());
            for (i, value) in raw.into_iter().enumerate() {
                let e: SchemaEntry = serde_json::from_value(value)
                    .map_err(|e| format!("signature.{field}[{i}]: {e}"))?;
                if e.kind == ColumnType::Tensor && e.tensor_spec.is_none() {
                    return Err(format!(
                        "signature.{field}[{i}] is a tensor without 'tensor-spec'"
                    ));
                }
                entries.push(e);
            }
            Ok(entries)
        };
        Ok(Self {
            inputs: parse("inputs", &raw.inputs)?,
            outputs: parse("outputs", &raw.outputs)?,
        })
    }

    /// Input names in signature order, when every input is named.
    pub fn input_names(&self) -> Option<Vec<String>> {
        if self.inputs.is_empty() {
            return None;
        }
        self.inputs.iter().map(|e| e.name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(inputs: &str) -> Result<Signature, String> {
        Signature::parse(&RawSignature {
            inputs: Some(inputs.to_owned()),
            outputs: None,
        })
    }

    #[test]
    fn column_types_are_read_and_an_unknown_one_is_named_with_the_known_ones() {
        let s = parse(r#"[{"type": "double", "name": "a"}, {"type": "datetime", "name": "t"}]"#)
            .unwrap();
        let kinds: Vec<ColumnType> = s.inputs.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [ColumnType::Double, ColumnType::Datetime]);
        let err = parse(r#"[{"type": "long", "name": "a"}, {"type": "decimal", "name": "b"}]"#)
            .unwrap_err();
        assert!(err.starts_with("signature.inputs[1]: "), "{err}");
        assert!(err.contains("decimal") && err.contains("datetime"), "{err}");
        let err = parse(r#"[{"type": "tensor"}]"#).unwrap_err();
        assert_eq!(err, "signature.inputs[0] is a tensor without 'tensor-spec'");
    }
}
