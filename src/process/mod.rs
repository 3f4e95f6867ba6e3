//! Process managers (sagas): long-running processes that react to events of several
//! aggregates, send commands, set deadlines and compensate when a step fails.
//!
//! A [`Process`] is started by an event, receives the further events [`Process::route`]
//! correlates to it (by a key, e.g. an order id), and decides on each [`Trigger`] — an event,
//! a rejected command, a deadline — a [`Decision`]: its own events (its state is
//! event-sourced in its own stream `<TYPE>-<key>`), commands to send, deadlines to set or
//! cancel, and at most once a terminal [`Outcome`].
//!
//! The [`ProcessRunner`] follows the global log and lands each reaction **atomically** with
//! [`EventStore::append_many`](annals_core::EventStore::append_many): the record that the
//! triggering event was received, the process's events, the commands issued, the deadlines
//! set, and the events the commands caused on local aggregates (decided through
//! [`Dispatch`] into a [`Work`]) all land together or not at all. A crash at any moment
//! leaves either the whole reaction or none of it; the runner's checkpoint then brings the
//! event back and the reaction is decided again. Each command's id derives from (process,
//! step), so its events' ids do too.
//!
//! The process's stream can be read like an aggregate's:
//! `Repository::<ProcessState<P>, _>::new(store)` gives `load`, `load_at`, `history`.
//!
//! See `docs/processes.md` for a walk-through and the guarantees.

mod clock;
mod deadlines;
mod reactor;
mod record;
mod remote;
mod runner;
mod work;

use std::fmt::Debug;
use std::time::Duration;

use annals_core::{DomainEvent, Error, RecordedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use clock::{Clock, ManualClock, SystemClock};
pub use record::{CommandIssued, ProcessRecord, ProcessState, Received, process_uuid};
pub use remote::{REMOTE_REJECTION, RemoteCommand, outbox_filter};
pub use runner::{ProcessConfig, ProcessError, ProcessHandle, ProcessRunner, ProcessStatus};
pub use work::{Dispatch, DispatchError, Work};

/// A long-running process: correlates events to instances by a key, keeps state (its own
/// events), decides commands, deadlines and compensations.
///
/// `react` is pure like an aggregate's `handle`: it looks at the state and the trigger and
/// returns a [`Decision`]; the runner records it and carries it out.
pub trait Process:
    Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The process type: the prefix of its streams (`<TYPE>-<key>`).
    const TYPE: &'static str;
    /// The process's own events (its state changes).
    type Event: DomainEvent + Clone + Debug;
    /// What [`Process::route`] makes of an incoming event.
    type Input: Clone + Debug + Send + Sync + 'static;
    /// The commands it sends (usually an enum over the target aggregates' commands).
    type Command: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// Which process instance `event` is for, whether it may start one, and what it says;
    /// `Ok(None)` for an event the process ignores. Called for every event of the log but
    /// the process's own.
    ///
    /// # Errors
    /// An event of a type it reads whose payload cannot be decoded: the runner logs it and
    /// goes on (the event stays in the store).
    fn route(event: &RecordedEvent) -> Result<Option<Routed<Self::Input>>, Error>;

    /// Decides what `trigger` causes.
    fn react(&self, trigger: &Trigger<Self>) -> Decision<Self>;

    /// Folds one of the process's own events into its state.
    fn apply(&mut self, event: &Self::Event);
}

/// What [`Process::route`] found: the instance's key and the decoded input.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Routed<I> {
    /// The process instance (its stream is `<TYPE>-<key>`).
    pub key: String,
    /// Whether the event may start the process (an event that may not is ignored while the
    /// process has not started).
    pub starts: bool,
    /// The decoded event.
    pub input: I,
}

impl<I> Routed<I> {
    /// An event that starts process `key` (or continues it, if it runs).
    pub fn start(key: impl Into<String>, input: I) -> Self {
        Self {
            key: key.into(),
            starts: true,
            input,
        }
    }

    /// An event for process `key`, ignored unless the process has started.
    pub fn to(key: impl Into<String>, input: I) -> Self {
        Self {
            key: key.into(),
            starts: false,
            input,
        }
    }
}

/// What a process reacts to.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Trigger<P: Process> {
    /// An event routed to it.
    Event(P::Input),
    /// A command it sent was rejected by its target (a domain error).
    Rejected {
        /// The step that sent it.
        step: u64,
        /// The command.
        command: P::Command,
        /// The target's error, as text.
        reason: String,
    },
    /// A deadline it set has passed (and was not cancelled first).
    Deadline {
        /// The deadline's name.
        name: String,
    },
}

/// How a process ended: exactly one of these, once.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Outcome {
    /// Every step succeeded.
    Completed,
    /// A step failed or timed out and what was done was undone.
    Compensated {
        /// Why.
        reason: String,
    },
    /// It could not go on and could not be compensated.
    Failed {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// `"completed"`, `"compensated"` or `"failed"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Compensated { .. } => "compensated",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// What a process decided on one trigger. Built with its methods:
///
/// ```
/// # use annals::process::*;
/// # use std::time::Duration;
/// # fn f<P: Process>(cmd: P::Command, e: P::Event) -> Decision<P> {
/// Decision::new()
///     .record(e)
///     .send(cmd)
///     .deadline("payment", Duration::from_secs(30))
/// # }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Decision<P: Process> {
    /// The process's own events, applied in order.
    pub events: Vec<P::Event>,
    /// Commands to send, in order.
    pub commands: Vec<P::Command>,
    /// Deadlines to set (name, due after): a name set again is moved.
    pub deadlines: Vec<(String, Duration)>,
    /// Deadlines to cancel.
    pub cancel: Vec<String>,
    /// The terminal outcome, if this ends the process (ignored if it has ended already).
    pub end: Option<Outcome>,
}

impl<P: Process> Default for Decision<P> {
    fn default() -> Self {
        Self {
            events: Vec::new(),
            commands: Vec::new(),
            deadlines: Vec::new(),
            cancel: Vec::new(),
            end: None,
        }
    }
}

impl<P: Process> Decision<P> {
    /// Nothing to do.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one of the process's events.
    pub fn record(mut self, event: P::Event) -> Self {
        self.events.push(event);
        self
    }

    /// Sends a command.
    pub fn send(mut self, command: P::Command) -> Self {
        self.commands.push(command);
        self
    }

    /// Sets deadline `name` to pass `after` from now (by the runner's clock).
    pub fn deadline(mut self, name: impl Into<String>, after: Duration) -> Self {
        self.deadlines.push((name.into(), after));
        self
    }

    /// Cancels deadline `name` (nothing if it is not set).
    pub fn cancel(mut self, name: impl Into<String>) -> Self {
        self.cancel.push(name.into());
        self
    }

    /// Ends the process: every step succeeded.
    pub fn complete(self) -> Self {
        self.end(Outcome::Completed)
    }

    /// Ends the process: compensated, because of `reason`.
    pub fn compensated(self, reason: impl Into<String>) -> Self {
        self.end(Outcome::Compensated {
            reason: reason.into(),
        })
    }

    /// Ends the process: failed, because of `reason`.
    pub fn fail(self, reason: impl Into<String>) -> Self {
        self.end(Outcome::Failed {
            reason: reason.into(),
        })
    }

    /// Ends the process with `outcome`.
    pub fn end(mut self, outcome: Outcome) -> Self {
        self.end = Some(outcome);
        self
    }
}
