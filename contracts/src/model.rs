//! The JSON Schema subset the checker reads. A schema is read lazily from its
//! `serde_json::Value`, one level at a time, as a union of *alternatives*: each one JSON type
//! with its constraints (or one constant value), nested schemas kept as [`Node`]s to be read
//! when the comparison reaches them — so recursive types (`$ref` cycles) are fine.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde_json::{Map, Number, Value};

use crate::ContractError;

/// The schema `true`: any value. Stands in for an absent `items` or `additionalProperties`.
pub(crate) static ANY: Value = Value::Bool(true);

/// How deep one level's `$ref`/`allOf`/`anyOf` chain, or a value check, may go.
pub(crate) const MAX_DEPTH: usize = 64;

/// Keywords that never change which values a schema accepts.
const ANNOTATIONS: &[&str] = &[
    "$schema",
    "$id",
    "$comment",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
    "contentEncoding",
    "contentMediaType",
];

/// Keywords of the schema object itself (not applicators).
const ASSERTIONS: &[&str] = &[
    "type",
    "nullable",
    "enum",
    "const",
    "not",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
];

const APPLICATORS: &[&str] = &["$ref", "allOf", "anyOf", "oneOf"];

const TYPES: &[&str] = &[
    "null", "boolean", "integer", "number", "string", "array", "object",
];

/// Whether `keyword` never changes which values a schema accepts.
pub(crate) fn is_annotation(keyword: &str) -> bool {
    ANNOTATIONS.contains(&keyword)
}

/// Whether `keyword` is one the checker reads (or knows it may ignore).
pub(crate) fn is_known_keyword(keyword: &str) -> bool {
    ANNOTATIONS.contains(&keyword)
        || ASSERTIONS.contains(&keyword)
        || APPLICATORS.contains(&keyword)
}

/// Why a keyword the checker does not read is refused.
pub(crate) fn unsupported_reason(keyword: &str) -> &'static str {
    match keyword {
        "if" | "then" | "else" => "conditional schemas are not understood",
        "unevaluatedProperties" | "unevaluatedItems" => {
            "`unevaluated*` keywords are not understood (schemars emits them for some \
             `#[serde(flatten)]` uses: spell the fields out instead)"
        }
        "dependentRequired" | "dependentSchemas" | "dependencies" => {
            "dependencies between properties are not understood"
        }
        "propertyNames" | "minProperties" | "maxProperties" => {
            "constraints on an object's keys or size are not understood"
        }
        "contains" | "minContains" | "maxContains" => "`contains` is not understood",
        "multipleOf" => "`multipleOf` is not understood",
        "$dynamicRef" | "$dynamicAnchor" | "$anchor" | "$recursiveRef" | "$recursiveAnchor"
        | "$vocabulary" => "only `$ref` to a JSON pointer in the same document is understood",
        _ => "not a JSON Schema keyword the checker knows",
    }
}

/// A schema inside a document, with its JSON pointer (for messages and for recognising a
/// comparison already under way on a recursive type).
#[derive(Clone, Debug)]
pub(crate) struct Node<'a> {
    pub(crate) doc: &'a Value,
    pub(crate) schema: &'a Value,
    pub(crate) ptr: String,
}

impl<'a> Node<'a> {
    pub(crate) fn root(doc: &'a Value) -> Self {
        Node {
            doc,
            schema: doc,
            ptr: "#".to_owned(),
        }
    }

    /// The schema `true` in `doc`'s place.
    pub(crate) fn any(doc: &'a Value) -> Self {
        Node {
            doc,
            schema: &ANY,
            ptr: "#(any)".to_owned(),
        }
    }

    pub(crate) fn child(&self, schema: &'a Value, segments: &[&str]) -> Self {
        let mut ptr = self.ptr.clone();
        for s in segments {
            ptr.push('/');
            ptr.push_str(&escape(s));
        }
        Node {
            doc: self.doc,
            schema,
            ptr,
        }
    }
}

/// A JSON pointer segment: `~` as `~0`, `/` as `~1`.
pub(crate) fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// One alternative of a union: one JSON type (or one constant) with its constraints, minus
/// the values a `not` excludes.
#[derive(Clone, Debug)]
pub(crate) struct Alt<'a> {
    pub(crate) kind: Kind<'a>,
    pub(crate) not: Vec<&'a Value>,
}

impl<'a> Alt<'a> {
    fn any() -> Self {
        Alt {
            kind: Kind::Any,
            not: Vec::new(),
        }
    }

    /// A short description for messages: the type, or the constant as JSON.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Any => "any value".to_owned(),
            Kind::Null => "null".to_owned(),
            Kind::Boolean => "boolean".to_owned(),
            Kind::Integer(_) => "integer".to_owned(),
            Kind::Number(_) => "number".to_owned(),
            Kind::String(_) => "string".to_owned(),
            Kind::Array(_) => "array".to_owned(),
            Kind::Object(_) => "object".to_owned(),
            Kind::Const(v) => v.to_string(),
        }
    }

    /// The JSON type this alternative's values have, if one.
    pub(crate) fn json_type(&self) -> Option<&'static str> {
        Some(match &self.kind {
            Kind::Any => return None,
            Kind::Null => "null",
            Kind::Boolean => "boolean",
            Kind::Integer(_) | Kind::Number(_) => "number",
            Kind::String(_) => "string",
            Kind::Array(_) => "array",
            Kind::Object(_) => "object",
            Kind::Const(v) => json_type_of(v),
        })
    }
}

