//! The binary tensor data extension of Open Inference Protocol V2 REST (Triton's, which
//! `tritonclient.http` uses by default): a body is a JSON header of
//! `Inference-Header-Content-Length` bytes followed by raw tensors. An input with
//! `parameters.binary_data_size` takes that many bytes of the rest, in input order; an output
//! asked for as binary is written the same way after the answer's JSON. Raw tensors are
//! little-endian and row-major; `BOOL` is one byte per element; each `BYTES` element is a
//! 4-byte little-endian length and then its bytes.

use crate::data::frame::ColumnData;
use crate::data::tensor::TensorData;
use crate::error::{RequestError, RequestResult};

use super::limits::DecodeLimits;

/// The header that says how long a body's JSON part is.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The JSON part and the raw part of a body whose JSON header is `header_len` bytes long.
pub fn split(body: &[u8], header_len: Option<usize>) -> RequestResult<(&[u8], &[u8])> {
    match header_len {
        None => Ok((body, &[])),
        Some(n) if n <= body.len() => Ok(body.split_at(n)),
        Some(n) => Err(RequestError::bad(format!(
            "Inference-Header-Content-Length is {n}, more than the body's {} bytes",
            body.len()
        ))),
    }
}

/// Decodes one input's raw bytes: `count` elements of `datatype`.
pub fn decode_column(
    name: &str,
    datatype: &str,
    count: usize,
    raw: &[u8],
    limits: &DecodeLimits,
) -> RequestResult<ColumnData> {
    let sized = |width: usize| -> RequestResult<std::slice::ChunksExact<'_, u8>> {
        let want = count.checked_mul(width);
        if want != Some(raw.len()) {
            return Err(RequestError::bad(format!(
                "input '{name}': binary_data_size is {} bytes, but its shape holds {count} {datatype} elements of {width} bytes",
                raw.len()
            )));
        }
        Ok(raw.chunks_exact(width))
    };
    let int = |width: usize, lo: i128, hi: i128| -> RequestResult<ColumnData> {
        let signed = datatype.starts_with("INT");
        sized(width)?
            .enumerate()
            .map(|(i, b)| {
                let mut le = [0u8; 16];
                le[..width].copy_from_slice(b);
                let x = if signed && b[width - 1] & 0x80 != 0 {
                    // Sign-extend.
                    le[width..].fill(0xff);
                    i128::from_le_bytes(le)
                } else {
                    i128::from_le_bytes(le)
                };
                if (lo..=hi).contains(&x) {
                    Ok(x as i64)
                } else {
                    Err(RequestError::bad(format!(
                        "input '{name}' element {i} is {x}, beyond INT64 (not supported)"
                    )))
                }
            })
            .collect::<RequestResult<Vec<i64>>>()
            .map(ColumnData::I64)
    };
    Ok(match datatype {
        "BOOL" => ColumnData::Bool(
            sized(1)?
                .enumerate()
                .map(|(i, b)| match b[0] {
                    0 => Ok(false),
                    1 => Ok(true),
                    x => Err(RequestError::bad(format!(
                        "input '{name}' element {i} is the byte {x}, not a BOOL (0 or 1)"
                    ))),
                })
                .collect::<RequestResult<_>>()?,
        ),
        "INT8" => int(1, i8::MIN.into(), i8::MAX.into())?,
        "INT16" => int(2, i16::MIN.into(), i16::MAX.into())?,
        "INT32" => int(4, i32::MIN.into(), i32::MAX.into())?,
        "INT64" => int(8, i64::MIN.into(), i64::MAX.into())?,
        "UINT8" => int(1, 0, u8::MAX.into())?,
        "UINT16" => int(2, 0, u16::MAX.into())?,
        "UINT32" => int(4, 0, u32::MAX.into())?,
        "UINT64" => int(8, 0, i64::MAX.into())?,
        "FP16" => ColumnData::F32(
            sized(2)?
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        ),
        "FP32" => ColumnData::F32(
            sized(4)?
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        ),
        "FP64" => ColumnData::F64(
            sized(8)?
                .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                .collect(),
        ),
        "BYTES" => ColumnData::Str(strings(name, count, raw, limits)?),
        other => {
            return Err(RequestError::bad(format!(
                "input '{name}' has unknown datatype '{other}' (BOOL, INT8..INT64, UINT8..UINT64, FP16, FP32, FP64, BYTES)"
            )))
        }
    })
}

