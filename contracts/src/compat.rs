//! The compatibility checker: whether every value one schema allows (the *writer*'s) is a
//! value another accepts (the *reader*'s), in the directions a [`Mode`] asks for.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::ContractError;
use crate::model::{
    self, Alt, Array, Kind, Node, Numeric, Object, Text, alts, escape, max_within, min_within,
};

/// How two schema versions must relate, named like the modes of a schema registry.
///
/// *Backward*: readers of the new version read data written with the old one (in event
/// sourcing: the current code replays old events). *Forward*: readers of the old version read
/// data written with the new one (consumers not yet upgraded). *Full*: both. The transitive
/// modes ask the same of every pair of versions in a history, not only consecutive ones.
///
/// It reads from and serializes as its [`name`](Mode::name) (`"full-transitive"`), so that
/// a configuration file can name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Mode {
    /// New readers read old data.
    Backward,
    /// Old readers read new data.
    Forward,
    /// Both [`Mode::Backward`] and [`Mode::Forward`].
    Full,
    /// [`Mode::Backward`] against every earlier version.
    BackwardTransitive,
    /// [`Mode::Forward`] against every earlier version.
    ForwardTransitive,
    /// [`Mode::Full`] against every earlier version.
    FullTransitive,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 6] = [
        Mode::Backward,
        Mode::Forward,
        Mode::Full,
        Mode::BackwardTransitive,
        Mode::ForwardTransitive,
        Mode::FullTransitive,
    ];

    /// The readings this mode checks.
    pub fn directions(self) -> &'static [Direction] {
        match self {
            Mode::Backward | Mode::BackwardTransitive => &[Direction::Backward],
            Mode::Forward | Mode::ForwardTransitive => &[Direction::Forward],
            Mode::Full | Mode::FullTransitive => &[Direction::Backward, Direction::Forward],
        }
    }

    /// Whether a history is checked pair by pair (every earlier version) rather than
    /// consecutive versions only.
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Mode::BackwardTransitive | Mode::ForwardTransitive | Mode::FullTransitive
        )
    }

    /// The name [`FromStr`] reads: `backward`, `forward-transitive`, ...
    pub fn name(self) -> &'static str {
        match self {
            Mode::Backward => "backward",
            Mode::Forward => "forward",
            Mode::Full => "full",
            Mode::BackwardTransitive => "backward-transitive",
            Mode::ForwardTransitive => "forward-transitive",
            Mode::FullTransitive => "full-transitive",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mode name that is none of [`Mode::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown compatibility mode {0:?}; expected backward, forward, full, backward-transitive, \
     forward-transitive or full-transitive"
)]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;

    /// Reads a mode name, in any case, with `-` or `_` (`FULL_TRANSITIVE` works too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == norm)
            .ok_or_else(|| UnknownMode(s.to_owned()))
    }
}

/// One reading a mode checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The new schema reads data written with the old one (writer: old, reader: new).
    Backward,
    /// The old schema reads data written with the new one (writer: new, reader: old).
    Forward,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Backward => "backward",
            Direction::Forward => "forward",
        })
    }
}

/// Something the writer may write that the reader would refuse.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Incompatibility {
    /// The reading that fails.
    pub direction: Direction,
    /// Where in the data, as a JSON pointer (`""` for the whole value, `/items/*` for every
    /// element of `items`, `/map/*` for every other key of a map).
    pub path: String,
    /// What is wrong there.
    pub kind: IncompatibilityKind,
}

impl Incompatibility {
    /// The human sentence for [`Incompatibility::kind`] (the [`Display`](fmt::Display) of the
    /// kind).
    pub fn message(&self) -> String {
        self.kind.to_string()
    }
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "(root)"
        } else {
            &self.path
        };
        write!(f, "{} {path}: {}", self.direction, self.kind)
    }
}

/// What an [`Incompatibility`] is. "Writer" is the schema the data was written with, "reader"
/// the one reading it: for [`Direction::Backward`] the old and the new schema, for
/// [`Direction::Forward`] the other way round.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum IncompatibilityKind {
    /// The writer may write a type of value the reader does not accept (a changed field
    /// type; `null` where an `Option` became required).
    TypeChanged {
        /// What the writer may write.
        writer: String,
        /// What the reader accepts (`"nothing"` for the schema `false`).
        reader: String,
    },
    /// The writer may write any value of a type the reader restricts to a few constants (a
    /// string field became an enum).
    ValuesRestricted {
        /// What the writer may write.
        writer: String,
        /// The values the reader accepts.
        values: Vec<Value>,
    },
    /// The writer may write a value the reader does not accept: a removed enum variant, a
    /// changed constant, a value a `not` now excludes.
    ValueRefused {
        /// The value.
        value: Value,
    },
    /// The reader requires a property the writer may leave out (a new required field).
    RequiredPropertyAdded {
        /// The property.
        property: String,
    },
    /// The writer may write a property the reader refuses (`additionalProperties: false`).
    PropertyRefused {
        /// The property, or the key pattern for a map with integer keys.
        property: String,
    },
    /// The writer writes keys of its choosing (a map) and the reader refuses unknown keys.
    AdditionalPropertiesRefused,
    /// A numeric bound or length limit of the reader is narrower than the writer's (`u64`
    /// read as `u32`, a shorter `maxLength`, a fixed-size array resized).
    LimitNarrowed {
        /// `minimum`, `maximum`, `minLength`, `maxLength`, `minItems` or `maxItems`.
        keyword: String,
        /// The writer's limit, if it has one.
        writer: Option<String>,
        /// The reader's limit.
        reader: String,
    },
    /// The reader expects a format the writer does not promise (`string` read as a
    /// `uuid`, `double` read as `float`).
    FormatChanged {
        /// The writer's format, if any.
        writer: Option<String>,
        /// The reader's format.
        reader: String,
    },
    /// The reader requires a pattern the writer does not promise.
    PatternChanged {
        /// The writer's pattern, if any.
        writer: Option<String>,
        /// The reader's pattern.
        reader: String,
    },
    /// The reader requires unique items and the writer does not promise them (a `Vec`
    /// became a set).
    UniqueItemsAdded,
}

impl fmt::Display for IncompatibilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use IncompatibilityKind as K;
        match self {
            K::TypeChanged { writer, reader } => write!(
                f,
                "the writer may write {writer} here, the reader accepts only {reader}"
            ),
            K::ValuesRestricted { writer, values } => {
                let values: Vec<String> = values.iter().map(Value::to_string).collect();
                write!(
                    f,
                    "the writer may write any {writer} here, the reader accepts only {}",
                    values.join(", ")
                )
            }
            K::ValueRefused { value } => write!(
                f,
                "the writer may write {value} here, which the reader does not accept"
            ),
            K::RequiredPropertyAdded { property } => write!(
                f,
                "the reader requires property {property:?}, which the writer may leave out"
            ),
            K::PropertyRefused { property } => write!(
                f,
                "the writer may write property {property:?}, which the reader refuses"
            ),
            K::AdditionalPropertiesRefused => f.write_str(
                "the writer writes keys of its choosing here, the reader refuses unknown keys",
            ),
            K::LimitNarrowed {
                keyword,
                writer,
                reader,
            } => match writer {
                Some(w) => write!(
                    f,
                    "the reader's {keyword} is {reader}, narrower than the writer's {w}"
                ),
                None => write!(
                    f,
                    "the reader's {keyword} is {reader}, the writer has no {keyword}"
                ),
            },
            K::FormatChanged { writer, reader } => match writer {
                Some(w) => write!(
                    f,
                    "the reader expects format {reader:?}, the writer promises only {w:?}"
                ),
                None => write!(
                    f,
                    "the reader expects format {reader:?}, the writer promises none"
                ),
            },
            K::PatternChanged { writer, reader } => match writer {
                Some(w) => write!(
                    f,
                    "the reader requires pattern {reader:?}, the writer promises only {w:?}"
                ),
                None => write!(
                    f,
                    "the reader requires pattern {reader:?}, the writer promises none"
                ),
            },
            K::UniqueItemsAdded => {
                f.write_str("the reader requires unique items, the writer does not promise them")
            }
        }
    }
}

/// An [`Incompatibility`] between two versions of a history.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct VersionIncompatibility {
    /// The older version of the pair.
    pub older: u32,
    /// The newer version of the pair.
    pub newer: u32,
    /// What is wrong.
    pub incompatibility: Incompatibility,
}

impl fmt::Display for VersionIncompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{} -> v{}: {}",
            self.older, self.newer, self.incompatibility
        )
    }
}

/// Checks `new` against `old` under `mode`: every way in which data one writes would be
/// refused by the other reading it. Empty means compatible. A transitive mode between two
/// schemas is its plain mode.
///
/// ```
/// use annals_contracts::{Direction, IncompatibilityKind, Mode, check};
/// use serde_json::json;
///
/// let v1 = json!({"type": "object", "properties": {"by": {"type": "integer"}}, "required": ["by"]});
/// let v2 = json!({"type": "object",
///     "properties": {"by": {"type": "integer"}, "note": {"type": ["string", "null"]}},
///     "required": ["by"]});
/// assert!(check(&v1, &v2, Mode::Full)?.is_empty()); // an optional field: both ways
///
/// let v3 = json!({"type": "object", "properties": {"by": {"type": "string"}}, "required": ["by"]});
/// let found = check(&v1, &v3, Mode::Backward)?;
/// assert_eq!(found[0].direction, Direction::Backward);
/// assert_eq!(found[0].path, "/by");
/// assert!(matches!(found[0].kind, IncompatibilityKind::TypeChanged { .. }));
/// # Ok::<(), annals_contracts::ContractError>(())
/// ```
///
/// # Errors
/// [`ContractError::Unsupported`], [`ContractError::Invalid`],
/// [`ContractError::UnresolvedRef`] or [`ContractError::Limit`] for a schema the checker
/// cannot read: it never guesses.
pub fn check(old: &Value, new: &Value, mode: Mode) -> Result<Vec<Incompatibility>, ContractError> {
    model::validate_document(old)?;
    model::validate_document(new)?;
    let mut out = Vec::new();
    for &direction in mode.directions() {
        let (writer, reader) = match direction {
            Direction::Backward => (old, new),
            Direction::Forward => (new, old),
        };
        let mut checker = Checker::default();
        let mut found = Vec::new();
        checker.node(&Node::root(writer), &Node::root(reader), "", &mut found)?;
        out.extend(found.into_iter().map(|(path, kind)| Incompatibility {
            direction,
            path,
            kind,
        }));
    }
    Ok(out)
}

/// Checks a history of versions under `mode`: each version against the one before it, or,
/// in a transitive mode, against every earlier one. The versions may come in any order.
///
/// ```
/// use annals_contracts::{Mode, check_history};
/// use serde_json::json;
///
/// let int = json!({"type": "integer"});
/// let num = json!({"type": "number"});
/// // v2 widens integer to number, v3 narrows it back: v3 cannot read what v2 wrote, and v1
/// // cannot read it either.
/// let history = [(1, int.clone()), (2, num), (3, int)];
/// assert_eq!(check_history(&history, Mode::Backward)?.len(), 1);
/// assert_eq!(check_history(&history, Mode::Forward)?.len(), 1);
/// assert!(check_history(&history, Mode::BackwardTransitive)?.iter().all(|f| f.newer == 3 && f.older == 2));
/// # Ok::<(), annals_contracts::ContractError>(())
/// ```
///
/// # Errors
/// As [`check`]; [`ContractError::Duplicate`] for a version given twice.
pub fn check_history(
    history: &[(u32, Value)],
    mode: Mode,
) -> Result<Vec<VersionIncompatibility>, ContractError> {
    let mut sorted: Vec<&(u32, Value)> = history.iter().collect();
    sorted.sort_by_key(|(v, _)| *v);
    if let Some(w) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(ContractError::Duplicate {
            what: "version",
            name: w[0].0.to_string(),
        });
    }
    for (_, schema) in &sorted {
        model::validate_document(schema)?;
    }
    let mut out = Vec::new();
    for (j, (newer, new)) in sorted.iter().enumerate() {
        let earlier = if mode.is_transitive() {
            &sorted[..j]
        } else {
            &sorted[j.saturating_sub(1)..j]
        };
        for (older, old) in earlier {
            out.extend(check(old, new, mode)?.into_iter().map(|incompatibility| {
                VersionIncompatibility {
                    older: *older,
                    newer: *newer,
                    incompatibility,
                }
            }));
        }
    }
    Ok(out)
}

/// Whether `schema` accepts `value`: `Some(true)` or `Some(false)`, or `None` when the
/// answer depends on a string `format` or `pattern`, which the checker compares between
/// schemas but does not evaluate on values.
///
/// ```
/// use annals_contracts::accepts;
/// use serde_json::json;
///
/// let schema = json!({"type": "object", "properties": {"by": {"type": "integer",
///     "format": "uint8", "minimum": 0, "maximum": 255}}, "required": ["by"]});
/// assert_eq!(accepts(&schema, &json!({"by": 3}))?, Some(true));
/// assert_eq!(accepts(&schema, &json!({"by": 300}))?, Some(false));
/// assert_eq!(accepts(&schema, &json!({}))?, Some(false));
/// # Ok::<(), annals_contracts::ContractError>(())
/// ```
///
/// # Errors
/// As [`check`], for a schema the checker cannot read.
pub fn accepts(schema: &Value, value: &Value) -> Result<Option<bool>, ContractError> {
    model::validate_document(schema)?;
    model::node_accepts(&Node::root(schema), value, 0)
}

/// The most node comparisons one check may make before it gives up with
/// [`ContractError::Limit`].
const BUDGET: usize = 200_000;

/// The deepest nesting of data one check follows (through references that are not cycles).
const MAX_NESTING: usize = 128;

type Found = (String, IncompatibilityKind);

/// One direction's comparison: the writer's values against the reader's.
#[derive(Default)]
struct Checker {
    /// Pairs of schemas under comparison: met again (a recursive type), they are taken as
    /// compatible — whatever differs is reported where the pair was first met.
    in_progress: HashSet<(String, String)>,
    /// How often a pair under way was met again (an assumption made).
    assumed: usize,
    /// Findings of pairs compared without assumptions, paths relative to the pair's.
    memo: HashMap<(String, String), Vec<Found>>,
    steps: usize,
    depth: usize,
}

/// How unlikely a reader alternative is the writer's counterpart, by what it finds: a
/// different constant in a direct property (an internally tagged enum's tag), or a
/// different set of properties (an externally tagged enum's variant name), mark another
/// variant; a difference deeper down marks the same variant, changed.
fn weight(found: &[Found], path: &str) -> usize {
    found
        .iter()
        .map(|(at, kind)| {
            let direct_child = at
                .strip_prefix(path)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.contains('/'));
            match kind {
                IncompatibilityKind::ValueRefused { .. } if direct_child => 10_000,
                IncompatibilityKind::RequiredPropertyAdded { .. }
                | IncompatibilityKind::PropertyRefused { .. }
                    if at == path =>
                {
                    1_000
                }
                _ => 1,
            }
        })
        .sum()
}

/// The pointer of the schema a node stands for: through references that say nothing else,
/// so that a recursive type met again through another reference is recognised.
fn canonical(node: &Node<'_>) -> String {
    let mut n = node.clone();
    for _ in 0..model::MAX_DEPTH {
        let Value::Object(m) = n.schema else { break };
        let Some(r) = m.get("$ref") else { break };
        if m.keys().any(|k| k != "$ref" && !model::is_annotation(k)) {
            break;
        }
        match model::resolve(&n, r) {
            Ok(target) => n = target,
            Err(_) => break,
        }
    }
    n.ptr
}

fn join(path: &str, segment: &str) -> String {
    format!("{path}/{}", escape(segment))
}

impl Checker {
    fn node<'a>(
        &mut self,
        w: &Node<'a>,
        r: &Node<'a>,
        path: &str,
        out: &mut Vec<Found>,
    ) -> Result<(), ContractError> {
        self.steps += 1;
        if self.steps > BUDGET || self.depth >= MAX_NESTING {
            return Err(ContractError::Limit {
                pointer: r.ptr.clone(),
            });
        }
        let key = (canonical(w), canonical(r));
        if let Some(found) = self.memo.get(&key) {
            out.extend(
                found
                    .iter()
                    .map(|(rel, kind)| (format!("{path}{rel}"), kind.clone())),
            );
            return Ok(());
        }
        if !self.in_progress.insert(key.clone()) {
            self.assumed += 1;
            return Ok(());
        }
        let assumed = self.assumed;
        let mut found = Vec::new();
        self.depth += 1;
        let result = self.node_inner(w, r, path, &mut found);
        self.depth -= 1;
        self.in_progress.remove(&key);
        result?;
        // Only a result that assumed nothing about pairs under way holds everywhere.
        if self.assumed == assumed {
            let relative = found
                .iter()
                .map(|(p, kind)| (p.strip_prefix(path).unwrap_or(p).to_owned(), kind.clone()))
                .collect();
            self.memo.insert(key, relative);
        }
        out.extend(found);
        Ok(())
    }

    fn node_inner<'a>(
        &mut self,
        w: &Node<'a>,
        r: &Node<'a>,
        path: &str,
        out: &mut Vec<Found>,
    ) -> Result<(), ContractError> {
        let writer = alts(w, 0)?;
        let reader = alts(r, 0)?;
        for a in &writer {
            self.alt_in_union(a, &reader, path, out)?;
        }
        Ok(())
    }

    /// Whether one writer alternative is within some reader alternative; if not, the
    /// findings against the closest one (fewest findings).
    fn alt_in_union<'a>(
        &mut self,
        a: &Alt<'a>,
        reader: &[Alt<'a>],
        path: &str,
        out: &mut Vec<Found>,
    ) -> Result<(), ContractError> {
        if let Kind::Const(v) = &a.kind {
            for b in reader {
                if model::accepts(b, v, 0)? == Some(true) {
                    return Ok(());
                }
            }
            out.push((
                path.to_owned(),
                IncompatibilityKind::ValueRefused {
                    value: (*v).clone(),
                },
            ));
            return Ok(());
        }
        let mut best: Option<(usize, Vec<Found>)> = None;
        for b in reader {
            if let Some(found) = self.alt_pair(a, b, path)? {
                if found.is_empty() {
                    return Ok(());
                }
                let w = weight(&found, path);
                if best.as_ref().is_none_or(|(v, _)| w < *v) {
                    best = Some((w, found));
                }
            }
        }
        if let Some((_, found)) = best {
            out.extend(found);
            return Ok(());
        }
        // No reader alternative of the writer's type.
        let consts: Vec<Value> = reader
            .iter()
            .filter_map(|b| match &b.kind {
                Kind::Const(v) if Some(model::json_type_of(v)) == a.json_type() => {
                    Some((*v).clone())
                }
                _ => None,
            })
            .collect();
        let kind = if !consts.is_empty() {
            IncompatibilityKind::ValuesRestricted {
                writer: a.describe(),
                values: consts,
            }
        } else {
            let mut names: Vec<String> = Vec::new();
            for b in reader {
                let d = b.describe();
                if !names.contains(&d) {
                    names.push(d);
                }
            }
            IncompatibilityKind::TypeChanged {
                writer: a.describe(),
                reader: if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(" or ")
                },
            }
        };
        out.push((path.to_owned(), kind));
        Ok(())
    }

    /// The findings of writer alternative `a` against reader alternative `b` of the same
    /// type, or `None` when their types differ.
    fn alt_pair<'a>(
        &mut self,
        a: &Alt<'a>,
        b: &Alt<'a>,
        path: &str,
    ) -> Result<Option<Vec<Found>>, ContractError> {
        let mut found = Vec::new();
        match (&a.kind, &b.kind) {
            (_, Kind::Any) => {}
            (Kind::Null, Kind::Null) | (Kind::Boolean, Kind::Boolean) => {}
            (Kind::Integer(x), Kind::Integer(y)) | (Kind::Integer(x), Kind::Number(y)) => {
                ranges(x, y, path, &mut found);
            }
            (Kind::Number(x), Kind::Number(y)) => {
                ranges(x, y, path, &mut found);
                if y.format == Some("float") && x.format != Some("float") {
                    found.push((
                        path.to_owned(),
                        IncompatibilityKind::FormatChanged {
                            writer: x.format.map(str::to_owned),
                            reader: "float".to_owned(),
                        },
                    ));
                }
            }
            (Kind::String(x), Kind::String(y)) => strings(x, y, path, &mut found),
            (Kind::Array(x), Kind::Array(y)) => self.arrays(x, y, path, &mut found)?,
            (Kind::Object(x), Kind::Object(y)) => self.objects(x, y, path, &mut found)?,
            _ => return Ok(None),
        }
        // Values the reader's `not` excludes must be ones the writer never writes.
        for v in &b.not {
            if a.not.iter().any(|x| model::json_eq(x, v)) {
                continue;
            }
            if model::accepts(a, v, 0)? != Some(false) {
                found.push((
                    path.to_owned(),
                    IncompatibilityKind::ValueRefused {
                        value: (*v).clone(),
                    },
                ));
            }
        }
        Ok(Some(found))
    }

    fn arrays<'a>(
        &mut self,
        x: &Array<'a>,
        y: &Array<'a>,
        path: &str,
        out: &mut Vec<Found>,
    ) -> Result<(), ContractError> {
        counts(
            path,
            ("minItems", x.min, y.min),
            ("maxItems", x.max, y.max),
            out,
        );
        if y.unique && !x.unique {
            out.push((path.to_owned(), IncompatibilityKind::UniqueItemsAdded));
        }
        let w_any = Node::any(&model::ANY);
        let r_any = Node::any(&model::ANY);
        let n = x.prefix.len().max(y.prefix.len());
        for i in 0..n {
            if x.max.is_some_and(|m| i as u64 >= m) {
                return Ok(());
            }
            let wi = x.prefix.get(i).or(x.tail.as_ref()).unwrap_or(&w_any);
            let ri = y.prefix.get(i).or(y.tail.as_ref()).unwrap_or(&r_any);
            self.node(wi, ri, &join(path, &i.to_string()), out)?;
        }
        if x.max.is_none_or(|m| m > n as u64) {
            let wt = x.tail.as_ref().unwrap_or(&w_any);
            let rt = y.tail.as_ref().unwrap_or(&r_any);
            self.node(wt, rt, &join(path, "*"), out)?;
        }
        Ok(())
    }

    /// Objects. The writer writes its listed properties, keys matching its key patterns and,
    /// only when its `additionalProperties` is present, keys of its choosing (a map): an
    /// absent `additionalProperties` on the writer's side is read as "nothing else", which is
    /// what a serde struct writes. The reader ignores keys it does not list unless its
    /// `additionalProperties` says otherwise, as serde does.
    fn objects<'a>(
        &mut self,
        x: &Object<'a>,
        y: &Object<'a>,
        path: &str,
        out: &mut Vec<Found>,
    ) -> Result<(), ContractError> {
        for r in &y.required {
            if !x.required.contains(r) {
                out.push((
                    path.to_owned(),
                    IncompatibilityKind::RequiredPropertyAdded {
                        property: (*r).to_owned(),
                    },
                ));
            }
        }
        // Named properties the writer writes.
        for (k, wn) in &x.properties {
            self.key_against_reader(k, wn, y, path, out)?;
        }
        // Keys the writer's key patterns match.
        for (p, wn) in &x.patterns {
            for (k, rn) in &y.properties {
                if p.matches(k) && x.property(k).is_none() {
                    self.node(wn, rn, &join(path, k), out)?;
                }
            }
            let mut covered = false;
            for (q, rn) in &y.patterns {
                self.node(wn, rn, &join(path, p.as_str()), out)?;
                covered |= p.within(*q);
            }
            if !covered {
                self.other_keys_against_reader(wn, y, path, p.as_str(), out)?;
            }
        }
        // Keys of the writer's choosing.
        if let Some(wn) = &x.additional
            && !is_false(wn)
        {
            for (k, rn) in &y.properties {
                if x.property(k).is_none() {
                    self.node(wn, rn, &join(path, k), out)?;
                }
            }
            for (_, rn) in &y.patterns {
                self.node(wn, rn, &join(path, "*"), out)?;
            }
            self.other_keys_against_reader(wn, y, path, "*", out)?;
        }
        Ok(())
    }

    /// A named property the writer writes, against whatever the reader applies to it.
    fn key_against_reader<'a>(
        &mut self,
        k: &str,
        wn: &Node<'a>,
        y: &Object<'a>,
        path: &str,
        out: &mut Vec<Found>,
    ) -> Result<(), ContractError> {
        let at = join(path, k);
        let mut matched = false;
        if let Some(rn) = y.property(k) {
            matched = true;
            self.node(wn, rn, &at, out)?;
        }
        for (q, rn) in &y.patterns {
            if q.matches(k) {
                matched = true;
                self.node(wn, rn, &at, out)?;
            }
        }
        if !matched && let Some(rn) = &y.additional {
            if is_false(rn) {
                if !is_false(wn) {
                    out.push((
                        path.to_owned(),
                        IncompatibilityKind::PropertyRefused {
                            property: k.to_owned(),
                        },
                    ));
                }
            } else {
                self.node(wn, rn, &at, out)?;
            }
        }
        Ok(())
    }

    /// Keys the reader neither lists nor matches by pattern, written with schema `wn`.
    fn other_keys_against_reader<'a>(
        &mut self,
        wn: &Node<'a>,
        y: &Object<'a>,
        path: &str,
        what: &str,
        out: &mut Vec<Found>,
    ) -> Result<(), ContractError> {
        match &y.additional {
            None => Ok(()),
            Some(rn) if is_false(rn) => {
                if !is_false(wn) {
                    out.push(if what == "*" {
                        (
                            path.to_owned(),
                            IncompatibilityKind::AdditionalPropertiesRefused,
                        )
                    } else {
                        (
                            path.to_owned(),
                            IncompatibilityKind::PropertyRefused {
                                property: what.to_owned(),
                            },
                        )
                    });
                }
                Ok(())
            }
            Some(rn) => self.node(wn, rn, &join(path, what), out),
        }
    }
}

fn is_false(n: &Node<'_>) -> bool {
    n.schema == &Value::Bool(false)
}

fn limit(path: &str, keyword: &str, writer: Option<String>, reader: String) -> Found {
    (
        path.to_owned(),
        IncompatibilityKind::LimitNarrowed {
            keyword: keyword.to_owned(),
            writer,
            reader,
        },
    )
}

/// A count's bounds (items, characters): the reader's minimum above the writer's, or its
/// maximum below the writer's (or set where the writer has none), narrows what it accepts.
fn counts<N: PartialOrd + ToString + Copy>(
    path: &str,
    (min_keyword, writer_min, reader_min): (&str, N, N),
    (max_keyword, writer_max, reader_max): (&str, Option<N>, Option<N>),
    out: &mut Vec<Found>,
) {
    if reader_min > writer_min {
        out.push(limit(
            path,
            min_keyword,
            Some(writer_min.to_string()),
            reader_min.to_string(),
        ));
    }
    if let Some(m) = reader_max
        && writer_max.is_none_or(|w| w > m)
    {
        out.push(limit(
            path,
            max_keyword,
            writer_max.map(|w| w.to_string()),
            m.to_string(),
        ));
    }
}

fn ranges(x: &Numeric<'_>, y: &Numeric<'_>, path: &str, out: &mut Vec<Found>) {
    if !min_within(x.min, y.min)
        && let Some(b) = y.min
    {
        out.push(limit(
            path,
            "minimum",
            x.min.map(|m| m.to_string()),
            b.to_string(),
        ));
    }
    if !max_within(x.max, y.max)
        && let Some(b) = y.max
    {
        out.push(limit(
            path,
            "maximum",
            x.max.map(|m| m.to_string()),
            b.to_string(),
        ));
    }
}

fn strings(x: &Text<'_>, y: &Text<'_>, path: &str, out: &mut Vec<Found>) {
    if let Some(g) = y.format {
        let within =
            x.format == Some(g) || (g == "ip" && matches!(x.format, Some("ipv4" | "ipv6")));
        if !within {
            out.push((
                path.to_owned(),
                IncompatibilityKind::FormatChanged {
                    writer: x.format.map(str::to_owned),
                    reader: g.to_owned(),
                },
            ));
        }
    }
    counts(
        path,
        ("minLength", x.min_len, y.min_len),
        ("maxLength", x.max_len, y.max_len),
        out,
    );
    if let Some(p) = y.pattern
        && x.pattern != Some(p)
    {
        out.push((
            path.to_owned(),
            IncompatibilityKind::PatternChanged {
                writer: x.pattern.map(str::to_owned),
                reader: p.to_owned(),
            },
        ));
    }
}