/// The JSON type of a value ("number" for integers too).
pub(crate) fn json_type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Kind<'a> {
    Any,
    Null,
    Boolean,
    Integer(Numeric<'a>),
    Number(Numeric<'a>),
    String(Text<'a>),
    Array(Array<'a>),
    Object(Object<'a>),
    Const(&'a Value),
}

/// The range (and format) of an integer or number. For integers the bounds are inclusive,
/// and narrowed by the range a width format implies (`uint8`: 0 to 255).
#[derive(Clone, Debug, Default)]
pub(crate) struct Numeric<'a> {
    pub(crate) min: Option<Bound>,
    pub(crate) max: Option<Bound>,
    pub(crate) format: Option<&'a str>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub(crate) value: Num,
    pub(crate) exclusive: bool,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exclusive {
            write!(f, "{} (exclusive)", self.value)
        } else {
            write!(f, "{}", self.value)
        }
    }
}

/// A JSON number: exact for every integer up to 128 bits, `f64` otherwise.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Num {
    Int(i128),
    Float(f64),
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

impl Num {
    pub(crate) fn from_json(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Num::Int(i128::from(u))
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    fn from_f64(x: f64) -> Num {
        if x.fract() == 0.0 && x.abs() < 1e38 {
            // In range and integral: exact.
            #[allow(clippy::cast_possible_truncation)]
            Num::Int(x as i128)
        } else {
            Num::Float(x)
        }
    }

    pub(crate) fn cmp(self, other: Num) -> Ordering {
        fn int_float(a: i128, b: f64) -> Ordering {
            if b.fract() == 0.0 && b.abs() < 1e38 {
                #[allow(clippy::cast_possible_truncation)]
                a.cmp(&(b as i128))
            } else {
                #[allow(clippy::cast_precision_loss)]
                (a as f64).partial_cmp(&b).unwrap_or(Ordering::Equal)
            }
        }
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            (Num::Int(a), Num::Float(b)) => int_float(a, b),
            (Num::Float(a), Num::Int(b)) => int_float(b, a).reverse(),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        }
    }
}

/// Whether `lower` (a bound of the values written) keeps them within `bound` (a reader's
/// lower bound): `lower` is at least `bound`, and not equal to an exclusive `bound` unless
/// exclusive too.
pub(crate) fn min_within(lower: Option<Bound>, bound: Option<Bound>) -> bool {
    match (lower, bound) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => match a.value.cmp(b.value) {
            Ordering::Greater => true,
            Ordering::Equal => !b.exclusive || a.exclusive,
            Ordering::Less => false,
        },
    }
}

/// [`min_within`] for upper bounds.
pub(crate) fn max_within(upper: Option<Bound>, bound: Option<Bound>) -> bool {
    match (upper, bound) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(a), Some(b)) => match a.value.cmp(b.value) {
            Ordering::Less => true,
            Ordering::Equal => !b.exclusive || a.exclusive,
            Ordering::Greater => false,
        },
    }
}

fn tighter_min(a: Option<Bound>, b: Option<Bound>) -> Option<Bound> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(if min_within(Some(x), Some(y)) { x } else { y }),
    }
}

fn tighter_max(a: Option<Bound>, b: Option<Bound>) -> Option<Bound> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(x), Some(y)) => Some(if max_within(Some(x), Some(y)) { x } else { y }),
    }
}

/// An integer's lower bound made inclusive.
fn int_min(b: Bound) -> Bound {
    let value = match b.value {
        Num::Int(a) if b.exclusive => Num::Int(a.saturating_add(1)),
        Num::Int(a) => Num::Int(a),
        Num::Float(x) if b.exclusive => Num::from_f64(x.floor() + 1.0),
        Num::Float(x) => Num::from_f64(x.ceil()),
    };
    Bound {
        value,
        exclusive: false,
    }
}

/// An integer's upper bound made inclusive.
fn int_max(b: Bound) -> Bound {
    let value = match b.value {
        Num::Int(a) if b.exclusive => Num::Int(a.saturating_sub(1)),
        Num::Int(a) => Num::Int(a),
        Num::Float(x) if b.exclusive => Num::from_f64(x.ceil() - 1.0),
        Num::Float(x) => Num::from_f64(x.floor()),
    };
    Bound {
        value,
        exclusive: false,
    }
}

/// The range an integer width format implies (the formats schemars emits for Rust's
/// integer types; `int`/`uint` are `isize`/`usize`, taken as 64 bits).
fn integer_format_range(format: &str) -> Option<(Num, Num)> {
    let (lo, hi): (i128, i128) = match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" | "int" => (i64::MIN.into(), i64::MAX.into()),
        "int128" => (i128::MIN, i128::MAX),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint64" | "uint" => (0, u64::MAX.into()),
        #[allow(clippy::cast_precision_loss)]
        "uint128" => return Some((Num::Int(0), Num::Float(u128::MAX as f64))),
        _ => return None,
    };
    Some((Num::Int(lo), Num::Int(hi)))
}

