//! On-demand feature expressions: compiled against typed inputs, then evaluated.
#![no_main]
use modelgate::features::expr::{Expr, Type, Value};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let vars = [("a".to_string(), Type::Float), ("s".to_string(), Type::String)];
    if let Ok(expr) = Expr::compile(src, &vars) {
        let _ = expr.eval(&[Value::Float(1.5), Value::String("x".into())]);
        let _ = expr.eval(&[Value::Null, Value::Null]);
    }
});
