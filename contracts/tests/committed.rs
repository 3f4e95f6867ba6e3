//! Committed schema files: layout, stable text, and every problem `check_committed` reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use annals_contracts::{
    Committed, ContractError, EventSchema, Mode, Problem, load_dir, schema_file, shape,
    to_stable_json,
};
use serde_json::{Value, json};

fn opened(owner: Value, doc: &str) -> EventSchema {
    EventSchema::new(
        "Opened",
        1,
        json!({"type": "object", "description": doc,
            "properties": {"owner": owner, "title": {"type": "string", "title": "not a keyword here"}},
            "required": ["owner"]}),
    )
}

fn run(
    dir: &Path,
    schemas: &[EventSchema],
    write: bool,
) -> Result<annals_contracts::Report, ContractError> {
    Committed::new(dir, Mode::FullTransitive)
        .write_missing(write)
        .check(schemas)
}

fn problems(r: Result<annals_contracts::Report, ContractError>) -> Vec<Problem> {
    match r {
        Err(ContractError::Broken { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn files_are_written_stably_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = opened(json!({"type": "string"}), "v1");
    let report = run(dir.path(), std::slice::from_ref(&s), true).unwrap();
    let path = dir.path().join("Opened/v1.json");
    assert_eq!(report.written, std::slice::from_ref(&path));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, to_stable_json(&s.schema));
    assert!(text.ends_with("}\n"));
    // Sorted keys: "description" before "properties" before "required" before "type".
    let order: Vec<usize> = [
        "\"description\"",
        "\"properties\"",
        "\"required\"",
        "\"type\": \"object\"",
    ]
    .iter()
    .map(|k| text.find(k).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    // Read back: the same; a second run writes nothing.
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded["Opened"], [(1, s.schema.clone())]);
    let again = run(dir.path(), &[s], true).unwrap();
    assert!(again.written.is_empty() && again.refreshed.is_empty());
    assert_eq!(again.checked, [("Opened".to_owned(), vec![1])]);
}

#[test]
fn documentation_changes_are_not_shape_changes() {
    let dir = tempfile::tempdir().unwrap();
    run(
        dir.path(),
        &[opened(json!({"type": "string"}), "old words")],
        true,
    )
    .unwrap();
    let reworded = opened(json!({"type": "string"}), "new words");
    // Writing off: reported as stale, not a failure.
    let report = run(dir.path(), std::slice::from_ref(&reworded), false).unwrap();
    assert_eq!(report.stale, [dir.path().join("Opened/v1.json")]);
    // Writing on: refreshed.
    let report = run(dir.path(), std::slice::from_ref(&reworded), true).unwrap();
    assert_eq!(report.refreshed, [dir.path().join("Opened/v1.json")]);
    assert!(
        run(dir.path(), &[reworded], false)
            .unwrap()
            .stale
            .is_empty()
    );
    // `shape` strips documentation keywords, not properties that happen to be named so.
    let s = shape(&opened(json!({"type": "string"}), "x").schema);
    assert!(s.get("description").is_none());
    assert!(s["properties"].get("title").is_some());
    assert!(s["properties"]["title"].get("title").is_none());
}

#[test]
fn a_changed_shape_without_a_bump_fails_even_with_writing_on() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &[opened(json!({"type": "string"}), "")], true).unwrap();
    let before = std::fs::read_to_string(dir.path().join("Opened/v1.json")).unwrap();
    let changed = opened(json!({"type": ["string", "null"]}), "");
    let found = problems(run(dir.path(), &[changed], true));
    assert!(
        matches!(&found[..], [Problem::Changed { version: 1, .. }]),
        "{found:?}"
    );
    assert!(
        found[0].to_string().contains("#[event(version = 2)]"),
        "{}",
        found[0]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("Opened/v1.json")).unwrap(),
        before
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), &[opened(json!({"type": "string"}), "")], true).unwrap();
    let mut v2 = opened(json!({"type": "integer"}), "");
    v2.version = 2;
    let other = EventSchema::new("Closed", 1, json!({"type": "null"}));
    let err = run(dir.path(), &[v2, other], false).unwrap_err();
    let text = err.to_string();
    let ContractError::Broken { problems } = err else {
        panic!()
    };
    // Closed: missing. Opened: v1 → v2 incompatible both ways, and missing.
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::Missing { event_type, .. } if event_type == "Closed"))
    );
    assert!(problems.iter().any(
        |p| matches!(p, Problem::Missing { event_type, version: 2, .. } if event_type == "Opened")
    ));
    assert_eq!(
        problems
            .iter()
            .filter(|p| matches!(p, Problem::Incompatible { .. }))
            .count(),
        2
    );
    assert!(
        text.starts_with("4 event contract problem(s):\n  - "),
        "{text}"
    );
    assert!(
        text.contains("Opened v1 -> v2: backward /owner: "),
        "{text}"
    );
    assert!(text.contains("ANNALS_SCHEMAS_WRITE=1"), "{text}");
}

#[test]
fn committed_types_the_code_lost_are_reported_not_failed() {
    let dir = tempfile::tempdir().unwrap();
    let closed = EventSchema::new("Closed", 1, json!({"type": "null"}));
    run(
        dir.path(),
        &[opened(json!({"type": "string"}), ""), closed],
        true,
    )
    .unwrap();
    let report = run(dir.path(), &[opened(json!({"type": "string"}), "")], false).unwrap();
    assert_eq!(report.uncovered, ["Closed"]);
}

#[test]
fn bad_input_is_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", ".", "..", "a/b", "a\\b"] {
        let s = EventSchema::new(name, 1, json!(true));
        assert!(
            matches!(
                run(dir.path(), &[s], true),
                Err(ContractError::EventTypeName { .. })
            ),
            "{name:?}"
        );
        assert!(schema_file(name, 1).is_err());
    }
    let s = EventSchema::new("A", 1, json!(true));
    assert!(matches!(
        run(dir.path(), &[s.clone(), s], true),
        Err(ContractError::Duplicate {
            what: "event type",
            ..
        })
    ));
    // A file that is not JSON.
    std::fs::create_dir_all(dir.path().join("B")).unwrap();
    std::fs::write(dir.path().join("B/v1.json"), "{").unwrap();
    let err = run(dir.path(), &[EventSchema::new("B", 1, json!(true))], true).unwrap_err();
    assert!(matches!(err, ContractError::Json { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
    // A schema the checker cannot read, with the event type named.
    let err = run(
        dir.path(),
        &[EventSchema::new(
            "C",
            1,
            json!({"type": "string", "if": {}}),
        )],
        true,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ContractError::EventType { event_type, .. } if event_type == "C"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`if`"), "{err}");
    // Files that are not `v<N>.json` are ignored.
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("D")).unwrap();
    for f in ["README.md", "v0.json", "v01.json", "vx.json"] {
        std::fs::write(other.path().join("D").join(f), "not json").unwrap();
    }
    std::fs::write(other.path().join("D/v10.json"), "true").unwrap();
    std::fs::write(other.path().join("D/v9.json"), "false").unwrap();
    std::fs::write(other.path().join("notes.txt"), "").unwrap();
    let loaded = load_dir(other.path()).unwrap();
    assert_eq!(loaded["D"], [(9, json!(false)), (10, json!(true))]);
    assert!(
        load_dir(other.path().join("nothing here"))
            .unwrap()
            .is_empty()
    );
}