/// A string's constraints.
#[derive(Clone, Debug, Default)]
pub(crate) struct Text<'a> {
    pub(crate) format: Option<&'a str>,
    pub(crate) min_len: u64,
    pub(crate) max_len: Option<u64>,
    pub(crate) pattern: Option<&'a str>,
}

/// An array's constraints: positional items (tuples), the schema of the rest, lengths.
#[derive(Clone, Debug)]
pub(crate) struct Array<'a> {
    pub(crate) prefix: Vec<Node<'a>>,
    /// `None`: any value.
    pub(crate) tail: Option<Node<'a>>,
    pub(crate) min: u64,
    pub(crate) max: Option<u64>,
    pub(crate) unique: bool,
}

/// An object's constraints.
#[derive(Clone, Debug)]
pub(crate) struct Object<'a> {
    pub(crate) properties: Vec<(&'a str, Node<'a>)>,
    pub(crate) required: BTreeSet<&'a str>,
    /// `None`: `additionalProperties` is absent.
    pub(crate) additional: Option<Node<'a>>,
    pub(crate) patterns: Vec<(KeyPattern, Node<'a>)>,
}

impl<'a> Object<'a> {
    pub(crate) fn property(&self, name: &str) -> Option<&Node<'a>> {
        self.properties
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, n)| n)
    }
}

/// The `patternProperties` patterns the checker understands: the integer-key patterns
/// schemars emits for maps with integer keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyPattern {
    /// `^\d+$`
    Unsigned,
    /// `^-?\d+$`
    Signed,
}

impl KeyPattern {
    fn parse(pattern: &str) -> Option<Self> {
        match pattern {
            r"^\d+$" => Some(KeyPattern::Unsigned),
            r"^-?\d+$" => Some(KeyPattern::Signed),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KeyPattern::Unsigned => r"^\d+$",
            KeyPattern::Signed => r"^-?\d+$",
        }
    }

    pub(crate) fn matches(self, key: &str) -> bool {
        let digits = match self {
            KeyPattern::Unsigned => key,
            KeyPattern::Signed => key.strip_prefix('-').unwrap_or(key),
        };
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    }

    /// Whether every key this pattern matches the other matches too.
    pub(crate) fn within(self, other: KeyPattern) -> bool {
        self == other || (self == KeyPattern::Unsigned && other == KeyPattern::Signed)
    }
}

/// The alternatives of `node`: its own keywords, intersected with what its `$ref`, `allOf`,
/// `anyOf` and `oneOf` say. `oneOf` is read as `anyOf`: the alternatives schemars emits for
/// an enum are told apart by their tag, so at most one matches anyway.
/// The keywords of a schema object, every one of them known; `None` for a boolean schema.
fn keywords<'a>(node: &Node<'a>) -> Result<Option<&'a Map<String, Value>>, ContractError> {
    let map = match node.schema {
        Value::Bool(_) => return Ok(None),
        Value::Object(m) => m,
        _ => {
            return Err(ContractError::invalid(
                &node.ptr,
                "a schema must be an object or a boolean",
            ));
        }
    };
    if let Some(k) = map.keys().find(|k| !is_known_keyword(k)) {
        return Err(ContractError::unsupported(
            &node.ptr,
            k,
            unsupported_reason(k),
        ));
    }
    Ok(Some(map))
}

pub(crate) fn alts<'a>(node: &Node<'a>, depth: usize) -> Result<Vec<Alt<'a>>, ContractError> {
    if depth > MAX_DEPTH {
        return Err(ContractError::Limit {
            pointer: node.ptr.clone(),
        });
    }
    let Some(map) = keywords(node)? else {
        // `true` accepts anything, `false` nothing.
        return Ok(if node.schema == &Value::Bool(true) {
            vec![Alt::any()]
        } else {
            Vec::new()
        });
    };
    let mut acc = local(node, map)?.unwrap_or_else(|| vec![Alt::any()]);
    if let Some(r) = map.get("$ref") {
        let target = resolve(node, r)?;
        acc = intersect_all(acc, alts(&target, depth + 1)?, &node.ptr)?;
    }
    if let Some(all) = map.get("allOf") {
        for (i, s) in non_empty_array(node, "allOf", all)?.iter().enumerate() {
            let child = node.child(s, &["allOf", &i.to_string()]);
            acc = intersect_all(acc, alts(&child, depth + 1)?, &node.ptr)?;
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(any) = map.get(key) {
            let mut union = Vec::new();
            for (i, s) in non_empty_array(node, key, any)?.iter().enumerate() {
                union.extend(alts(&node.child(s, &[key, &i.to_string()]), depth + 1)?);
            }
            acc = intersect_all(acc, union, &node.ptr)?;
        }
    }
    Ok(acc)
}

