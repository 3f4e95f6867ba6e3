//! One reaction: load the process, let it decide on a trigger (and on the rejections its
//! commands meet, round after round), dispatch its commands into a [`Work`], and land the
//! process's records with the work in one `append_many`.

use std::collections::VecDeque;
use std::sync::Arc;

use annals_core::{
    DomainEvent, Error, EventData, EventStore, ExpectedVersion, Metadata, RecordedEvent,
    SnapshotStore, StreamAppend, StreamId, Timestamp, Uuid, Version,
};

use super::record::command_uuid;
use super::{
    Clock, CommandIssued, Dispatch, DispatchError, Process, ProcessRecord, ProcessState, Received,
    Routed, Trigger, Work, process_uuid,
};
use crate::Repository;

/// The record that `event` was handled.
fn received<P: Process>(event: &RecordedEvent) -> ProcessRecord<P> {
    ProcessRecord::Received(Received {
        event: event.id,
        stream: event.stream.to_string(),
        position: event.position,
        event_type: event.event_type.clone(),
    })
}

/// What became of a trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reacted {
    /// The reaction landed.
    Landed,
    /// Nothing to do: the process has not started, or handled this already.
    Skipped,
}

/// Decides and lands reactions of processes of type `P`.
pub(super) struct Reactor<P: Process, S, D> {
    pub(super) store: S,
    pub(super) processes: Repository<ProcessState<P>, S>,
    pub(super) dispatch: Arc<D>,
    pub(super) clock: Arc<dyn Clock>,
    /// The most rounds (trigger, rejections of its commands, ...) in one reaction.
    pub(super) max_rounds: usize,
}

