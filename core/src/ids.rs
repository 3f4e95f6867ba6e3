//! Identifiers and counters: [`StreamId`], [`Version`], [`Position`], [`EventId`].

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// The longest stream id accepted, in bytes of UTF-8.
pub const MAX_STREAM_ID_LEN: usize = 256;

/// The name of one stream: the ordered events of one aggregate instance, by convention
/// `<aggregate type>-<id>`.
///
/// A stream id is validated on construction: it is non-empty, at most
/// [`MAX_STREAM_ID_LEN`] bytes long, holds no control characters and does not start with `$`
/// (names starting with `$` are reserved for system streams such as `$all`).
///
/// ```
/// use annals_core::StreamId;
/// let id = StreamId::new("account-42")?;
/// assert_eq!(id.as_str(), "account-42");
/// assert!(StreamId::new("").is_err());
/// # Ok::<(), annals_core::Error>(())
/// ```
///
/// Cloning is cheap (the name is shared).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(Arc<str>);

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl StreamId {
    /// Validates `name` and wraps it.
    ///
    /// # Errors
    /// [`Error::InvalidStreamId`] naming the rule that was broken.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        if let Err(reason) = Self::check(&name) {
            return Err(Error::InvalidStreamId { name, reason });
        }
        Ok(Self(name.into()))
    }

    /// Builds the conventional stream id `<aggregate type>-<id>`.
    ///
    /// # Errors
    /// [`Error::InvalidStreamId`] when the result breaks a rule of [`StreamId::new`].
    pub fn for_aggregate(aggregate_type: &str, id: impl fmt::Display) -> Result<Self, Error> {
        Self::new(format!("{aggregate_type}-{id}"))
    }

    /// The aggregate id of a stream named `<aggregate_type>-<id>`, or `None` for a stream of
    /// another type: the inverse of [`StreamId::for_aggregate`].
    ///
    /// ```
    /// use annals_core::StreamId;
    /// let s = StreamId::for_aggregate("account", "a-7")?;
    /// assert_eq!(s.aggregate_id("account"), Some("a-7"));
    /// assert_eq!(s.aggregate_id("order"), None);
    /// # Ok::<(), annals_core::Error>(())
    /// ```
    pub fn aggregate_id(&self, aggregate_type: &str) -> Option<&str> {
        self.as_str()
            .strip_prefix(aggregate_type)?
            .strip_prefix('-')
            .filter(|id| !id.is_empty())
    }

    fn check(name: &str) -> Result<(), &'static str> {
        if name.is_empty() {
            return Err("stream id is empty");
        }
        if name.len() > MAX_STREAM_ID_LEN {
            return Err("stream id is longer than 256 bytes");
        }
        if name.chars().any(char::is_control) {
            return Err("stream id contains a control character");
        }
        if name.starts_with('$') {
            return Err("stream ids starting with '$' are reserved");
        }
        Ok(())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::new(name).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for StreamId {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self, Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for StreamId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self, Error> {
        Self::new(value)
    }
}

/// A stream's event count. The first event of a stream has version 1; a stream that does not
/// exist has version 0 ([`Version::NONE`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of a stream with no events.
    pub const NONE: Version = Version(0);
    /// The version of a stream's first event.
    pub const FIRST: Version = Version(1);
    /// The largest version.
    pub const MAX: Version = Version(u64::MAX);

    /// The next version (saturating).
    pub fn next(self) -> Version {
        Version(self.0.saturating_add(1))
    }

    /// The raw count.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// An event's place in the global log (`$all`). Positions start at 1 and are contiguous;
/// [`Position::NONE`] (0) means "before the first event".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub u64);

impl Position {
    /// Before the first event: the head of an empty log, or "nothing processed yet".
    pub const NONE: Position = Position(0);
    /// The position of the first event.
    pub const FIRST: Position = Position(1);
    /// The largest position.
    pub const MAX: Position = Position(u64::MAX);

    /// The next position (saturating).
    pub fn next(self) -> Position {
        Position(self.0.saturating_add(1))
    }

    /// The raw number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// The unique id of one event: a UUID v7 (time-ordered) unless the caller chooses one, for
/// example derived from a command id so that a retried command appends nothing twice.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    /// A fresh UUID v7.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 bytes of the UUID.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Builds an id from 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_id_rules() {
        assert!(StreamId::new("account-1").is_ok());
        assert!(StreamId::new("ünïcödé-✓").is_ok());
        for bad in ["", "a\nb", "tab\there", "$all", "nul\0"] {
            assert!(
                matches!(StreamId::new(bad), Err(Error::InvalidStreamId { .. })),
                "{bad:?}"
            );
        }
        assert!(StreamId::new("x".repeat(MAX_STREAM_ID_LEN)).is_ok());
        assert!(StreamId::new("x".repeat(MAX_STREAM_ID_LEN + 1)).is_err());
    }

    #[test]
    fn stream_id_deserialize_validates() {
        let ok: Result<StreamId, _> = serde_json::from_str("\"a-1\"");
        assert!(ok.is_ok());
        let bad: Result<StreamId, _> = serde_json::from_str("\"\"");
        assert!(bad.is_err());
    }

    #[test]
    fn event_ids_are_v7_and_ordered() {
        let a = EventId::new();
        let b = EventId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
        assert_eq!(EventId::from_bytes(*a.as_bytes()), a);
    }
}
