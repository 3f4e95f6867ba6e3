//! [`Metadata`]: correlation, causation and free headers carried by every event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Data about an event that is not part of its payload.
///
/// `correlation_id` ties together everything caused by one original request; `causation_id`
/// names the command or event that directly caused this one; `headers` hold anything else
/// (user id, tenant, trace ids), ordered by key so that equal metadata encodes to equal bytes.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The id shared by every message that stems from one original request.
    pub correlation_id: Option<Uuid>,
    /// The id of the message that directly caused this event.
    pub causation_id: Option<Uuid>,
    /// Free key/value headers.
    pub headers: BTreeMap<String, String>,
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets or clears the correlation id.
    pub fn correlated(mut self, id: Option<Uuid>) -> Self {
        self.correlation_id = id;
        self
    }

    /// Sets or clears the causation id.
    pub fn caused_by(mut self, id: Option<Uuid>) -> Self {
        self.causation_id = id;
        self
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: BTreeMap<String, String>) -> Self {
        self.headers = headers;
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.correlation_id.is_none() && self.causation_id.is_none() && self.headers.is_empty()
    }
}
