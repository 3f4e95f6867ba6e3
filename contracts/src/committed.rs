//! Committed schemas: one file per event type and version, `<dir>/<event type>/v<N>.json`,
//! checked against the schemas the code generates, like the store's format fixtures.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::compat::{Mode, VersionIncompatibility, check_history};
use crate::model::json_eq;
use crate::{ContractError, EventSchema};

/// The environment variable that lets [`check_committed`] write missing schema files (and
/// refresh files whose documentation alone changed): `ANNALS_SCHEMAS_WRITE=1`.
pub const WRITE_ENV: &str = "ANNALS_SCHEMAS_WRITE";

/// Keywords that document a schema without changing what it accepts: a difference in them
/// alone is not a change of shape.
const DOC_KEYWORDS: &[&str] = &["title", "description", "examples", "$comment"];

/// The path of one schema file relative to a schema directory: `<event type>/v<N>.json` —
/// the name the relay's `dataschema` attribute gives it below its base.
///
/// ```
/// assert_eq!(annals_contracts::schema_file("Opened", 2)?, "Opened/v2.json");
/// assert!(annals_contracts::schema_file("a/b", 1).is_err());
/// # Ok::<(), annals_contracts::ContractError>(())
/// ```
///
/// # Errors
/// [`ContractError::EventTypeName`] for a name that cannot be a directory name.
pub fn schema_file(event_type: &str, version: u32) -> Result<String, ContractError> {
    check_name(event_type)?;
    Ok(format!("{event_type}/v{version}.json"))
}

