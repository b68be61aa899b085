//! The on-demand feature language: small, typed, side-effect free. An expression is parsed and
//! type-checked once, when a model version loads (errors name the 1-based character position),
//! and evaluated per row in Rust.
//!
//! - literals: `12`, `1.5`, `'text'` or `"text"`, `true`, `false`, `null`; names of the
//!   function's inputs;
//! - `+ - * /` on numbers (`/` always gives a float), unary `-`; `== != < <= > >=`;
//!   `and`, `or`, `not`;
//! - `if(cond, a, b)`, `coalesce(a, b, ...)`, `min(...)`, `max(...)`, `abs(x)`, `round(x)`,
//!   `round(x, digits)`, `log1p(x)`, `clip(x, lo, hi)`, `year(t)`, `month(t)`, `day(t)`,
//!   `hour(t)`, `minute(t)`, `second(t)`, `day_of_week(t)` (Monday = 1), and
//!   `seconds_between(start, end)`.
//!
//! A null operand gives null (`coalesce` picks the first non-null; `false and null` is false,
//! `true or null` is true). Division by zero, integer overflow, `log1p` below -1 and any
//! non-finite result give null: evaluation never fails and never panics.

use chrono::{Datelike, Timelike};

/// The type of a value in expressions and feature columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Type {
    #[serde(alias = "long", alias = "integer", alias = "int64")]
    Int,
    #[serde(alias = "double", alias = "float64")]
    Float,
    #[serde(alias = "boolean")]
    Bool,
    #[serde(alias = "str")]
    String,
    Timestamp,
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Timestamp => "timestamp",
        })
    }
}

impl Type {
    fn numeric(self) -> bool {
        matches!(self, Self::Int | Self::Float)
    }

    /// The type two branches share: equal types, or int and float as float.
    fn unify(self, other: Type) -> Option<Type> {
        match (self, other) {
            (a, b) if a == b => Some(a),
            (Self::Int, Self::Float) | (Self::Float, Self::Int) => Some(Self::Float),
            _ => None,
        }
    }
}

/// A value: timestamps are milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    Timestamp(i64),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    fn float(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// As JSON: timestamps as ISO 8601 text (UTC, milliseconds), non-finite floats as null.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::Null => serde_json::Value::Null,
            Self::Int(i) => (*i).into(),
            Self::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Self::Bool(b) => (*b).into(),
            Self::String(s) => s.clone().into(),
            Self::Timestamp(ms) => {
                chrono::DateTime::from_timestamp_millis(*ms).map_or(serde_json::Value::Null, |t| {
                    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                        .into()
                })
            }
        }
    }

    /// A float result, null when it is not finite.
    fn finite(x: f64) -> Value {
        if x.is_finite() {
            Value::Float(x)
        } else {
            Value::Null
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at character {pos}: {message}")]
pub struct ExprError {
    /// 1-based character position in the expression.
    pub pos: usize,
    pub message: String,
}

fn err<T>(pos: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        pos,
        message: message.into(),
    })
}

