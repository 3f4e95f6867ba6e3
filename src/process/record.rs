//! What a process's stream holds ([`ProcessRecord`]) and the state folded from it
//! ([`ProcessState`]): the process's own state plus what the runner needs to act exactly
//! once — the events received, the steps taken, the deadlines pending, the outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

use annals_core::{Aggregate, CodecId, DomainEvent, Error, EventId, Position, Timestamp, Uuid};
use serde::{Deserialize, Serialize};

use super::{Outcome, Process};

/// The id of process `key` of type `process_type`: the correlation id of everything it
/// records and causes, and the namespace of its commands' ids.
///
/// ```
/// use annals::process::process_uuid;
/// assert_eq!(process_uuid("order", "o-1"), process_uuid("order", "o-1"));
/// assert_ne!(process_uuid("order", "o-1"), process_uuid("order", "o-2"));
/// ```
pub fn process_uuid(process_type: &str, key: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("annals:process:{process_type}/{key}").as_bytes(),
    )
}

/// The id of the command a process sends at `step`: the same after any number of crashes,
/// so a target that executes it twice (with this id) appends nothing twice.
pub(crate) fn command_uuid(process: Uuid, step: u64) -> Uuid {
    Uuid::new_v5(&process, format!("step-{step}").as_bytes())
}

/// The record that an event of the log was handled by the process (it is never handled
/// again).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Received {
    /// The event's id.
    pub event: EventId,
    /// Its stream.
    pub stream: String,
    /// Its position in the log.
    pub position: Position,
    /// Its type.
    pub event_type: String,
}

/// A command the process sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CommandIssued<C> {
    /// The process's step number (from 1).
    pub step: u64,
    /// The command's id: derived from the process and the step.
    pub command_id: Uuid,
    /// The command.
    pub command: C,
}

#[derive(Serialize, Deserialize)]
struct RejectedPayload {
    step: u64,
    reason: String,
}

#[derive(Serialize, Deserialize)]
struct DeadlinePayload {
    name: String,
    due: Timestamp,
}

#[derive(Serialize, Deserialize)]
struct NamePayload {
    name: String,
}

/// One event of a process's stream.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ProcessRecord<P: Process> {
    /// An event of the log was handled.
    Received(Received),
    /// One of the process's own events.
    Event(P::Event),
    /// A command was sent.
    CommandIssued(CommandIssued<P::Command>),
    /// The command of `step` was rejected by its target.
    CommandRejected {
        /// Its step.
        step: u64,
        /// The target's error.
        reason: String,
    },
    /// A deadline was set (or moved).
    DeadlineSet {
        /// Its name.
        name: String,
        /// When it passes.
        due: Timestamp,
    },
    /// A deadline was cancelled before it passed.
    DeadlineCancelled {
        /// Its name.
        name: String,
    },
    /// A deadline passed and the process reacted to it.
    DeadlineFired {
        /// Its name.
        name: String,
    },
    /// The process ended.
    Ended(Outcome),
}

/// The type names of the runner's records (the process's own events keep theirs).
pub(crate) mod names {
    pub(crate) const RECEIVED: &str = "process.Received";
    pub(crate) const ISSUED: &str = "process.CommandIssued";
    pub(crate) const REJECTED: &str = "process.CommandRejected";
    pub(crate) const DEADLINE_SET: &str = "process.DeadlineSet";
    pub(crate) const DEADLINE_CANCELLED: &str = "process.DeadlineCancelled";
    pub(crate) const DEADLINE_FIRED: &str = "process.DeadlineFired";
    pub(crate) const ENDED: &str = "process.Ended";
}

const RUNNER_TYPES: &[(&str, u32)] = &[
    (names::RECEIVED, 1),
    (names::ISSUED, 1),
    (names::REJECTED, 1),
    (names::DEADLINE_SET, 1),
    (names::DEADLINE_CANCELLED, 1),
    (names::DEADLINE_FIRED, 1),
    (names::ENDED, 1),
];

