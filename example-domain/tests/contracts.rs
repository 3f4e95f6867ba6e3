//! The example domains' event contracts: the committed schemas in `schemas/` hold (a payload
//! changed without a version bump fails here), the schemas describe the exact JSON the
//! events are written as, and how a v1 → v2 evolution fares under each mode.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use annals::contracts::testing::assert_committed;
use annals::contracts::{
    Committed, ContractError, Direction, EventContracts, EventSchema, IncompatibilityKind, Mode,
    Problem, accepts, check, check_history,
};
use annals::{CodecId, DomainEvent};
use annals_example_domain::bank::AccountEvent;
use annals_example_domain::tickets::TicketEvent;

/// The mode the example domains keep: every version reads every other version's data —
/// replays of old events and consumers that have not upgraded yet both work.
const MODE: Mode = Mode::FullTransitive;

fn schemas_dir(domain: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(domain)
}

/// Writes missing files with `ANNALS_SCHEMAS_WRITE=1`; otherwise a missing file fails.
#[test]
fn committed_schemas_hold() {
    let bank = assert_committed(schemas_dir("bank"), &AccountEvent::event_schemas(), MODE);
    assert_eq!(bank.checked.len(), AccountEvent::event_types().len());
    let tickets = assert_committed(schemas_dir("tickets"), &TicketEvent::event_schemas(), MODE);
    assert_eq!(tickets.checked.len(), TicketEvent::event_types().len());
    assert!(bank.uncovered.is_empty() && tickets.uncovered.is_empty());
}

fn samples() -> (Vec<AccountEvent>, Vec<TicketEvent>) {
    (
        vec![
            AccountEvent::Opened {
                owner: "ada".into(),
            },
            AccountEvent::Deposited { amount: 500 },
            AccountEvent::Withdrew { amount: 20 },
        ],
        vec![
            TicketEvent::Opened {
                title: "Printer jams".into(),
                body: "A3 paper".into(),
                priority: 2,
            },
            TicketEvent::Commented {
                text: "Replaced the roller".into(),
            },
            TicketEvent::Assigned { to: "bob".into() },
            TicketEvent::PriorityChanged { priority: 1 },
            TicketEvent::Closed {
                reason: "fixed".into(),
            },
        ],
    )
}

fn schema_for<'a>(schemas: &'a [EventSchema], event_type: &str) -> &'a EventSchema {
    schemas.iter().find(|s| s.event_type == event_type).unwrap()
}

fn assert_describes<E: DomainEvent + EventContracts>(events: &[E]) {
    let schemas = E::event_schemas();
    assert_eq!(
        schemas
            .iter()
            .map(|s| (s.event_type.as_str(), s.version))
            .collect::<Vec<_>>(),
        E::event_types()
    );
    for e in events {
        let bytes = e.encode_payload(CodecId::JSON).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let own = schema_for(&schemas, e.event_type());
        assert_eq!(
            accepts(&own.schema, &json).unwrap(),
            Some(true),
            "{}: {json}",
            e.event_type()
        );
    }
}

#[test]
fn schemas_describe_the_json_payloads() {
    let (accounts, tickets) = samples();
    assert_describes(&accounts);
    assert_describes(&tickets);
    // Another type's payload does not fit.
    let schemas = TicketEvent::event_schemas();
    let comment = serde_json::json!({"text": "hi"});
    assert_eq!(
        accepts(&schema_for(&schemas, "Assigned").schema, &comment).unwrap(),
        Some(false)
    );
    // u8 priority: the schema knows its range.
    let opened = schema_for(&schemas, "Opened").schema.clone();
    let too_high = serde_json::json!({"title": "t", "body": "b", "priority": 256});
    assert_eq!(accepts(&opened, &too_high).unwrap(), Some(false));
}

/// Version 1 of the tickets' `Opened`, and four ways to make a version 2.
mod evolution {
    use annals::DomainEvent;
    use serde::{Deserialize, Serialize};

    pub(crate) mod v1 {
        use super::*;
        #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(schemas)]
        pub(crate) enum TicketEvent {
            Opened {
                title: String,
                body: String,
                priority: u8,
            },
        }
    }

    /// An optional field added: compatible every way.
    pub(crate) mod optional_added {
        use super::*;
        #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(schemas)]
        pub(crate) enum TicketEvent {
            #[event(version = 2)]
            Opened {
                title: String,
                body: String,
                priority: u8,
                due: Option<String>,
            },
        }
    }

    /// A required field removed: new readers cope, old readers miss it.
    pub(crate) mod required_removed {
        use super::*;
        #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(schemas)]
        pub(crate) enum TicketEvent {
            #[event(version = 2)]
            Opened { title: String, body: String },
        }
    }

    /// A required field added: old readers ignore it, new readers miss it in old events.
    pub(crate) mod required_added {
        use super::*;
        #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(schemas)]
        pub(crate) enum TicketEvent {
            #[event(version = 2)]
            Opened {
                title: String,
                body: String,
                priority: u8,
                team: String,
            },
        }
    }

    /// A field's type changed: neither way.
    pub(crate) mod retyped {
        use super::*;
        #[derive(DomainEvent, Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[event(schemas)]
        pub(crate) enum TicketEvent {
            #[event(version = 2)]
            Opened {
                title: String,
                body: String,
                priority: String,
            },
        }
    }
}

fn opened<E: EventContracts>() -> EventSchema {
    E::event_schemas().remove(0)
}