fn non_empty_array<'a>(
    node: &Node<'a>,
    key: &str,
    v: &'a Value,
) -> Result<&'a Vec<Value>, ContractError> {
    match v {
        Value::Array(a) if !a.is_empty() => Ok(a),
        _ => Err(ContractError::invalid(
            &node.ptr,
            format!("`{key}` must be a non-empty array of schemas"),
        )),
    }
}

/// The node a `$ref` points at: a JSON pointer into the same document.
pub(crate) fn resolve<'a>(node: &Node<'a>, r: &Value) -> Result<Node<'a>, ContractError> {
    let Value::String(reference) = r else {
        return Err(ContractError::invalid(&node.ptr, "`$ref` must be a string"));
    };
    let Some(pointer) = reference.strip_prefix('#') else {
        return Err(ContractError::unsupported(
            &node.ptr,
            "$ref",
            format!(
                "only references into the same document (`#/...`) are understood, not {reference:?}"
            ),
        ));
    };
    let pointer = pointer.replace("%25", "%");
    match node.doc.pointer(&pointer) {
        Some(target) => Ok(Node {
            doc: node.doc,
            schema: target,
            ptr: format!("#{pointer}"),
        }),
        None => Err(ContractError::UnresolvedRef {
            pointer: node.ptr.clone(),
            reference: reference.clone(),
        }),
    }
}

/// Every pairwise intersection of two unions.
fn intersect_all<'a>(
    a: Vec<Alt<'a>>,
    b: Vec<Alt<'a>>,
    ptr: &str,
) -> Result<Vec<Alt<'a>>, ContractError> {
    let plain_any =
        |u: &[Alt<'a>]| u.len() == 1 && matches!(u[0].kind, Kind::Any) && u[0].not.is_empty();
    if plain_any(&a) {
        return Ok(b);
    }
    if plain_any(&b) {
        return Ok(a);
    }
    let mut out = Vec::new();
    for x in &a {
        for y in &b {
            if let Some(z) = intersect(x, y, ptr)? {
                out.push(z);
            }
        }
    }
    Ok(out)
}

/// The values both alternatives accept, as one alternative (`None`: no value).
fn intersect<'a>(a: &Alt<'a>, b: &Alt<'a>, ptr: &str) -> Result<Option<Alt<'a>>, ContractError> {
    let mut not = a.not.clone();
    for v in &b.not {
        if !not.iter().any(|x| json_eq(x, v)) {
            not.push(v);
        }
    }
    let kind = match (&a.kind, &b.kind) {
        (Kind::Any, k) | (k, Kind::Any) => Some(k.clone()),
        (Kind::Const(v), _) | (_, Kind::Const(v)) => {
            let other = if matches!(a.kind, Kind::Const(_)) {
                b
            } else {
                a
            };
            match accepts(other, v, 0)? {
                Some(true) => Some(Kind::Const(v)),
                Some(false) => None,
                None => {
                    return Err(ContractError::unsupported(
                        ptr,
                        "const",
                        "cannot tell whether a constant satisfies the `format` or `pattern` \
                         of a schema it is combined with",
                    ));
                }
            }
        }
        (Kind::Null, Kind::Null) => Some(Kind::Null),
        (Kind::Boolean, Kind::Boolean) => Some(Kind::Boolean),
        (Kind::Integer(x), Kind::Integer(y))
        | (Kind::Integer(x), Kind::Number(y))
        | (Kind::Number(x), Kind::Integer(y)) => {
            let mut n = merge_numeric(x, y);
            n.min = n.min.map(int_min);
            n.max = n.max.map(int_max);
            Some(Kind::Integer(n))
        }
        (Kind::Number(x), Kind::Number(y)) => Some(Kind::Number(merge_numeric(x, y))),
        (Kind::String(x), Kind::String(y)) => Some(Kind::String(merge_text(x, y, ptr)?)),
        (Kind::Object(x), Kind::Object(y)) => Some(Kind::Object(merge_object(x, y, ptr)?)),
        (Kind::Array(_), Kind::Array(_)) => {
            return Err(ContractError::unsupported(
                ptr,
                "allOf",
                "two array schemas combined (by `allOf`, `$ref` with siblings, or `anyOf`/`oneOf` \
                 beside `items`) are not understood",
            ));
        }
        _ => None,
    };
    Ok(kind.map(|kind| Alt { kind, not }))
}

fn merge_numeric<'a>(x: &Numeric<'a>, y: &Numeric<'a>) -> Numeric<'a> {
    Numeric {
        min: tighter_min(x.min, y.min),
        max: tighter_max(x.max, y.max),
        format: match (x.format, y.format) {
            (Some("float"), _) | (_, Some("float")) => Some("float"),
            (f, None) | (None, f) => f,
            (f, Some(_)) => f,
        },
    }
}