impl<P, S, D> Reactor<P, S, D>
where
    P: Process,
    S: EventStore + SnapshotStore,
    D: Dispatch<P>,
{
    /// Reacts to `event`, routed to `routed.key`, unless the process handled it already (or
    /// has not started and the event does not start it).
    pub(super) async fn on_event(
        &self,
        event: &RecordedEvent,
        routed: &Routed<P::Input>,
    ) -> Result<Reacted, Error> {
        let lead = vec![received(event)];
        let trigger = Trigger::Event(routed.input.clone());
        let starts = routed.starts;
        self.react(
            &routed.key,
            lead,
            trigger,
            Some(*event.id.as_uuid()),
            |state, version| (version > Version::NONE || starts) && !state.has_received(event.id),
        )
        .await
    }

    /// Hands the process `key` the rejection (in `event`, from another service) of the
    /// command it sent at `issued.step`, unless it had it already.
    pub(super) async fn on_rejected(
        &self,
        event: &RecordedEvent,
        key: &str,
        issued: &CommandIssued<P::Command>,
        reason: &str,
    ) -> Result<Reacted, Error> {
        let lead = vec![
            received(event),
            ProcessRecord::CommandRejected {
                step: issued.step,
                reason: reason.to_owned(),
            },
        ];
        let trigger = Trigger::Rejected {
            step: issued.step,
            command: issued.command.clone(),
            reason: reason.to_owned(),
        };
        self.react(
            key,
            lead,
            trigger,
            Some(*event.id.as_uuid()),
            |state, version| version > Version::NONE && !state.has_received(event.id),
        )
        .await
    }

    /// Fires deadline `name` of process `key` if it is still set for `due` and has passed.
    pub(super) async fn on_deadline(
        &self,
        key: &str,
        name: &str,
        due: Timestamp,
    ) -> Result<Reacted, Error> {
        let now = self.clock.now();
        let lead = vec![ProcessRecord::DeadlineFired {
            name: name.to_owned(),
        }];
        let trigger = Trigger::Deadline {
            name: name.to_owned(),
        };
        self.react(key, lead, trigger, None, |state, _| {
            state.deadline(name) == Some(due) && due <= now
        })
        .await
    }

    async fn react(
        &self,
        key: &str,
        lead: Vec<ProcessRecord<P>>,
        first: Trigger<P>,
        cause: Option<Uuid>,
        due: impl FnOnce(&ProcessState<P>, Version) -> bool,
    ) -> Result<Reacted, Error> {
        let stream = StreamId::for_aggregate(P::TYPE, key)?;
        let (mut state, version) = self
            .processes
            .load(key)
            .await
            .map_err(crate::repository::store_error)?;
        if !due(&state, version) {
            return Ok(Reacted::Skipped);
        }
        let process = process_uuid(P::TYPE, key);
        let metadata = Metadata::new()
            .with_correlation_id(process)
            .caused_by(cause);
        let mut records = Vec::new();
        let mut keep = |state: &mut ProcessState<P>, r: ProcessRecord<P>| {
            annals_core::Aggregate::apply(state, &r);
            records.push(r);
        };
        for r in lead {
            keep(&mut state, r);
        }
        let mut work = Work::new(Uuid::nil(), metadata.clone());
        let mut triggers = VecDeque::from([first]);
        let mut rounds = 0;
        while let Some(trigger) = triggers.pop_front() {
            rounds += 1;
            if rounds > self.max_rounds {
                if state.outcome().is_none() {
                    let reason = format!("more than {} rounds in one reaction", self.max_rounds);
                    keep(
                        &mut state,
                        ProcessRecord::Ended(super::Outcome::Failed { reason }),
                    );
                }
                break;
            }
            let decision = state.state.react(&trigger);
            for e in decision.events {
                keep(&mut state, ProcessRecord::Event(e));
            }
            for name in decision.cancel {
                if state.deadline(&name).is_some() {
                    keep(&mut state, ProcessRecord::DeadlineCancelled { name });
                }
            }
            let now = self.clock.now();
            for (name, after) in decision.deadlines {
                let micros = i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
                let due = Timestamp(now.0.saturating_add(micros));
                keep(&mut state, ProcessRecord::DeadlineSet { name, due });
            }
            for command in decision.commands {
                let step = state.steps() + 1;
                let command_id = command_uuid(process, step);
                keep(
                    &mut state,
                    ProcessRecord::CommandIssued(CommandIssued {
                        step,
                        command_id,
                        command: command.clone(),
                    }),
                );
                work.next_command(command_id, metadata.clone().with_causation_id(command_id));
                match self.dispatch.dispatch(&command, &mut work).await {
                    Ok(()) => {}
                    Err(DispatchError::Rejected { reason }) => {
                        let rejected = ProcessRecord::CommandRejected {
                            step,
                            reason: reason.clone(),
                        };
                        keep(&mut state, rejected);
                        triggers.push_back(Trigger::Rejected {
                            step,
                            command,
                            reason,
                        });
                    }
                    Err(DispatchError::Store(e)) => return Err(e),
                }
            }
            if let Some(outcome) = decision.end
                && state.outcome().is_none()
            {
                keep(&mut state, ProcessRecord::Ended(outcome));
            }
        }
        let mut data = Vec::with_capacity(records.len());
        for r in &records {
            let d: EventData = r.to_event_data()?;
            data.push(d.with_metadata(metadata.clone()));
        }
        let (parts, landed) = work.into_parts();
        let mut appends = Vec::with_capacity(parts.len() + 1);
        appends.push(StreamAppend::new(
            stream.clone(),
            ExpectedVersion::Exact(version),
            data,
        ));
        appends.extend(parts);
        let span = tracing::debug_span!("process_reaction", %stream, records = records.len());
        let stored = tracing::Instrument::instrument(self.store.append_many(appends), span).await;
        match stored {
            Ok(results) => {
                for l in landed {
                    l(true);
                }
                if let Some(r) = results.first() {
                    self.processes.remember(&stream, &state, r.last_version);
                }
                Ok(Reacted::Landed)
            }
            Err(e) => {
                // Caches keep the states they had (true states at their versions).
                for l in landed {
                    l(false);
                }
                Err(e)
            }
        }
    }
}