/// Which modes a v1 → v2 change passes: `[backward, forward]` (full, and the transitive
/// modes over the two versions, follow from them).
fn verdicts(v2: &EventSchema) -> (bool, bool) {
    let v1 = opened::<evolution::v1::TicketEvent>();
    let history = [(1, v1.schema.clone()), (2, v2.schema.clone())];
    let ok = |mode| check(&v1.schema, &v2.schema, mode).unwrap().is_empty();
    let (backward, forward) = (ok(Mode::Backward), ok(Mode::Forward));
    for mode in Mode::ALL {
        let expected = mode.directions().iter().all(|d| {
            if *d == Direction::Backward {
                backward
            } else {
                forward
            }
        });
        assert_eq!(ok(mode), expected, "{mode}");
        assert_eq!(
            check_history(&history, mode).unwrap().is_empty(),
            expected,
            "{mode} over the history"
        );
    }
    (backward, forward)
}

#[test]
fn an_added_optional_field_is_compatible_under_every_mode() {
    let v2 = opened::<evolution::optional_added::TicketEvent>();
    assert_eq!(v2.version, 2);
    assert_eq!(verdicts(&v2), (true, true));
}

#[test]
fn a_removed_required_field_is_backward_but_not_forward_compatible() {
    let v1 = opened::<evolution::v1::TicketEvent>();
    let v2 = opened::<evolution::required_removed::TicketEvent>();
    assert_eq!(verdicts(&v2), (true, false));
    let found = check(&v1.schema, &v2.schema, Mode::Full).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].direction, Direction::Forward);
    assert_eq!(found[0].path, "");
    assert_eq!(
        found[0].kind,
        IncompatibilityKind::RequiredPropertyAdded {
            property: "priority".into()
        }
    );
}

#[test]
fn an_added_required_field_is_forward_but_not_backward_compatible() {
    let v2 = opened::<evolution::required_added::TicketEvent>();
    assert_eq!(verdicts(&v2), (false, true));
}

#[test]
fn a_changed_field_type_is_compatible_under_no_mode() {
    let v1 = opened::<evolution::v1::TicketEvent>();
    let v2 = opened::<evolution::retyped::TicketEvent>();
    assert_eq!(verdicts(&v2), (false, false));
    let found = check(&v1.schema, &v2.schema, Mode::Full).unwrap();
    let at: Vec<(Direction, &str)> = found
        .iter()
        .map(|f| (f.direction, f.path.as_str()))
        .collect();
    assert_eq!(
        at,
        [
            (Direction::Backward, "/priority"),
            (Direction::Forward, "/priority")
        ]
    );
    assert!(
        found
            .iter()
            .all(|f| matches!(f.kind, IncompatibilityKind::TypeChanged { .. })),
        "{found:?}"
    );
    assert!(found[0].to_string().contains("integer"), "{}", found[0]);
}

/// The whole workflow on a scratch directory: commit v1, bump to a compatible v2 (written),
/// try an incompatible v2 (refused, not written), change v2's shape without a bump (fails).
#[test]
fn the_bump_workflow_on_committed_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |schemas: &[EventSchema], write: bool| {
        Committed::new(dir.path(), MODE)
            .write_missing(write)
            .check(schemas)
    };
    let problems = |r: Result<_, ContractError>| match r {
        Err(ContractError::Broken { problems }) => problems,
        other => panic!("expected problems, got {other:?}"),
    };
    let v1 = opened::<evolution::v1::TicketEvent>();
    assert!(matches!(
        problems(run(std::slice::from_ref(&v1), false))[..],
        [Problem::Missing { version: 1, .. }]
    ));
    let report = run(std::slice::from_ref(&v1), true).unwrap();
    assert_eq!(report.written, [dir.path().join("Opened/v1.json")]);
    let text = std::fs::read_to_string(dir.path().join("Opened/v1.json")).unwrap();
    assert!(
        text.ends_with("}\n") && text.contains("\n  \"$schema\""),
        "{text}"
    );

    // An incompatible v2 is refused and not written, even with writing on.
    let bad = opened::<evolution::retyped::TicketEvent>();
    let found = problems(run(std::slice::from_ref(&bad), true));
    assert!(
        found
            .iter()
            .any(|p| matches!(p, Problem::NotWritten { version: 2, .. }))
    );
    assert!(found.iter().any(
        |p| matches!(p, Problem::Incompatible { found, .. } if found.older == 1 && found.newer == 2)
    ));
    assert!(!dir.path().join("Opened/v2.json").exists());

    // A compatible v2 is written next to v1.
    let good = opened::<evolution::optional_added::TicketEvent>();
    let report = run(std::slice::from_ref(&good), true).unwrap();
    assert_eq!(report.written, [dir.path().join("Opened/v2.json")]);
    assert_eq!(report.checked, [("Opened".to_owned(), vec![1, 2])]);

    // v2's shape changed without a bump (the retyped payload, still version 2): fails, even
    // with writing on — committed files are never overwritten.
    let err = run(std::slice::from_ref(&bad), true).unwrap_err();
    assert!(err.to_string().contains("#[event(version = 3)]"), "{err}");
    assert!(matches!(
        &err,
        ContractError::Broken { problems } if problems.iter().any(|p| matches!(p, Problem::Changed { version: 2, .. }))
    ));

    // Going back to v1 in the code, with v2 committed: flagged.
    let found = problems(run(std::slice::from_ref(&v1), false));
    assert!(matches!(
        found[..],
        [Problem::AheadOfCode {
            committed: 2,
            current: 1,
            ..
        }]
    ));
}