fn merge_text<'a>(x: &Text<'a>, y: &Text<'a>, ptr: &str) -> Result<Text<'a>, ContractError> {
    let one = |a: Option<&'a str>, b: Option<&'a str>, keyword: &str| match (a, b) {
        (Some(p), Some(q)) if p != q => Err(ContractError::unsupported(
            ptr,
            keyword,
            format!("a string constrained by two different `{keyword}`s is not understood"),
        )),
        (a, b) => Ok(a.or(b)),
    };
    Ok(Text {
        format: one(x.format, y.format, "format")?,
        pattern: one(x.pattern, y.pattern, "pattern")?,
        min_len: x.min_len.max(y.min_len),
        max_len: match (x.max_len, y.max_len) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    })
}

fn merge_object<'a>(
    x: &Object<'a>,
    y: &Object<'a>,
    ptr: &str,
) -> Result<Object<'a>, ContractError> {
    if !x.patterns.is_empty() || !y.patterns.is_empty() {
        return Err(ContractError::unsupported(
            ptr,
            "patternProperties",
            "`patternProperties` in combined object schemas are not understood",
        ));
    }
    let open = |n: &Option<Node<'a>>| n.as_ref().is_none_or(|n| n.schema == &Value::Bool(true));
    if !open(&x.additional) || !open(&y.additional) {
        return Err(ContractError::unsupported(
            ptr,
            "additionalProperties",
            "combined object schemas where one restricts additional properties are not \
             understood",
        ));
    }
    let mut properties = x.properties.clone();
    for (k, n) in &y.properties {
        match x.property(k) {
            Some(m) if m.schema == n.schema => {}
            Some(_) => {
                return Err(ContractError::unsupported(
                    ptr,
                    "properties",
                    format!("property {k:?} constrained by two combined schemas is not understood"),
                ));
            }
            None => properties.push((k, n.clone())),
        }
    }
    Ok(Object {
        properties,
        required: x.required.union(&y.required).copied().collect(),
        additional: x.additional.clone().or_else(|| y.additional.clone()),
        patterns: Vec::new(),
    })
}

/// The alternatives the schema object's own keywords allow, or `None` when it has none.
fn local<'a>(
    node: &Node<'a>,
    map: &'a Map<String, Value>,
) -> Result<Option<Vec<Alt<'a>>>, ContractError> {
    if !ASSERTIONS.iter().any(|k| map.contains_key(*k)) {
        return Ok(None);
    }
    let not = excluded(node, map)?;
    let mut consts: Option<Vec<&'a Value>> = None;
    if let Some(c) = map.get("const") {
        consts = Some(vec![c]);
    }
    if let Some(e) = map.get("enum") {
        let Value::Array(values) = e else {
            return Err(ContractError::invalid(&node.ptr, "`enum` must be an array"));
        };
        consts = Some(match consts {
            Some(c) => values
                .iter()
                .filter(|v| c.iter().any(|x| json_eq(x, v)))
                .collect(),
            None => values.iter().collect(),
        });
    }
    if let Some(values) = consts {
        return Ok(Some(
            values
                .into_iter()
                .filter(|v| !not.iter().any(|x| json_eq(x, v)))
                .map(|v| Alt {
                    kind: Kind::Const(v),
                    not: Vec::new(),
                })
                .collect(),
        ));
    }
    let mut types: Vec<&str> = match map.get("type") {
        None => TYPES.to_vec(),
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => {
            let mut out = Vec::new();
            for t in ts {
                match t {
                    Value::String(t) => out.push(t.as_str()),
                    _ => {
                        return Err(ContractError::invalid(
                            &node.ptr,
                            "`type` must be a string or an array of strings",
                        ));
                    }
                }
            }
            out
        }
        Some(_) => {
            return Err(ContractError::invalid(
                &node.ptr,
                "`type` must be a string or an array of strings",
            ));
        }
    };
    match map.get("nullable") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            if !types.contains(&"null") {
                types.push("null");
            }
        }
        Some(_) => {
            return Err(ContractError::invalid(
                &node.ptr,
                "`nullable` must be a boolean",
            ));
        }
    }
    let mut out = Vec::new();
    for t in types {
        let kind = match t {
            "null" => Kind::Null,
            "boolean" => Kind::Boolean,
            "integer" => Kind::Integer(numeric(node, map, true)?),
            "number" => Kind::Number(numeric(node, map, false)?),
            "string" => Kind::String(text(node, map)?),
            "array" => Kind::Array(array(node, map)?),
            "object" => Kind::Object(object(node, map)?),
            other => {
                return Err(ContractError::invalid(
                    &node.ptr,
                    format!("unknown type {other:?}"),
                ));
            }
        };
        out.push(Alt {
            kind,
            not: not.clone(),
        });
    }
    Ok(Some(out))
}

