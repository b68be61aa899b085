//! JSON writers of the encoders: tensor elements and strings straight into the response
//! buffer, without building a `serde_json::Value` per element.

use std::io::Write;

use crate::data::tensor::TensorData;

/// One element as JSON; non-finite floats become `null` (JSON has no NaN).
/// An index past the data writes `null`; callers check shapes first (`engine::outputs::check_rows`),
/// this only
/// keeps a shape bug from panicking a worker.
pub fn write_value(data: &TensorData, i: usize, buf: &mut Vec<u8>) {
    let written = match data {
        TensorData::F32(v) => v.get(i).map(|x| write_f32(*x, buf)),
        TensorData::F64(v) => v.get(i).map(|x| write_f64(*x, buf)),
        TensorData::I64(v) => v.get(i).map(|x| {
            let _ = write!(buf, "{x}");
        }),
        TensorData::I32(v) => v.get(i).map(|x| {
            let _ = write!(buf, "{x}");
        }),
        TensorData::Bool(v) => v
            .get(i)
            .map(|b| buf.extend_from_slice(if *b { b"true" } else { b"false" })),
        TensorData::Str(v) => v.get(i).map(|s| write_json_str(s, buf)),
    };
    if written.is_none() {
        buf.extend_from_slice(b"null");
    }
}

fn write_f32(x: f32, buf: &mut Vec<u8>) {
    if x.is_finite() {
        // serde_json prints the shortest text that reads back as the same f32.
        let _ = serde_json::to_writer(&mut *buf, &x);
    } else {
        buf.extend_from_slice(b"null");
    }
}

fn write_f64(x: f64, buf: &mut Vec<u8>) {
    if x.is_finite() {
        let _ = serde_json::to_writer(&mut *buf, &x);
    } else {
        buf.extend_from_slice(b"null");
    }
}

pub fn write_json_str(s: &str, buf: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *buf, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(data: &TensorData, i: usize) -> String {
        let mut buf = Vec::new();
        write_value(data, i, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn elements_of_every_type() {
        assert_eq!(written(&TensorData::F32(vec![0.1]), 0), "0.1");
        assert_eq!(
            written(&TensorData::F64(vec![0.1 + 0.2]), 0),
            "0.30000000000000004"
        );
        assert_eq!(written(&TensorData::I64(vec![-7]), 0), "-7");
        assert_eq!(written(&TensorData::I32(vec![3]), 0), "3");
        assert_eq!(written(&TensorData::Bool(vec![true, false]), 1), "false");
        assert_eq!(
            written(&TensorData::Str(vec!["a\"b".into()]), 0),
            r#""a\"b""#
        );
    }

    #[test]
    fn non_finite_and_out_of_range_are_null() {
        assert_eq!(written(&TensorData::F32(vec![f32::NAN]), 0), "null");
        assert_eq!(
            written(&TensorData::F64(vec![f64::NEG_INFINITY]), 0),
            "null"
        );
        assert_eq!(written(&TensorData::I64(vec![1]), 1), "null");
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut buf = Vec::new();
        write_json_str("a\"\\\n\u{1}é", &mut buf);
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(back, "a\"\\\n\u{1}é");
    }
}