/// `count` length-prefixed UTF-8 strings filling `raw` exactly.
fn strings(
    name: &str,
    count: usize,
    mut raw: &[u8],
    limits: &DecodeLimits,
) -> RequestResult<Vec<String>> {
    // Each element takes at least its 4-byte length: a count the bytes cannot hold is refused
    // before anything is allocated for it.
    if count > raw.len() / 4 {
        return Err(RequestError::bad(format!(
            "input '{name}': {} bytes cannot hold {count} BYTES elements",
            raw.len()
        )));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let short = || {
            RequestError::bad(format!(
                "input '{name}' element {i}: the binary data ends inside it"
            ))
        };
        let (len, rest) = raw.split_first_chunk::<4>().ok_or_else(short)?;
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(short());
        }
        limits.string(len, name)?;
        let (text, rest) = rest.split_at(len);
        let text = std::str::from_utf8(text).map_err(|_| {
            RequestError::bad(format!(
                "input '{name}' element {i} is not UTF-8 text (columns of bytes are not supported)"
            ))
        })?;
        out.push(text.to_owned());
        raw = rest;
    }
    if !raw.is_empty() {
        return Err(RequestError::bad(format!(
            "input '{name}': {} bytes are left after its {count} BYTES elements",
            raw.len()
        )));
    }
    Ok(out)
}

/// Appends a tensor's raw bytes (the layout inputs are read in).
pub fn write_tensor(data: &TensorData, out: &mut Vec<u8>) {
    match data {
        TensorData::F32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::F64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I64(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::I32(v) => v
            .iter()
            .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::Str(v) => {
            for s in v {
                // Strings the gateway writes come from a model's output: well under 4 GiB.
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// IEEE half precision to single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // Subnormal: a value of frac * 2^-24.
        (0, f) => return (f as f32) * 2f32.powi(-24) * sign_of(h),
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

fn sign_of(h: u16) -> f32 {
    if h >> 15 == 1 {
        -1.0
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn bytes_of(strings: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        write_tensor(
            &TensorData::Str(strings.iter().map(|s| s.to_string()).collect()),
            &mut out,
        );
        out
    }

    #[test]
    fn raw_tensors_decode_as_their_datatype_says() {
        let le = |v: &[i32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let got = decode_column("a", "INT32", 2, &le(&[-5, 7]), &limits()).unwrap();
        assert!(matches!(got, ColumnData::I64(v) if v == [-5, 7]));
        let got = decode_column("a", "INT8", 2, &[0xff, 0x7f], &limits()).unwrap();
        assert!(matches!(got, ColumnData::I64(v) if v == [-1, 127]));
        let got = decode_column("a", "UINT16", 1, &[0xff, 0xff], &limits()).unwrap();
        assert!(matches!(got, ColumnData::I64(v) if v == [65535]));
        let f: Vec<u8> = [1.5f32, -2.25]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let got = decode_column("a", "FP32", 2, &f, &limits()).unwrap();
        assert!(matches!(got, ColumnData::F32(v) if v == [1.5, -2.25]));
        // 1.0, -2.0, 2^-24 (the least subnormal) and infinity in half precision.
        let h: Vec<u8> = [0x3c00u16, 0xc000, 0x0001, 0x7c00]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let got = decode_column("a", "FP16", 4, &h, &limits()).unwrap();
        assert!(
            matches!(&got, ColumnData::F32(v) if v[..3] == [1.0, -2.0, 2f32.powi(-24)] && v[3].is_infinite()),
            "{got:?}"
        );
        let got = decode_column("a", "BOOL", 2, &[1, 0], &limits()).unwrap();
        assert!(matches!(got, ColumnData::Bool(v) if v == [true, false]));
        let got = decode_column("a", "BYTES", 2, &bytes_of(&["Product A", ""]), &limits()).unwrap();
        assert!(matches!(got, ColumnData::Str(v) if v == ["Product A", ""]));
    }

    #[test]
    fn raw_tensors_that_do_not_fit_are_refused_by_name() {
        let err = |r: RequestResult<ColumnData>| r.unwrap_err().to_string();
        assert!(err(decode_column("a", "FP32", 2, &[0; 7], &limits())).contains("7 bytes"));
        assert!(err(decode_column("a", "BOOL", 1, &[2], &limits())).contains("not a BOOL"));
        assert!(
            err(decode_column("a", "UINT64", 1, &[0xff; 8], &limits())).contains("beyond INT64")
        );
        assert!(err(decode_column("a", "BF16", 1, &[0; 2], &limits())).contains("unknown datatype"));
        let two = bytes_of(&["x", "y"]);
        assert!(err(decode_column("a", "BYTES", 1, &two, &limits())).contains("left after"));
        let cut = &two[..two.len() - 1];
        assert!(err(decode_column("a", "BYTES", 2, cut, &limits())).contains("ends inside"));
        assert!(
            err(decode_column("a", "BYTES", usize::MAX, &two, &limits())).contains("cannot hold")
        );
        let mut bad = 2u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert!(err(decode_column("a", "BYTES", 1, &bad, &limits())).contains("UTF-8"));
        let long = "x".repeat(limits().max_string_bytes + 1);
        assert!(matches!(
            decode_column("a", "BYTES", 1, &bytes_of(&[&long]), &limits()),
            Err(RequestError::LimitExceeded { .. })
        ));
        assert!(split(b"{}", Some(3)).is_err());
        assert_eq!(split(b"{}xy", Some(2)).unwrap(), (&b"{}"[..], &b"xy"[..]));
    }
}