fn check_name(event_type: &str) -> Result<(), ContractError> {
    let reason = if event_type.is_empty() {
        Some("it is empty")
    } else if event_type == "." || event_type == ".." {
        Some("it is `.` or `..`")
    } else if event_type.contains(['/', '\\', '\0']) {
        Some("it contains `/`, `\\` or NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ContractError::EventTypeName {
            event_type: event_type.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `value` as stable, pretty JSON: keys sorted at every level, two-space indents, a
/// trailing newline — the form schema files are written in, so that a diff shows only real
/// changes.
///
/// ```
/// let text = annals_contracts::to_stable_json(&serde_json::json!({"b": 1, "a": [true]}));
/// assert_eq!(text, "{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}\n");
/// ```
pub fn to_stable_json(value: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                let mut out = Map::new();
                for (k, v) in entries {
                    out.insert(k.clone(), sorted(v));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // Serializing a `Value` into a string cannot fail: its keys are strings.
    let mut text = serde_json::to_string_pretty(&sorted(value)).unwrap_or_default();
    text.push('\n');
    text
}

/// The schema without its documentation keywords (`title`, `description`, `examples`,
/// `$comment`), at every level: what [`check_committed`] compares.
pub fn shape(schema: &Value) -> Value {
    fn strip(v: &Value) -> Value {
        let Value::Object(m) = v else {
            return v.clone();
        };
        let mut out = Map::new();
        for (k, v) in m {
            if DOC_KEYWORDS.contains(&k.as_str()) {
                continue;
            }
            let v = match k.as_str() {
                // Maps of schemas.
                "properties" | "patternProperties" | "$defs" | "definitions"
                | "dependentSchemas" => match v {
                    Value::Object(children) => Value::Object(
                        children
                            .iter()
                            .map(|(name, s)| (name.clone(), strip(s)))
                            .collect(),
                    ),
                    other => other.clone(),
                },
                // Lists of schemas, or one.
                "allOf" | "anyOf" | "oneOf" | "prefixItems" | "items" => match v {
                    Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
                    other => strip(other),
                },
                "additionalProperties"
                | "additionalItems"
                | "not"
                | "contains"
                | "propertyNames"
                | "unevaluatedProperties"
                | "unevaluatedItems"
                | "if"
                | "then"
                | "else" => strip(v),
                // Values, not schemas (`enum`, `const`, `default`, ...).
                _ => v.clone(),
            };
            out.insert(k.clone(), v);
        }
        Value::Object(out)
    }
    strip(schema)
}

/// Reads every committed schema of a directory: `<dir>/<event type>/v<N>.json`, by event
/// type, versions ascending. Other files are ignored; a missing directory holds nothing.
///
/// # Errors
/// [`ContractError::Io`] when listing or reading fails, [`ContractError::Json`] for a file
/// that is not JSON.
pub fn load_dir(
    dir: impl AsRef<Path>,
) -> Result<BTreeMap<String, Vec<(u32, Value)>>, ContractError> {
    let dir = dir.as_ref();
    let mut out = BTreeMap::new();
    for entry in list(dir)? {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let versions = load_type_dir(&path)?;
        if !versions.is_empty() {
            out.insert(name, versions);
        }
    }
    Ok(out)
}

fn list(dir: &Path) -> Result<Vec<std::fs::DirEntry>, ContractError> {
    let io = |source| ContractError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<Result<Vec<_>, _>>().map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(e)),
    }
}

/// `v<N>.json` with N ≥ 1 written without leading zeros.
fn version_of(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_prefix('v')?.strip_suffix(".json")?;
    if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn load_type_dir(dir: &Path) -> Result<Vec<(u32, Value)>, ContractError> {
    let mut out = Vec::new();
    for entry in list(dir)? {
        let Some(version) = entry.file_name().to_str().and_then(version_of) else {
            continue;
        };
        out.push((version, read_schema(entry.path())?));
    }
    out.sort_by_key(|(v, _)| *v);
    Ok(out)
}

/// Reads one schema file.
///
/// # Errors
/// [`ContractError::Io`] or [`ContractError::Json`].
pub fn read_schema(path: impl AsRef<Path>) -> Result<Value, ContractError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ContractError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ContractError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn write_schema(path: &Path, schema: &Value) -> Result<(), ContractError> {
    let io = |source| ContractError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, to_stable_json(schema)).map_err(io)
}

/// A way in which committed schemas and the code disagree.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Problem {
    /// The current version has no committed file, and writing was not asked for.
    Missing {
        /// The event type.
        event_type: String,
        /// The version the code writes.
        version: u32,
        /// The file that should exist.
        path: PathBuf,
    },
    /// The committed file of the current version has another shape than the generated
    /// schema: the payload changed without a version bump.
    Changed {
        /// The event type.
        event_type: String,
        /// The version the code writes (and the file is for).
        version: u32,
        /// The committed file.
        path: PathBuf,
    },
    /// Two versions are not compatible under the mode.
    Incompatible {
        /// The event type.
        event_type: String,
        /// The versions and what is wrong.
        found: VersionIncompatibility,
    },
    /// The file of a new version was not written, because that version is not compatible
    /// (see the [`Problem::Incompatible`] entries).
    NotWritten {
        /// The event type.
        event_type: String,
        /// The version the code writes.
        version: u32,
        /// The file not written.
        path: PathBuf,
    },
    /// A version newer than the code's is committed.
    AheadOfCode {
        /// The event type.
        event_type: String,
        /// The newest committed version.
        committed: u32,
        /// The version the code writes.
        current: u32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing {
                event_type,
                version,
                path,
            } => write!(
                f,
                "{event_type} v{version}: no committed schema at {}; run the tests with \
                 {WRITE_ENV}=1 to write it, then review and commit it",
                path.display()
            ),
            Problem::Changed {
                event_type,
                version,
                path,
            } => write!(
                f,
                "{event_type} v{version}: the payload's schema changed but its version did not \
                 ({} differs from the generated schema): give the new shape a new version \
                 (#[event(version = {})]), or restore the old shape",
                path.display(),
                u64::from(*version) + 1
            ),
            Problem::Incompatible { event_type, found } => write!(f, "{event_type} {found}"),
            Problem::NotWritten {
                event_type,
                version,
                path,
            } => write!(
                f,
                "{event_type} v{version}: {} not written, the new version is not compatible",
                path.display()
            ),
            Problem::AheadOfCode {
                event_type,
                committed,
                current,
            } => write!(
                f,
                "{event_type}: v{committed} is committed but the code writes v{current} \
                 (was a version bump undone?)"
            ),
        }
    }
}