/// Deeper nesting is refused at parse time, so evaluation cannot overflow the stack.
const MAX_DEPTH: usize = 64;
/// Longer expressions are refused: a chain of binary operators nests one level per operator.
const MAX_TOKENS: usize = 512;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pos = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            if i < chars.len() && matches!(chars[i], 'e' | 'E') {
                i += 1;
                if i < chars.len() && matches!(chars[i], '+' | '-') {
                    i += 1;
                }
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            let text: String = chars[start..i].iter().collect();
            let tok = if text.contains(['.', 'e', 'E']) {
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Tok::Float)
            } else {
                text.parse::<i64>().ok().map(Tok::Int)
            };
            match tok {
                Some(t) => out.push((t, pos)),
                None => {
                    return err(
                        pos,
                        format!("'{text}' is not a number this language can hold"),
                    )
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), pos));
        } else if c == '\'' || c == '"' {
            let start = i + 1;
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += 1;
            }
            if i == chars.len() {
                return err(pos, "the string is not closed");
            }
            out.push((Tok::Str(chars[start..i].iter().collect()), pos));
            i += 1;
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["==", "!=", "<=", ">=", "&&", "||"]
                .into_iter()
                .find(|o| *o == two);
            if let Some(op) = op {
                out.push((Tok::Op(op), pos));
                i += 2;
                continue;
            }
            let tok = match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                '+' => Tok::Op("+"),
                '-' => Tok::Op("-"),
                '*' => Tok::Op("*"),
                '/' => Tok::Op("/"),
                '<' => Tok::Op("<"),
                '>' => Tok::Op(">"),
                '!' => Tok::Op("!"),
                _ => return err(pos, format!("unexpected character '{c}'")),
            };
            out.push((tok, pos));
            i += 1;
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    If,
    Coalesce,
    Min,
    Max,
    Abs,
    Round,
    Log1p,
    Clip,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    DayOfWeek,
    SecondsBetween,
}

impl Func {
    fn by_name(name: &str) -> Option<Func> {
        Some(match name {
            "if" => Self::If,
            "coalesce" => Self::Coalesce,
            "min" => Self::Min,
            "max" => Self::Max,
            "abs" => Self::Abs,
            "round" => Self::Round,
            "log1p" => Self::Log1p,
            "clip" => Self::Clip,
            "year" => Self::Year,
            "month" => Self::Month,
            "day" => Self::Day,
            "hour" => Self::Hour,
            "minute" => Self::Minute,
            "second" => Self::Second,
            "day_of_week" => Self::DayOfWeek,
            "seconds_between" => Self::SecondsBetween,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Value),
    Var(usize),
    Neg(Box<Node>),
    Not(Box<Node>),
    Bin(&'static str, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

/// A compiled expression: its tree, result type and the inputs it reads.
#[derive(Debug, Clone)]
pub struct Expr {
    root: Node,
    pub ty: Type,
    /// The inputs (indices into the compiled-with `vars`) the expression reads.
    pub uses: Vec<usize>,
}

struct Parser<'a> {
    toks: Vec<(Tok, usize)>,
    at: usize,
    vars: &'a [(String, Type)],
    end: usize,
    depth: usize,
    uses: Vec<usize>,
}

type Parsed = (Node, Type);

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).map_or(self.end, |(_, p)| *p)
    }

    fn eat_op(&mut self, ops: &[&str]) -> Option<(&'static str, usize)> {
        match self.toks.get(self.at) {
            Some((Tok::Op(o), p)) if ops.contains(o) => {
                let r = (*o, *p);
                self.at += 1;
                Some(r)
            }
            Some((Tok::Ident(w), p)) if ops.contains(&w.as_str()) => {
                let o = ["and", "or", "not"]
                    .into_iter()
                    .find(|k| k == w)
                    .unwrap_or("and");
                let r = (o, *p);
                self.at += 1;
                Some(r)
            }
            _ => None,
        }
    }

    fn deeper(&mut self) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(
                self.pos(),
                format!("the expression nests deeper than {MAX_DEPTH} levels"),
            );
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Parsed, ExprError> {
        self.deeper()?;
        let mut left = self.and()?;
        while let Some((_, pos)) = self.eat_op(&["or", "||"]) {
            let right = self.and()?;
            left = logic("or", left, right, pos)?;
        }
        self.depth -= 1;
        Ok(left)
    }