/// The values a `not` excludes: only `{"not": {"const": v}}` and `{"not": {"enum": [..]}}`
/// (what schemars emits for `NonZeroI32` and friends) are understood.
fn excluded<'a>(
    node: &Node<'a>,
    map: &'a Map<String, Value>,
) -> Result<Vec<&'a Value>, ContractError> {
    let Some(not) = map.get("not") else {
        return Ok(Vec::new());
    };
    let refuse = || {
        ContractError::unsupported(
            &node.ptr,
            "not",
            "only `not` with just `const` or `enum` is understood",
        )
    };
    let Value::Object(m) = not else {
        return Err(refuse());
    };
    if m.keys()
        .any(|k| k != "const" && k != "enum" && !ANNOTATIONS.contains(&k.as_str()))
    {
        return Err(refuse());
    }
    let mut out: Vec<&Value> = Vec::new();
    if let Some(c) = m.get("const") {
        out.push(c);
    }
    match m.get("enum") {
        None => {}
        Some(Value::Array(values)) => out.extend(values.iter()),
        Some(_) => return Err(ContractError::invalid(&node.ptr, "`enum` must be an array")),
    }
    if out.is_empty() {
        return Err(refuse());
    }
    Ok(out)
}

fn number_of(
    node: &Node<'_>,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<Num>, ContractError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(Num::from_json(n))),
        Some(_) => Err(ContractError::invalid(
            &node.ptr,
            format!("`{key}` must be a number"),
        )),
    }
}

fn count_of(
    node: &Node<'_>,
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<u64>, ContractError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(c) => Ok(Some(c)),
            None => Err(ContractError::invalid(
                &node.ptr,
                format!("`{key}` must be a non-negative integer"),
            )),
        },
        Some(_) => Err(ContractError::invalid(
            &node.ptr,
            format!("`{key}` must be a non-negative integer"),
        )),
    }
}

fn string_of<'a>(
    node: &Node<'_>,
    map: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, ContractError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ContractError::invalid(
            &node.ptr,
            format!("`{key}` must be a string"),
        )),
    }
}

fn numeric<'a>(
    node: &Node<'a>,
    map: &'a Map<String, Value>,
    integer: bool,
) -> Result<Numeric<'a>, ContractError> {
    let inclusive = |value| Bound {
        value,
        exclusive: false,
    };
    let mut min = number_of(node, map, "minimum")?.map(inclusive);
    let mut max = number_of(node, map, "maximum")?.map(inclusive);
    for (key, bound) in [
        ("exclusiveMinimum", &mut min),
        ("exclusiveMaximum", &mut max),
    ] {
        match map.get(key) {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Number(n)) => {
                let b = Some(Bound {
                    value: Num::from_json(n),
                    exclusive: true,
                });
                *bound = if key == "exclusiveMinimum" {
                    tighter_min(*bound, b)
                } else {
                    tighter_max(*bound, b)
                };
            }
            // Draft 4: `minimum`/`maximum` itself is exclusive.
            Some(Value::Bool(true)) => {
                if let Some(b) = bound {
                    b.exclusive = true;
                }
            }
            Some(_) => {
                return Err(ContractError::invalid(
                    &node.ptr,
                    format!("`{key}` must be a number"),
                ));
            }
        }
    }
    let format = string_of(node, map, "format")?;
    if integer {
        min = min.map(int_min);
        max = max.map(int_max);
        if let Some((lo, hi)) = format.and_then(integer_format_range) {
            min = tighter_min(min, Some(inclusive(lo)));
            max = tighter_max(max, Some(inclusive(hi)));
        }
    }
    Ok(Numeric { min, max, format })
}

fn text<'a>(node: &Node<'a>, map: &'a Map<String, Value>) -> Result<Text<'a>, ContractError> {
    Ok(Text {
        format: string_of(node, map, "format")?,
        min_len: count_of(node, map, "minLength")?.unwrap_or(0),
        max_len: count_of(node, map, "maxLength")?,
        pattern: string_of(node, map, "pattern")?,
    })
}

fn array<'a>(node: &Node<'a>, map: &'a Map<String, Value>) -> Result<Array<'a>, ContractError> {
    let mut prefix = Vec::new();
    let mut tail = None;
    match map.get("prefixItems") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, s) in items.iter().enumerate() {
                prefix.push(node.child(s, &["prefixItems", &i.to_string()]));
            }
        }
        Some(_) => {
            return Err(ContractError::invalid(
                &node.ptr,
                "`prefixItems` must be an array of schemas",
            ));
        }
    }
    match map.get("items") {
        None => {}
        // Draft 7 and before: `items` as an array is a tuple, `additionalItems` the rest.
        Some(Value::Array(items)) => {
            if !prefix.is_empty() {
                return Err(ContractError::invalid(
                    &node.ptr,
                    "`prefixItems` beside an array `items`",
                ));
            }
            for (i, s) in items.iter().enumerate() {
                prefix.push(node.child(s, &["items", &i.to_string()]));
            }
            tail = map
                .get("additionalItems")
                .map(|s| node.child(s, &["additionalItems"]));
        }
        Some(s) => tail = Some(node.child(s, &["items"])),
    }
    let unique = match map.get("uniqueItems") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ContractError::invalid(
                &node.ptr,
                "`uniqueItems` must be a boolean",
            ));
        }
    };
    Ok(Array {
        prefix,
        tail,
        min: count_of(node, map, "minItems")?.unwrap_or(0),
        max: count_of(node, map, "maxItems")?,
        unique,
    })
}