/// What [`check_committed`] checked and wrote, when every contract holds.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Report {
    /// Each event type checked, with the versions compared (committed ones and the current).
    pub checked: Vec<(String, Vec<u32>)>,
    /// Schema files written (missing ones, with writing on).
    pub written: Vec<PathBuf>,
    /// Files rewritten because only their documentation changed (with writing on).
    pub refreshed: Vec<PathBuf>,
    /// Files whose documentation alone differs from the code's (with writing off): not a
    /// failure; rewrite them with writing on.
    pub stale: Vec<PathBuf>,
    /// Event types with committed schemas that the code no longer has (kept: stored events
    /// of those types still exist).
    pub uncovered: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} event type(s) checked", self.checked.len())?;
        for (what, paths) in [
            ("written", &self.written),
            ("refreshed", &self.refreshed),
            ("documentation out of date", &self.stale),
        ] {
            for p in paths {
                write!(f, "\n  {what}: {}", p.display())?;
            }
        }
        for t in &self.uncovered {
            write!(f, "\n  committed, not in the code: {t}")?;
        }
        Ok(())
    }
}

/// The committed-schema check, with its options; [`check_committed`] is the usual way in.
#[derive(Clone, Debug)]
pub struct Committed {
    dir: PathBuf,
    mode: Mode,
    write: bool,
}

impl Committed {
    /// Checks against the schema files in `dir` under `mode`; writes only when
    /// `ANNALS_SCHEMAS_WRITE=1` is set (see [`Committed::write_missing`]).
    pub fn new(dir: impl Into<PathBuf>, mode: Mode) -> Self {
        Self {
            dir: dir.into(),
            mode,
            write: std::env::var(WRITE_ENV).is_ok_and(|v| v == "1"),
        }
    }

    /// Whether a missing file of a current version is written (when that version is
    /// compatible) instead of being a [`Problem::Missing`]; the default is taken from
    /// [`WRITE_ENV`].
    pub fn write_missing(mut self, write: bool) -> Self {
        self.write = write;
        self
    }

    /// Runs the check; see [`check_committed`].
    ///
    /// # Errors
    /// [`ContractError::Broken`] with every [`Problem`] found; [`ContractError::Duplicate`]
    /// for an event type given twice; [`ContractError::EventType`] around a schema the
    /// checker cannot read; [`ContractError::Io`] and [`ContractError::Json`] for the files.
    pub fn check(&self, schemas: &[EventSchema]) -> Result<Report, ContractError> {
        let mut by_type: BTreeMap<&str, &EventSchema> = BTreeMap::new();
        for s in schemas {
            check_name(&s.event_type)?;
            if by_type.insert(&s.event_type, s).is_some() {
                return Err(ContractError::Duplicate {
                    what: "event type",
                    name: s.event_type.clone(),
                });
            }
        }
        let mut report = Report::default();
        let mut problems = Vec::new();
        for (&event_type, s) in &by_type {
            let in_type = |source| ContractError::EventType {
                event_type: event_type.to_owned(),
                source: Box::new(source),
            };
            let type_dir = self.dir.join(event_type);
            let committed = load_type_dir(&type_dir)?;
            let path = type_dir.join(format!("v{}.json", s.version));
            if let Some((newest, _)) = committed.last()
                && *newest > s.version
            {
                problems.push(Problem::AheadOfCode {
                    event_type: event_type.to_owned(),
                    committed: *newest,
                    current: s.version,
                });
            }
            let mut missing = false;
            match committed.iter().find(|(v, _)| *v == s.version) {
                Some((_, c)) if !json_eq(&shape(c), &shape(&s.schema)) => {
                    problems.push(Problem::Changed {
                        event_type: event_type.to_owned(),
                        version: s.version,
                        path: path.clone(),
                    });
                }
                Some((_, c)) if !json_eq(c, &s.schema) => {
                    if self.write {
                        write_schema(&path, &s.schema)?;
                        report.refreshed.push(path.clone());
                    } else {
                        report.stale.push(path.clone());
                    }
                }
                Some(_) => {}
                None => missing = true,
            }
            let mut history: Vec<(u32, Value)> = committed
                .into_iter()
                .filter(|(v, _)| *v < s.version)
                .collect();
            history.push((s.version, s.schema.clone()));
            let found = check_history(&history, self.mode).map_err(in_type)?;
            let compatible = found.is_empty();
            problems.extend(found.into_iter().map(|found| Problem::Incompatible {
                event_type: event_type.to_owned(),
                found,
            }));
            if missing {
                if !self.write {
                    problems.push(Problem::Missing {
                        event_type: event_type.to_owned(),
                        version: s.version,
                        path,
                    });
                } else if !compatible {
                    problems.push(Problem::NotWritten {
                        event_type: event_type.to_owned(),
                        version: s.version,
                        path,
                    });
                } else {
                    write_schema(&path, &s.schema)?;
                    report.written.push(path);
                }
            }
            report.checked.push((
                event_type.to_owned(),
                history.iter().map(|(v, _)| *v).collect(),
            ));
        }
        let known: BTreeSet<&str> = by_type.keys().copied().collect();
        report.uncovered = load_dir(&self.dir)?
            .into_keys()
            .filter(|t| !known.contains(t.as_str()))
            .collect();
        if problems.is_empty() {
            Ok(report)
        } else {
            Err(ContractError::Broken { problems })
        }
    }
}

