//! Carrying out a process's commands: a [`Dispatch`] decides each command on its target
//! aggregate into a [`Work`] — the appends a reaction makes besides the process's own —
//! which the runner lands together with the process's record in one `append_many`.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;

use annals_core::{Error, Metadata, StreamAppend, StreamId, Uuid, Version};

use super::Process;
use crate::repository::RepositoryError;

/// Sends a process's commands to their targets: usually a `match` over the process's command
/// type calling [`Repository::decide_into`](crate::Repository::decide_into) on the target's
/// repository.
///
/// A target's domain error is a [`DispatchError::Rejected`]: the process gets it as
/// [`Trigger::Rejected`](super::Trigger::Rejected) and may compensate. Any other error makes
/// the runner decide the whole reaction again later.
pub trait Dispatch<P: Process>: Send + Sync + 'static {
    /// Decides `command` into `work`.
    ///
    /// # Errors
    /// [`DispatchError::Rejected`] when the target refuses it; [`DispatchError::Store`] when
    /// the target cannot be loaded.
    fn dispatch(
        &self,
        command: &P::Command,
        work: &mut Work,
    ) -> impl Future<Output = Result<(), DispatchError>> + Send;
}

/// Why a command was not carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The target refused it (a domain error, as text).
    #[error("rejected: {reason}")]
    Rejected {
        /// The target's error.
        reason: String,
    },
    /// The target could not be reached or loaded.
    #[error(transparent)]
    Store(#[from] Error),
}

impl DispatchError {
    /// A rejection for `reason`.
    pub fn rejected(reason: impl Into<String>) -> Self {
        DispatchError::Rejected {
            reason: reason.into(),
        }
    }
}

impl<E: std::error::Error> From<RepositoryError<E>> for DispatchError {
    fn from(e: RepositoryError<E>) -> Self {
        match e {
            RepositoryError::Domain(e) => DispatchError::rejected(e.to_string()),
            RepositoryError::Store(e) => DispatchError::Store(e),
        }
    }
}

/// A state decided in this work, and the version it is at.
type Decided = (Box<dyn Any + Send>, Version);
/// What to do once the work has landed (`true`) or failed (`false`): caches learn or forget.
type Landed = Box<dyn FnOnce(bool) + Send>;

/// The appends one reaction makes to aggregates, decided but not yet stored: each command's
/// events with the command's id (so their event ids derive from it) and metadata.
pub struct Work {
    command_id: Uuid,
    metadata: Metadata,
    parts: Vec<StreamAppend>,
    states: HashMap<StreamId, Decided>,
    landed: Vec<Landed>,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Work")
            .field("command_id", &self.command_id)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl Work {
    /// Empty work for commands with id `command_id` and `metadata`.
    pub fn new(command_id: Uuid, metadata: Metadata) -> Self {
        Self {
            command_id,
            metadata,
            parts: Vec::new(),
            states: HashMap::new(),
            landed: Vec::new(),
        }
    }

    /// The id of the command being decided.
    pub fn command_id(&self) -> Uuid {
        self.command_id
    }

    /// The metadata of its events.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The appends decided so far.
    pub fn parts(&self) -> &[StreamAppend] {
        &self.parts
    }

    /// Decides the next command, with id `command_id` and `metadata`.
    pub(crate) fn next_command(&mut self, command_id: Uuid, metadata: Metadata) {
        self.command_id = command_id;
        self.metadata = metadata;
    }

    /// The state of `stream` as decided in this work so far, if a command changed it.
    pub(crate) fn state<A: Clone + 'static>(&self, stream: &StreamId) -> Option<(A, Version)> {
        let (state, version) = self.states.get(stream)?;
        state.downcast_ref::<A>().map(|a| (a.clone(), *version))
    }

    /// Adds one command's events, decided on their stream's state; `state` is the state
    /// after them, at version `after`; `landed` is told whether they were stored.
    pub(crate) fn add<A: Send + 'static>(
        &mut self,
        part: StreamAppend,
        state: A,
        after: Version,
        landed: impl FnOnce(bool) + Send + 'static,
    ) {
        self.states
            .insert(part.stream.clone(), (Box::new(state), after));
        self.parts.push(part);
        self.landed.push(Box::new(landed));
    }

    /// The appends, and what to tell once they landed or failed.
    pub(crate) fn into_parts(self) -> (Vec<StreamAppend>, Vec<Landed>) {
        (self.parts, self.landed)
    }
}