impl<P: Process> DomainEvent for ProcessRecord<P> {
    fn event_type(&self) -> &'static str {
        match self {
            ProcessRecord::Received(_) => names::RECEIVED,
            ProcessRecord::Event(e) => e.event_type(),
            ProcessRecord::CommandIssued(_) => names::ISSUED,
            ProcessRecord::CommandRejected { .. } => names::REJECTED,
            ProcessRecord::DeadlineSet { .. } => names::DEADLINE_SET,
            ProcessRecord::DeadlineCancelled { .. } => names::DEADLINE_CANCELLED,
            ProcessRecord::DeadlineFired { .. } => names::DEADLINE_FIRED,
            ProcessRecord::Ended(_) => names::ENDED,
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            ProcessRecord::Event(e) => e.schema_version(),
            _ => 1,
        }
    }

    /// The runner's record types; the process's own are `P::Event::event_types()`.
    fn event_types() -> &'static [(&'static str, u32)] {
        RUNNER_TYPES
    }

    fn current_schema_version(event_type: &str) -> Option<u32> {
        RUNNER_TYPES
            .iter()
            .find(|(t, _)| *t == event_type)
            .map(|(_, v)| *v)
            .or_else(|| P::Event::current_schema_version(event_type))
    }

    fn encode_payload(&self, codec: CodecId) -> Result<Vec<u8>, Error> {
        let t = self.event_type();
        match self {
            ProcessRecord::Received(r) => codec.encode(t, r),
            ProcessRecord::Event(e) => e.encode_payload(codec),
            ProcessRecord::CommandIssued(c) => codec.encode(t, c),
            ProcessRecord::CommandRejected { step, reason } => codec.encode(
                t,
                &RejectedPayload {
                    step: *step,
                    reason: reason.clone(),
                },
            ),
            ProcessRecord::DeadlineSet { name, due } => codec.encode(
                t,
                &DeadlinePayload {
                    name: name.clone(),
                    due: *due,
                },
            ),
            ProcessRecord::DeadlineCancelled { name } | ProcessRecord::DeadlineFired { name } => {
                codec.encode(t, &NamePayload { name: name.clone() })
            }
            ProcessRecord::Ended(o) => codec.encode(t, o),
        }
    }

    fn decode_payload(event_type: &str, codec: CodecId, bytes: &[u8]) -> Result<Self, Error> {
        let t = event_type;
        Ok(match t {
            names::RECEIVED => ProcessRecord::Received(codec.decode(t, bytes)?),
            names::ISSUED => ProcessRecord::CommandIssued(codec.decode(t, bytes)?),
            names::REJECTED => {
                let p: RejectedPayload = codec.decode(t, bytes)?;
                ProcessRecord::CommandRejected {
                    step: p.step,
                    reason: p.reason,
                }
            }
            names::DEADLINE_SET => {
                let p: DeadlinePayload = codec.decode(t, bytes)?;
                ProcessRecord::DeadlineSet {
                    name: p.name,
                    due: p.due,
                }
            }
            names::DEADLINE_CANCELLED => {
                let p: NamePayload = codec.decode(t, bytes)?;
                ProcessRecord::DeadlineCancelled { name: p.name }
            }
            names::DEADLINE_FIRED => {
                let p: NamePayload = codec.decode(t, bytes)?;
                ProcessRecord::DeadlineFired { name: p.name }
            }
            names::ENDED => ProcessRecord::Ended(codec.decode(t, bytes)?),
            other => ProcessRecord::Event(P::Event::decode_payload(other, codec, bytes)?),
        })
    }
}

/// A process's state as folded from its stream: the process's own state and the runner's
/// bookkeeping. An [`Aggregate`] (without commands), so that
/// `Repository::<ProcessState<P>, _>` loads, time-travels and lists a process's history.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessState<P> {
    /// The process's own state.
    pub state: P,
    received: BTreeSet<EventId>,
    deadlines: BTreeMap<String, Timestamp>,
    steps: u64,
    outcome: Option<Outcome>,
}

impl<P: Process> ProcessState<P> {
    /// Whether the event `id` was handled.
    pub fn has_received(&self, id: EventId) -> bool {
        self.received.contains(&id)
    }

    /// How many commands it has sent (the last step's number).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// When deadline `name` passes, if it is set.
    pub fn deadline(&self, name: &str) -> Option<Timestamp> {
        self.deadlines.get(name).copied()
    }

    /// Every deadline set and not yet passed or cancelled.
    pub fn deadlines(&self) -> impl Iterator<Item = (&str, Timestamp)> {
        self.deadlines.iter().map(|(n, t)| (n.as_str(), *t))
    }

    /// How it ended, if it has.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

impl<P: Process> Aggregate for ProcessState<P> {
    const TYPE: &'static str = P::TYPE;
    type Command = ();
    type Event = ProcessRecord<P>;
    type Error = Infallible;
    type Services = ();

    /// Processes are not commanded; the runner writes their streams.
    fn handle(&self, _: &(), _: &()) -> Result<Vec<ProcessRecord<P>>, Infallible> {
        Ok(Vec::new())
    }

    fn apply(&mut self, record: &ProcessRecord<P>) {
        match record {
            ProcessRecord::Received(r) => {
                self.received.insert(r.event);
            }
            ProcessRecord::Event(e) => self.state.apply(e),
            ProcessRecord::CommandIssued(c) => self.steps = self.steps.max(c.step),
            ProcessRecord::CommandRejected { .. } => {}
            ProcessRecord::DeadlineSet { name, due } => {
                self.deadlines.insert(name.clone(), *due);
            }
            ProcessRecord::DeadlineCancelled { name } | ProcessRecord::DeadlineFired { name } => {
                self.deadlines.remove(name);
            }
            ProcessRecord::Ended(o) => {
                if self.outcome.is_none() {
                    self.outcome = Some(o.clone());
                }
            }
        }
    }
}