    fn and(&mut self) -> Result<Parsed, ExprError> {
        let mut left = self.not()?;
        while let Some((_, pos)) = self.eat_op(&["and", "&&"]) {
            let right = self.not()?;
            left = logic("and", left, right, pos)?;
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Parsed, ExprError> {
        if let Some((_, pos)) = self.eat_op(&["not", "!"]) {
            self.deeper()?;
            let (n, t) = self.not()?;
            self.depth -= 1;
            if t != Type::Bool {
                return err(pos, format!("'not' takes a bool, not {t}"));
            }
            return Ok((Node::Not(Box::new(n)), Type::Bool));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Parsed, ExprError> {
        let left = self.additive()?;
        if let Some((op, pos)) = self.eat_op(&["==", "!=", "<", "<=", ">", ">="]) {
            let right = self.additive()?;
            let (lt, rt) = (left.1, right.1);
            let ok = (lt.numeric() && rt.numeric())
                || (lt == rt && (matches!(op, "==" | "!=") || lt != Type::Bool));
            if !ok {
                return err(pos, format!("cannot compare {lt} with {rt}"));
            }
            return Ok((
                Node::Bin(op, Box::new(left.0), Box::new(right.0)),
                Type::Bool,
            ));
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Parsed, ExprError> {
        let mut left = self.multiplicative()?;
        while let Some((op, pos)) = self.eat_op(&["+", "-"]) {
            let right = self.multiplicative()?;
            left = arithmetic(op, left, right, pos)?;
        }
        Ok(left)
    }

    fn multiplicative(&mut self) -> Result<Parsed, ExprError> {
        let mut left = self.unary()?;
        while let Some((op, pos)) = self.eat_op(&["*", "/"]) {
            let right = self.unary()?;
            left = arithmetic(op, left, right, pos)?;
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Parsed, ExprError> {
        if let Some((_, pos)) = self.eat_op(&["-"]) {
            self.deeper()?;
            let (n, t) = self.unary()?;
            self.depth -= 1;
            if !t.numeric() {
                return err(pos, format!("'-' takes a number, not {t}"));
            }
            return Ok((Node::Neg(Box::new(n)), t));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Parsed, ExprError> {
        let pos = self.pos();
        let Some((tok, _)) = self.toks.get(self.at).cloned() else {
            return err(pos, "the expression ends where a value was expected");
        };
        self.at += 1;
        match tok {
            Tok::Int(i) => Ok((Node::Lit(Value::Int(i)), Type::Int)),
            Tok::Float(f) => Ok((Node::Lit(Value::Float(f)), Type::Float)),
            Tok::Str(s) => Ok((Node::Lit(Value::String(s)), Type::String)),
            Tok::LParen => {
                let inner = self.or()?;
                self.expect_rparen(pos)?;
                Ok(inner)
            }
            Tok::Ident(name) => match name.as_str() {
                "true" => Ok((Node::Lit(Value::Bool(true)), Type::Bool)),
                "false" => Ok((Node::Lit(Value::Bool(false)), Type::Bool)),
                // An untyped null takes the float type; inside coalesce or if it unifies.
                "null" => Ok((Node::Lit(Value::Null), Type::Float)),
                _ if self.peek() == Some(&Tok::LParen) => {
                    self.at += 1;
                    let func = Func::by_name(&name).ok_or_else(|| ExprError {
                        pos,
                        message: format!("unknown function '{name}'"),
                    })?;
                    let mut args = Vec::new();
                    if self.peek() == Some(&Tok::RParen) {
                        self.at += 1;
                    } else {
                        loop {
                            args.push((self.pos(), self.or()?));
                            match self.peek() {
                                Some(Tok::Comma) => self.at += 1,
                                Some(Tok::RParen) => {
                                    self.at += 1;
                                    break;
                                }
                                _ => {
                                    return err(
                                        self.pos(),
                                        format!("expected ',' or ')' in the call of '{name}'"),
                                    )
                                }
                            }
                        }
                    }
                    call(func, &name, args, pos)
                }
                _ => match self.vars.iter().position(|(v, _)| *v == name) {
                    Some(i) => {
                        if !self.uses.contains(&i) {
                            self.uses.push(i);
                        }
                        Ok((Node::Var(i), self.vars[i].1))
                    }
                    None => err(
                        pos,
                        format!(
                            "unknown name '{name}' (inputs: {})",
                            self.vars
                                .iter()
                                .map(|(v, _)| v.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ),
                },
            },
            Tok::RParen | Tok::Comma | Tok::Op(_) => err(pos, "expected a value here"),
        }
    }

    fn expect_rparen(&mut self, open: usize) -> Result<(), ExprError> {
        match self.peek() {
            Some(Tok::RParen) => {
                self.at += 1;
                Ok(())
            }
            _ => err(
                self.pos(),
                format!("expected ')' closing the '(' at character {open}"),
            ),
        }
    }
}

fn logic(op: &'static str, l: Parsed, r: Parsed, pos: usize) -> Result<Parsed, ExprError> {
    if l.1 != Type::Bool || r.1 != Type::Bool {
        return err(pos, format!("'{op}' takes bools, not {} and {}", l.1, r.1));
    }
    Ok((Node::Bin(op, Box::new(l.0), Box::new(r.0)), Type::Bool))
}

fn arithmetic(op: &'static str, l: Parsed, r: Parsed, pos: usize) -> Result<Parsed, ExprError> {
    if !l.1.numeric() || !r.1.numeric() {
        return err(
            pos,
            format!("'{op}' takes numbers, not {} and {}", l.1, r.1),
        );
    }
    let ty = if op == "/" || l.1 == Type::Float || r.1 == Type::Float {
        Type::Float
    } else {
        Type::Int
    };
    Ok((Node::Bin(op, Box::new(l.0), Box::new(r.0)), ty))
}

fn call(
    func: Func,
    name: &str,
    args: Vec<(usize, Parsed)>,
    pos: usize,
) -> Result<Parsed, ExprError> {
    let arity = |lo: usize, hi: usize| {
        if args.len() < lo || args.len() > hi {
            let want = if lo == hi {
                lo.to_string()
            } else if hi == usize::MAX {
                format!("{lo} or more")
            } else {
                format!("{lo} to {hi}")
            };
            return err(
                pos,
                format!("'{name}' takes {want} arguments, not {}", args.len()),
            );
        }
        Ok(())
    };
    let want = |i: usize, ok: bool, what: &str| -> Result<(), ExprError> {
        if ok {
            Ok(())
        } else {
            err(
                args[i].0,
                format!(
                    "argument {} of '{name}' must be {what}, not {}",
                    i + 1,
                    args[i].1 .1
                ),
            )
        }
    };
    let unify_all = |from: usize| -> Result<Type, ExprError> {
        let mut ty = args[from].1 .1;
        for (p, (_, t)) in &args[from + 1..] {
            ty = ty.unify(*t).ok_or_else(|| ExprError {
                pos: *p,
                message: format!("'{name}' mixes {ty} and {t}"),
            })?;
        }
        Ok(ty)
    };
    let ty = match func {
        Func::If => {
            arity(3, 3)?;
            want(0, args[0].1 .1 == Type::Bool, "a bool")?;
            unify_all(1)?
        }
        Func::Coalesce => {
            arity(1, usize::MAX)?;
            unify_all(0)?
        }
        Func::Min | Func::Max => {
            arity(1, usize::MAX)?;
            let ty = unify_all(0)?;
            if !ty.numeric() && ty != Type::Timestamp {
                return err(
                    pos,
                    format!("'{name}' takes numbers or timestamps, not {ty}"),
                );
            }
            ty
        }
        Func::Abs => {
            arity(1, 1)?;
            want(0, args[0].1 .1.numeric(), "a number")?;
            args[0].1 .1
        }
        Func::Round => {
            arity(1, 2)?;
            want(0, args[0].1 .1.numeric(), "a number")?;
            if args.len() == 2 {
                want(1, args[1].1 .1 == Type::Int, "an int")?;
            }
            Type::Float
        }
        Func::Log1p => {
            arity(1, 1)?;
            want(0, args[0].1 .1.numeric(), "a number")?;
            Type::Float
        }
        Func::Clip => {
            arity(3, 3)?;
            for (i, (_, (_, ty))) in args.iter().enumerate() {
                want(i, ty.numeric(), "a number")?;
            }
            unify_all(0)?
        }
        Func::Year
        | Func::Month
        | Func::Day
        | Func::Hour
        | Func::Minute
        | Func::Second
        | Func::DayOfWeek => {
            arity(1, 1)?;
            want(0, args[0].1 .1 == Type::Timestamp, "a timestamp")?;
            Type::Int
        }
        Func::SecondsBetween => {
            arity(2, 2)?;
            want(0, args[0].1 .1 == Type::Timestamp, "a timestamp")?;
            want(1, args[1].1 .1 == Type::Timestamp, "a timestamp")?;
            Type::Float
        }
    };
    Ok((
        Node::Call(func, args.into_iter().map(|(_, (n, _))| n).collect()),
        ty,
    ))
}

impl Expr {
    /// Parses and type-checks `src` over inputs `vars` (name and type, in argument order).
    pub fn compile(src: &str, vars: &[(String, Type)]) -> Result<Expr, ExprError> {
        let toks = lex(src)?;
        if toks.len() > MAX_TOKENS {
            return err(
                toks[MAX_TOKENS].1,
                format!("the expression is longer than {MAX_TOKENS} tokens"),
            );
        }
        let end = src.chars().count() + 1;
        let mut p = Parser {
            toks,
            at: 0,
            vars,
            end,
            depth: 0,
            uses: Vec::new(),
        };
        let (root, ty) = p.or()?;
        if p.at < p.toks.len() {
            return err(p.pos(), "unexpected text after the expression");
        }
        Ok(Expr {
            root,
            ty,
            uses: p.uses,
        })
    }

    /// The value for one row; `args` in the order of the `vars` it was compiled with.
    pub fn eval(&self, args: &[Value]) -> Value {
        let v = eval(&self.root, args);
        // An int result where a float is declared (int and float unify as float).
        match (self.ty, v) {
            (Type::Float, Value::Int(i)) => Value::Float(i as f64),
            (_, v) => v,
        }
    }
}

fn eval(node: &Node, args: &[Value]) -> Value {
    match node {
        Node::Lit(v) => v.clone(),
        Node::Var(i) => args.get(*i).cloned().unwrap_or(Value::Null),
        Node::Neg(n) => match eval(n, args) {
            Value::Int(i) => i.checked_neg().map_or(Value::Null, Value::Int),
            Value::Float(f) => Value::Float(-f),
            _ => Value::Null,
        },
        Node::Not(n) => match eval(n, args) {
            Value::Bool(b) => Value::Bool(!b),
            _ => Value::Null,
        },
        Node::Bin(op, l, r) => binary(op, l, r, args),
        Node::Call(f, a) => apply(*f, a, args),
    }
}

fn binary(op: &str, l: &Node, r: &Node, args: &[Value]) -> Value {
    let a = eval(l, args);
    // Three-valued logic: a decided side wins over a null one.
    match (op, &a) {
        ("and", Value::Bool(false)) => return Value::Bool(false),
        ("or", Value::Bool(true)) => return Value::Bool(true),
        _ => {}
    }
    let b = eval(r, args);
    match op {
        "and" | "or" => match (&a, &b) {
            (_, Value::Bool(x)) if (op == "and") != *x => Value::Bool(*x),
            (Value::Bool(x), Value::Bool(y)) => {
                Value::Bool(if op == "and" { *x && *y } else { *x || *y })
            }
            _ => Value::Null,
        },
        "+" | "-" | "*" | "/" => match (&a, &b) {
            (Value::Int(x), Value::Int(y)) if op != "/" => match op {
                "+" => x.checked_add(*y),
                "-" => x.checked_sub(*y),
                _ => x.checked_mul(*y),
            }
            .map_or(Value::Null, Value::Int),
            _ => match (a.float(), b.float()) {
                (Some(x), Some(y)) => match op {
                    "+" => Value::finite(x + y),
                    "-" => Value::finite(x - y),
                    "*" => Value::finite(x * y),
                    _ if y == 0.0 => Value::Null,
                    _ => Value::finite(x / y),
                },
                _ => Value::Null,
            },
        },
        _ => compare(op, &a, &b),
    }
}

fn compare(op: &str, a: &Value, b: &Value) -> Value {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return Value::Null,
        (Value::Int(x), Value::Int(y)) | (Value::Timestamp(x), Value::Timestamp(y)) => {
            Some(x.cmp(y))
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => match (a.float(), b.float()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    let Some(ord) = ord else { return Value::Null };
    Value::Bool(match op {
        "==" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        ">" => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

/// Python's `round(x, digits)`: the correctly rounded decimal (ties to even on the exact binary
/// value), so on-demand features match what a Python feature pipeline computed.
fn round_to(x: f64, digits: i64) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let digits = digits.clamp(-300, 300);
    if digits >= 0 {
        let text = format!("{x:.*}", digits as usize);
        Value::finite(text.parse().unwrap_or(f64::NAN))
    } else {
        let scale = 10f64.powi((-digits) as i32);
        Value::finite((x / scale).round_ties_even() * scale)
    }
}

fn apply(f: Func, a: &[Node], args: &[Value]) -> Value {
    let arg = |i: usize| a.get(i).map_or(Value::Null, |n| eval(n, args));
    match f {
        Func::If => match arg(0) {
            Value::Bool(true) => arg(1),
            Value::Bool(false) => arg(2),
            _ => Value::Null,
        },
        Func::Coalesce => a
            .iter()
            .map(|n| eval(n, args))
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        Func::Min | Func::Max => {
            let mut best = Value::Null;
            for n in a {
                let v = eval(n, args);
                if v.is_null() {
                    return Value::Null;
                }
                let better = best.is_null()
                    || compare(if f == Func::Min { "<" } else { ">" }, &v, &best)
                        == Value::Bool(true);
                if better {
                    best = v;
                }
            }
            best
        }
        Func::Abs => match arg(0) {
            Value::Int(i) => i.checked_abs().map_or(Value::Null, Value::Int),
            Value::Float(x) => Value::Float(x.abs()),
            _ => Value::Null,
        },
        Func::Round => {
            let digits = match a.len() {
                1 => 0,
                _ => match arg(1) {
                    Value::Int(d) => d,
                    _ => return Value::Null,
                },
            };
            arg(0).float().map_or(Value::Null, |x| round_to(x, digits))
        }
        Func::Log1p => match arg(0).float() {
            Some(x) if x > -1.0 => Value::finite(x.ln_1p()),
            _ => Value::Null,
        },
        Func::Clip => {
            let (x, lo, hi) = (arg(0), arg(1), arg(2));
            if [&x, &lo, &hi].iter().any(|v| v.is_null()) {
                return Value::Null;
            }
            if compare("<", &x, &lo) == Value::Bool(true) {
                lo
            } else if compare(">", &x, &hi) == Value::Bool(true) {
                hi
            } else {
                x
            }
        }
        Func::SecondsBetween => match (arg(0), arg(1)) {
            (Value::Timestamp(s), Value::Timestamp(e)) => {
                Value::Float((e as f64 - s as f64) / 1000.0)
            }
            _ => Value::Null,
        },
        part => {
            let Value::Timestamp(ms) = arg(0) else {
                return Value::Null;
            };
            let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
                return Value::Null;
            };
            Value::Int(match part {
                Func::Year => i64::from(t.year()),
                Func::Month => i64::from(t.month()),
                Func::Day => i64::from(t.day()),
                Func::Hour => i64::from(t.hour()),
                Func::Minute => i64::from(t.minute()),
                Func::Second => i64::from(t.second()),
                _ => i64::from(t.weekday().number_from_monday()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::time::parse_timestamp;
    use proptest::prelude::*;

    fn vars() -> Vec<(String, Type)> {
        vec![
            ("max_price".into(), Type::Float),
            ("amount".into(), Type::Float),
            ("n".into(), Type::Int),
            ("flag".into(), Type::Bool),
            ("t".into(), Type::Timestamp),
            ("u".into(), Type::Timestamp),
            ("s".into(), Type::String),
        ]
    }

    fn run(src: &str, args: &[Value]) -> Value {
        Expr::compile(src, &vars())
            .unwrap_or_else(|e| panic!("{src}: {e}"))
            .eval(args)
    }

    fn args(max_price: Value, amount: Value) -> Vec<Value> {
        vec![
            max_price,
            amount,
            Value::Int(3),
            Value::Bool(true),
            Value::Timestamp(parse_timestamp("2026-11-22T10:19:05.123Z").unwrap()),
            Value::Timestamp(parse_timestamp("2026-11-22T10:21:35.123Z").unwrap()),
            Value::String("Product A".into()),
        ]
    }

    const RATIO: &str = "round((max_price - amount) / max_price, 2)";

    #[test]
    fn the_demo_ratio_is_minus_five_point_seven_one() {
        assert_eq!(
            run(RATIO, &args(Value::Float(15.01), Value::Float(100.67))),
            Value::Float(-5.71)
        );
        assert_eq!(Expr::compile(RATIO, &vars()).unwrap().ty, Type::Float);
    }

    #[test]
    fn a_null_or_zero_denominator_gives_null() {
        assert_eq!(
            run(RATIO, &args(Value::Null, Value::Float(1.0))),
            Value::Null
        );
        assert_eq!(
            run(RATIO, &args(Value::Float(0.0), Value::Float(1.0))),
            Value::Null
        );
        assert_eq!(
            run(
                "coalesce(round((max_price - amount) / max_price, 2), 0)",
                &args(Value::Float(0.0), Value::Float(1.0))
            ),
            Value::Float(0.0)
        );
    }

    #[test]
    fn rounding_matches_python() {
        // Python: round(2.675, 2) == 2.67 (the float is just below the tie), round(0.125, 2) == 0.12.
        for (x, d, want) in [
            (2.675, 2, 2.67),
            (0.125, 2, 0.12),
            (0.375, 2, 0.38),
            (-5.706862, 2, -5.71),
            (2.5, 0, 2.0),
            (1234.5, -2, 1200.0),
        ] {
            assert_eq!(round_to(x, d), Value::Float(want), "round({x}, {d})");
        }
    }

    #[test]
    fn functions_and_operators() {
        let a = args(Value::Float(10.0), Value::Float(4.0));
        for (src, want) in [
            ("if(flag, n, 0)", Value::Int(3)),
            ("if(n > 5, 1.5, n)", Value::Float(3.0)),
            ("min(n, 2, 7)", Value::Int(2)),
            ("max(amount, max_price)", Value::Float(10.0)),
            ("abs(amount - max_price)", Value::Float(6.0)),
            ("clip(amount, 5, 8)", Value::Float(5.0)),
            ("clip(n, 0, 2)", Value::Int(2)),
            ("log1p(0)", Value::Float(0.0)),
            ("log1p(-2)", Value::Null),
            ("n / 2", Value::Float(1.5)),
            ("n * 2 - 1", Value::Int(5)),
            ("-n + 1", Value::Int(-2)),
            (
                "year(t) * 10000 + month(t) * 100 + day(t)",
                Value::Int(20261122),
            ),
            (
                "hour(t) * 3600 + minute(t) * 60 + second(t)",
                Value::Int(10 * 3600 + 19 * 60 + 5),
            ),
            ("day_of_week(t)", Value::Int(7)),
            ("seconds_between(t, u)", Value::Float(150.0)),
            ("s == 'Product A' and not (n != 3)", Value::Bool(true)),
            ("flag or null > 1", Value::Bool(true)),
            ("false && null > 1", Value::Bool(false)),
            ("null > 1 and true", Value::Null),
            ("9223372036854775807 + n", Value::Null),
            ("t < u", Value::Bool(true)),
        ] {
            assert_eq!(run(src, &a), want, "{src}");
        }
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            ("max_price +", 12, "ends where a value"),
            ("price * 2", 1, "unknown name 'price'"),
            (
                "round(s, 2)",
                7,
                "argument 1 of 'round' must be a number, not string",
            ),
            ("flag + 1", 6, "'+' takes numbers"),
            ("if(n, 1, 2)", 4, "must be a bool"),
            ("sqrt(n)", 1, "unknown function 'sqrt'"),
            ("(n + 1", 7, "expected ')' closing"),
            ("n 2", 3, "unexpected text"),
            ("'open", 1, "not closed"),
            ("n # 2", 3, "unexpected character '#'"),
            ("clip(n, 1)", 1, "takes 3 arguments"),
            ("s < n", 3, "cannot compare string with int"),
            ("if(flag, s, n)", 13, "mixes string and int"),
            ("99999999999999999999", 1, "not a number"),
        ];
        for (src, pos, text) in cases {
            let e = Expr::compile(src, &vars()).unwrap_err();
            assert_eq!(e.pos, pos, "{src}: {e}");
            assert!(e.message.contains(text), "{src}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let src = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(Expr::compile(&src, &vars())
            .unwrap_err()
            .message
            .contains("nests deeper"));
        let src = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Expr::compile(&src, &vars()).is_err());
        // Under the token limit, so the nesting check is what refuses them.
        let src = format!("{}1", "-".repeat(100));
        assert!(Expr::compile(&src, &vars())
            .unwrap_err()
            .message
            .contains("nests deeper"));
        let src = format!("{}true", "not ".repeat(100));
        assert!(Expr::compile(&src, &vars())
            .unwrap_err()
            .message
            .contains("nests deeper"));
        let src = vec!["n"; 10_000].join(" + ");
        assert!(Expr::compile(&src, &vars())
            .unwrap_err()
            .message
            .contains("longer than 512"));
        // The longest chain allowed evaluates without trouble.
        let src = vec!["n"; 256].join(" + ");
        assert_eq!(
            Expr::compile(&src, &vars())
                .unwrap()
                .eval(&args(Value::Null, Value::Null)),
            Value::Int(768)
        );
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            any::<bool>().prop_map(Value::Bool),
            ".{0,8}".prop_map(Value::String),
            any::<i64>().prop_map(Value::Timestamp),
        ]
    }

    proptest! {
        #[test]
        fn any_text_compiles_or_errors_without_panicking(src in ".{0,64}") {
            let _ = Expr::compile(&src, &vars());
        }

        #[test]
        fn expressions_built_from_the_grammar_evaluate_without_panicking(
            parts in proptest::collection::vec(prop_oneof![
                Just("n"), Just("amount"), Just("max_price"), Just("t"), Just("u"), Just("s"), Just("flag"),
                Just("+"), Just("-"), Just("*"), Just("/"), Just("("), Just(")"), Just(","), Just("<"), Just("=="),
                Just("and"), Just("not"), Just("round("), Just("min("), Just("clip("), Just("coalesce("),
                Just("if("), Just("log1p("), Just("year("), Just("seconds_between("), Just("0"), Just("1.5"),
                Just("null"), Just("'x'"), Just("9223372036854775807"),
            ], 1..24),
            values in proptest::collection::vec(value(), 7),
        ) {
            let src = parts.join(" ");
            if let Ok(e) = Expr::compile(&src, &vars()) {
                let _ = e.eval(&values);
            }
        }
    }
}
