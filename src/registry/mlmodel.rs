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
    pub kind: String,
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

const COLUMN_TYPES: [&str; 8] = [
    "boolean", "integer", "long", "float", "double", "string", "binary", "datetime",
];

impl Signature {
    pub fn parse(raw: &RawSignature) -> Result<Self, String> {
        let parse = |field: &str, text: &Option<String>| -> Result<Vec<SchemaEntry>, String> {
            let Some(text) = text else {
                return Ok(Vec::new());
            };
            let entries: Vec<SchemaEntry> = serde_json::from_str(text)
                .map_err(|e| format!("signature.{field} is not a valid MLflow schema: {e}"))?;
            for (i, e) in entries.iter().enumerate() {
                if e.kind == "tensor" {
                    if e.tensor_spec.is_none() {
                        return Err(format!(
                            "signature.{field}[{i}] is a tensor without 'tensor-spec'"
                        ));
                    }
                } else if !COLUMN_TYPES.contains(&e.kind.as_str()) {
                    return Err(format!(
                        "signature.{field}[{i}] has unknown type '{}'",
                        e.kind
                    ));
                }
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