fn object<'a>(node: &Node<'a>, map: &'a Map<String, Value>) -> Result<Object<'a>, ContractError> {
    let mut properties = Vec::new();
    match map.get("properties") {
        None => {}
        Some(Value::Object(props)) => {
            for (k, s) in props {
                properties.push((k.as_str(), node.child(s, &["properties", k])));
            }
        }
        Some(_) => {
            return Err(ContractError::invalid(
                &node.ptr,
                "`properties` must be an object",
            ));
        }
    }
    let mut required = BTreeSet::new();
    match map.get("required") {
        None => {}
        Some(Value::Array(names)) => {
            for n in names {
                match n {
                    Value::String(n) => {
                        required.insert(n.as_str());
                    }
                    _ => {
                        return Err(ContractError::invalid(
                            &node.ptr,
                            "`required` must be an array of strings",
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(ContractError::invalid(
                &node.ptr,
                "`required` must be an array of strings",
            ));
        }
    }
    let mut patterns = Vec::new();
    match map.get("patternProperties") {
        None => {}
        Some(Value::Object(pats)) => {
            for (p, s) in pats {
                let Some(kp) = KeyPattern::parse(p) else {
                    return Err(ContractError::unsupported(
                        &node.ptr,
                        "patternProperties",
                        format!(
                            "only the integer-key patterns `^\\d+$` and `^-?\\d+$` are understood, \
                             not {p:?}"
                        ),
                    ));
                };
                patterns.push((kp, node.child(s, &["patternProperties", p])));
            }
        }
        Some(_) => {
            return Err(ContractError::invalid(
                &node.ptr,
                "`patternProperties` must be an object",
            ));
        }
    }
    Ok(Object {
        properties,
        required,
        additional: map
            .get("additionalProperties")
            .map(|s| node.child(s, &["additionalProperties"])),
        patterns,
    })
}

/// JSON equality, with numbers compared by value (`1` equals `1.0`).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            Num::from_json(x).cmp(Num::from_json(y)) == Ordering::Equal
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn in_range(n: &Numeric<'_>, x: Num) -> bool {
    let at = Some(Bound {
        value: x,
        exclusive: false,
    });
    min_within(at, n.min) && max_within(at, n.max)
}

/// Three-valued "and": `Some(false)` wins, then "unknown".
fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

/// Whether `node` accepts `value`: `Some(true)`, `Some(false)`, or `None` when that depends
/// on a `format` or `pattern` the checker does not evaluate.
pub(crate) fn node_accepts(
    node: &Node<'_>,
    value: &Value,
    depth: usize,
) -> Result<Option<bool>, ContractError> {
    let mut unknown = false;
    for a in alts(node, depth)? {
        match accepts(&a, value, depth + 1)? {
            Some(true) => return Ok(Some(true)),
            None => unknown = true,
            Some(false) => {}
        }
    }
    Ok(if unknown { None } else { Some(false) })
}

/// Whether one alternative accepts `value` (see [`node_accepts`]).
pub(crate) fn accepts(
    alt: &Alt<'_>,
    value: &Value,
    depth: usize,
) -> Result<Option<bool>, ContractError> {
    if depth > 4 * MAX_DEPTH {
        return Err(ContractError::Limit {
            pointer: "#".to_owned(),
        });
    }
    if alt.not.iter().any(|x| json_eq(x, value)) {
        return Ok(Some(false));
    }
    Ok(match (&alt.kind, value) {
        (Kind::Any, _) => Some(true),
        (Kind::Null, v) => Some(v.is_null()),
        (Kind::Boolean, v) => Some(v.is_boolean()),
        (Kind::Const(c), v) => Some(json_eq(c, v)),
        (Kind::Integer(n), Value::Number(x)) => {
            let integral = x.is_i64() || x.is_u64() || x.as_f64().is_some_and(|f| f.fract() == 0.0);
            Some(integral && in_range(n, Num::from_json(x)))
        }
        (Kind::Number(n), Value::Number(x)) => Some(in_range(n, Num::from_json(x))),
        (Kind::String(t), Value::String(s)) => {
            let len = s.chars().count() as u64;
            if len < t.min_len || t.max_len.is_some_and(|m| len > m) {
                Some(false)
            } else if t.format.is_some() || t.pattern.is_some() {
                None
            } else {
                Some(true)
            }
        }
        (Kind::Array(a), Value::Array(items)) => {
            let len = items.len() as u64;
            if len < a.min || a.max.is_some_and(|m| len > m) {
                return Ok(Some(false));
            }
            if a.unique
                && items
                    .iter()
                    .enumerate()
                    .any(|(i, x)| items[..i].iter().any(|y| json_eq(x, y)))
            {
                return Ok(Some(false));
            }
            let mut all = Some(true);
            for (i, item) in items.iter().enumerate() {
                let any = Node::any(&ANY);
                let node = a.prefix.get(i).or(a.tail.as_ref()).unwrap_or(&any);
                all = and(all, node_accepts(node, item, depth + 1)?);
                if all == Some(false) {
                    break;
                }
            }
            all
        }
        (Kind::Object(o), Value::Object(m)) => {
            if o.required.iter().any(|r| !m.contains_key(*r)) {
                return Ok(Some(false));
            }
            let mut all = Some(true);
            for (k, v) in m {
                let mut matched = false;
                if let Some(n) = o.property(k) {
                    matched = true;
                    all = and(all, node_accepts(n, v, depth + 1)?);
                }
                for (p, n) in &o.patterns {
                    if p.matches(k) {
                        matched = true;
                        all = and(all, node_accepts(n, v, depth + 1)?);
                    }
                }
                if !matched && let Some(n) = &o.additional {
                    all = and(all, node_accepts(n, v, depth + 1)?);
                }
                if all == Some(false) {
                    break;
                }
            }
            all
        }
        _ => Some(false),
    })
}

/// Walks every schema of a document (including `$defs` nobody references) and reads it, so
/// that an unsupported or malformed construct anywhere is an error up front.
pub(crate) fn validate_document(doc: &Value) -> Result<(), ContractError> {
    fn walk(node: &Node<'_>, depth: usize) -> Result<(), ContractError> {
        if depth > 4 * MAX_DEPTH {
            return Err(ContractError::Limit {
                pointer: node.ptr.clone(),
            });
        }
        let Some(map) = keywords(node)? else {
            return Ok(());
        };
        // Reading this level checks its keywords' values, `$ref`s and combinations.
        alts(node, 0)?;
        for key in ["properties", "patternProperties", "$defs", "definitions"] {
            match map.get(key) {
                None => {}
                Some(Value::Object(m)) => {
                    for (k, s) in m {
                        walk(&node.child(s, &[key, k]), depth + 1)?;
                    }
                }
                Some(_) => {
                    return Err(ContractError::invalid(
                        &node.ptr,
                        format!("`{key}` must be an object"),
                    ));
                }
            }
        }
        for key in ["prefixItems", "allOf", "anyOf", "oneOf", "items"] {
            if let Some(Value::Array(items)) = map.get(key) {
                for (i, s) in items.iter().enumerate() {
                    walk(&node.child(s, &[key, &i.to_string()]), depth + 1)?;
                }
            }
        }
        for key in ["items", "additionalItems", "additionalProperties"] {
            if let Some(s) = map.get(key)
                && !s.is_array()
            {
                walk(&node.child(s, &[key]), depth + 1)?;
            }
        }
        Ok(())
    }
    walk(&Node::root(doc), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_exactly_across_representations() {
        let big = Num::Int(i128::from(u64::MAX));
        assert_eq!(
            big.cmp(Num::Int(i128::from(u64::MAX) - 1)),
            Ordering::Greater
        );
        assert_eq!(Num::Int(3).cmp(Num::Float(3.0)), Ordering::Equal);
        assert_eq!(Num::Float(2.5).cmp(Num::Int(3)), Ordering::Less);
        assert_eq!(
            Num::Int(0).cmp(Num::Float(u128::MAX as f64)),
            Ordering::Less
        );
    }

    #[test]
    fn integer_bounds_are_made_inclusive() {
        let b = |x: Num, exclusive| Bound {
            value: x,
            exclusive,
        };
        assert!(matches!(int_min(b(Num::Int(0), true)).value, Num::Int(1)));
        assert!(matches!(
            int_min(b(Num::Float(0.5), false)).value,
            Num::Int(1)
        ));
        assert!(matches!(
            int_max(b(Num::Float(9.5), true)).value,
            Num::Int(9)
        ));
        assert!(matches!(int_max(b(Num::Int(10), true)).value, Num::Int(9)));
    }

    #[test]
    fn bounds_within() {
        let incl = |v| {
            Some(Bound {
                value: Num::Int(v),
                exclusive: false,
            })
        };
        let excl = |v| {
            Some(Bound {
                value: Num::Int(v),
                exclusive: true,
            })
        };
        assert!(min_within(incl(1), incl(0)) && min_within(incl(0), incl(0)));
        assert!(!min_within(incl(0), excl(0)) && min_within(excl(0), excl(0)));
        assert!(!min_within(None, incl(0)) && min_within(None, None));
        assert!(max_within(incl(1), incl(2)) && !max_within(incl(3), incl(2)));
    }

    #[test]
    fn key_patterns() {
        let (u, s) = (KeyPattern::Unsigned, KeyPattern::Signed);
        assert!(u.matches("12") && !u.matches("-1") && !u.matches("") && !u.matches("1a"));
        assert!(s.matches("-1") && s.matches("7") && !s.matches("-"));
        assert!(u.within(s) && !s.within(u) && s.within(s));
        assert_eq!(KeyPattern::parse(u.as_str()), Some(u));
        assert_eq!(KeyPattern::parse("^[a-z]+$"), None);
    }

    #[test]
    fn pointers_escape() {
        assert_eq!(escape("a/b~c"), "a~1b~0c");
        let doc = serde_json::json!({"properties": {"a/b": {"type": "string"}}});
        let n = Node::root(&doc).child(&doc, &["properties", "a/b"]);
        assert_eq!(n.ptr, "#/properties/a~1b");
    }
}