/// Checks the schemas the code generates against the committed ones in `dir`:
///
/// * the file of each event type's current version, `<dir>/<event type>/v<N>.json`, must
///   have the generated schema's shape (documentation aside): a payload changed without a
///   version bump fails;
/// * each version must be compatible with the one before it under `mode` (with every
///   earlier one in a transitive mode);
/// * a missing file is written only when `ANNALS_SCHEMAS_WRITE=1` is set (and the new
///   version is compatible); otherwise it is a [`Problem::Missing`] telling the developer so.
///
/// ```
/// use annals_contracts::{Committed, ContractError, EventSchema, Mode, Problem, check_committed};
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let v1 = EventSchema::new("Opened", 1, json!({"type": "object",
///     "properties": {"owner": {"type": "string"}}, "required": ["owner"]}));
/// // Nothing committed yet, writing off: the error says how to write it.
/// let err = Committed::new(dir.path(), Mode::Backward)
///     .write_missing(false)
///     .check(&[v1.clone()])
///     .unwrap_err();
/// assert!(matches!(&err, ContractError::Broken { problems }
///     if matches!(problems[0], Problem::Missing { .. })));
/// assert!(err.to_string().contains("ANNALS_SCHEMAS_WRITE=1"));
/// // Writing on (what ANNALS_SCHEMAS_WRITE=1 does): the file is written.
/// let report = Committed::new(dir.path(), Mode::Backward)
///     .write_missing(true)
///     .check(&[v1.clone()])?;
/// assert_eq!(report.written, [dir.path().join("Opened/v1.json")]);
/// // Once committed, the same schema passes ...
/// check_committed(dir.path(), &[v1], Mode::Backward)?;
/// // ... and a changed shape under the same version fails.
/// let changed = EventSchema::new("Opened", 1, json!({"type": "object",
///     "properties": {"owner": {"type": "integer"}}, "required": ["owner"]}));
/// let err = check_committed(dir.path(), &[changed], Mode::Backward).unwrap_err();
/// assert!(matches!(&err, ContractError::Broken { problems }
///     if matches!(problems[0], Problem::Changed { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// As [`Committed::check`].
pub fn check_committed(
    dir: impl AsRef<Path>,
    schemas: &[EventSchema],
    mode: Mode,
) -> Result<Report, ContractError> {
    Committed::new(dir.as_ref(), mode).check(schemas)
}
