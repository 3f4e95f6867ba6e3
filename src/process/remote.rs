//! Commands to other services: a process's `CommandIssued` record is its outbox.
//!
//! A [`Dispatch`](super::Dispatch) that returns `Ok(())` without deciding into the work
//! leaves the command to be carried elsewhere: the record lands with the reaction, an outbox
//! relay (`annals-broker`'s `Relay`, filtered with [`outbox_filter`]) publishes it, and the
//! other service's inbox reads it back with [`RemoteCommand::decode`] and executes it with
//! its [`command_id`](RemoteCommand::command_id) (so a redelivery executes nothing twice).
//! A rejection goes back as an event ([`RemoteCommand::rejection`]) that the process's
//! service takes into its store; the runner hands it to the process as
//! [`Trigger::Rejected`](super::Trigger::Rejected).

use annals_core::{CodecId, Error, EventData, EventId, Filter, Metadata, StreamId, Uuid};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::CommandIssued;
use super::record::names;

/// The event type of a rejection sent back by another service.
pub const REMOTE_REJECTION: &str = "process.RemoteRejection";

/// The filter of the records an outbox relay publishes for processes of type
/// `process_type`: their `process.CommandIssued` records.
pub fn outbox_filter(process_type: &str) -> Filter {
    Filter::stream_prefix(format!("{process_type}-")).and_event_types([names::ISSUED])
}

/// A command another service's process sent, as read from its `CommandIssued` record.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RemoteCommand<C> {
    /// The sending process's stream.
    pub process_stream: StreamId,
    /// Its step.
    pub step: u64,
    /// The command's id: execute it with this id.
    pub command_id: Uuid,
    /// The command.
    pub command: C,
    codec: CodecId,
    issued: Vec<u8>,
}

/// What a [`REMOTE_REJECTION`] event holds.
#[derive(Serialize, Deserialize)]
pub(crate) struct RemoteRejection {
    pub(crate) process_stream: String,
    pub(crate) codec: u8,
    /// The `CommandIssued` payload, as sent.
    pub(crate) issued: Vec<u8>,
    pub(crate) reason: String,
}

impl<C: DeserializeOwned> RemoteCommand<C> {
    /// The command in a `CommandIssued` record of stream `stream`; `Ok(None)` for an event
    /// of another type.
    ///
    /// # Errors
    /// [`Error::Codec`] when the payload does not decode.
    pub fn decode(
        stream: &StreamId,
        event_type: &str,
        codec: CodecId,
        payload: &[u8],
    ) -> Result<Option<Self>, Error> {
        if event_type != names::ISSUED {
            return Ok(None);
        }
        let issued: CommandIssued<C> = codec.decode(event_type, payload)?;
        Ok(Some(Self {
            process_stream: stream.clone(),
            step: issued.step,
            command_id: issued.command_id,
            command: issued.command,
            codec,
            issued: payload.to_vec(),
        }))
    }
}

impl<C> RemoteCommand<C> {
    /// The event that tells the process its command was rejected for `reason`: to append in
    /// the executing service (to [`Self::reply_stream`]) and publish back. Its id derives
    /// from the command id, so appending it twice stores it once.
    ///
    /// # Errors
    /// [`Error::Codec`] when it cannot be encoded.
    pub fn rejection(&self, reason: impl Into<String>) -> Result<EventData, Error> {
        let body = RemoteRejection {
            process_stream: self.process_stream.to_string(),
            codec: self.codec.0,
            issued: self.issued.clone(),
            reason: reason.into(),
        };
        let id = EventId::from_uuid(Uuid::new_v5(&self.command_id, b"annals-rejected"));
        let metadata = Metadata::new()
            .with_causation_id(self.command_id)
            .correlated(None);
        Ok(EventData::encode(REMOTE_REJECTION, &body)?
            .with_id(id)
            .with_metadata(metadata))
    }

    /// The stream for the rejections of commands of this process: `replies-<process
    /// stream>`.
    ///
    /// # Errors
    /// [`Error::InvalidStreamId`] for a process stream name too long to prefix.
    pub fn reply_stream(&self) -> Result<StreamId, Error> {
        StreamId::new(format!("replies-{}", self.process_stream))
    }
}

/// A rejection event's contents: the process stream, the issued command, the reason.
pub(crate) fn read_rejection<C: DeserializeOwned>(
    payload: &[u8],
    codec: CodecId,
) -> Result<(StreamId, CommandIssued<C>, String), Error> {
    let r: RemoteRejection = codec.decode(REMOTE_REJECTION, payload)?;
    let stream = StreamId::new(r.process_stream)?;
    let issued = CodecId(r.codec).decode(names::ISSUED, &r.issued)?;
    Ok((stream, issued, r.reason))
}
