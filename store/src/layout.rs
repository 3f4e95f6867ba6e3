//! The key layout of one ordered key space (a sled tree, or the in-memory map).
//!
//! | key                                   | value                         |
//! |---------------------------------------|-------------------------------|
//! | `e` + first position (u64 BE)         | a chunk of records            |
//! | `s` + stream + `0x00` + version (u64 BE) | stream index entry (first version in format 3, last in 1 and 2) |
//! | `i` + id prefix (10 bytes) + position (u64 BE) | event-id bucket (format 2) |
//! | `i` + event id (16 bytes)             | event-id index entry (format 1, read only) |
//! | `n` + stream                          | the stream's latest snapshot  |
//! | `m` + name                            | store metadata (`mformat`)    |
//!
//! Stream ids never contain control characters, so `0x00` cleanly ends the stream name and
//! one stream's keys never interleave with another's.

use annals_core::{EventId, Position, StreamId, Version};

use crate::format::index::{ID_PREFIX, id_prefix};

/// Prefix byte of chunk keys.
pub const EVENTS: u8 = b'e';
/// Prefix byte of stream index keys.
pub const STREAMS: u8 = b's';
/// Prefix byte of event-id index keys.
pub const IDS: u8 = b'i';
/// Prefix byte of snapshot keys (`n` + stream).
pub const SNAPSHOTS: u8 = b'n';
/// Key of the store format marker.
pub const FORMAT_KEY: &[u8] = b"mformat";
/// The store format this build writes. Format 2 stores hold multi-run stream-index entries
/// and id buckets ([`crate::format::index`]), which a build of format 1 would misread; format
/// 3 stores hold records of format 2 (with append boundaries), which a build of format 2
/// would report as corrupt. The marker keeps such builds out; an older store is upgraded (its
/// marker rewritten) on open.
pub const STORE_FORMAT: u8 = 3;
/// The store formats this build opens.
pub const STORE_FORMATS_READ: [u8; 3] = [1, 2, 3];

/// The key of the chunk starting at `position`.
pub fn event_key(position: Position) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = EVENTS;
    k[1..].copy_from_slice(&position.0.to_be_bytes());
    k
}

/// The position encoded in a chunk key, if `key` is one.
pub fn parse_event_key(key: &[u8]) -> Option<Position> {
    if key.len() != 9 || key[0] != EVENTS {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[1..]);
    Some(Position(u64::from_be_bytes(b)))
}

/// The key of the index entry of `stream`'s chunk ending at `last_version`.
pub fn stream_key(stream: &StreamId, last_version: Version) -> Vec<u8> {
    let name = stream.as_str().as_bytes();
    let mut k = Vec::with_capacity(name.len() + 10);
    k.push(STREAMS);
    k.extend_from_slice(name);
    k.push(0);
    k.extend_from_slice(&last_version.0.to_be_bytes());
    k
}

/// Splits a stream index key into the stream name bytes and the last version.
pub fn parse_stream_key(key: &[u8]) -> Option<(&[u8], Version)> {
    if key.len() < 10 || key[0] != STREAMS || key[key.len() - 9] != 0 {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[key.len() - 8..]);
    Some((&key[1..key.len() - 9], Version(u64::from_be_bytes(b))))
}

/// The key of the format-1 id index entry of `id`.
pub fn id_key(id: EventId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = IDS;
    k[1..].copy_from_slice(id.as_bytes());
    k
}

/// The id a format-1 id-index key names, if `key` is one.
pub fn parse_id_key(key: &[u8]) -> Option<EventId> {
    if key.len() != 17 || key[0] != IDS {
        return None;
    }
    let mut id = [0u8; 16];
    id.copy_from_slice(&key[1..]);
    Some(EventId::from_bytes(id))
}

/// The key of the id bucket of `prefix` whose first entry is at `first`.
pub fn id_bucket_key(prefix: [u8; ID_PREFIX], first: Position) -> [u8; 1 + ID_PREFIX + 8] {
    let mut k = [0u8; 1 + ID_PREFIX + 8];
    k[0] = IDS;
    k[1..=ID_PREFIX].copy_from_slice(&prefix);
    k[1 + ID_PREFIX..].copy_from_slice(&first.0.to_be_bytes());
    k
}

/// The id prefix an id-bucket key names, if `key` is one.
pub fn parse_id_bucket_key(key: &[u8]) -> Option<[u8; ID_PREFIX]> {
    if key.len() != 1 + ID_PREFIX + 8 || key[0] != IDS {
        return None;
    }
    let mut prefix = [0u8; ID_PREFIX];
    prefix.copy_from_slice(&key[1..=ID_PREFIX]);
    Some(prefix)
}

/// The key range holding every id-index key (both formats) that may name `id`.
pub fn id_range(id: EventId) -> ([u8; 1 + ID_PREFIX], [u8; 1 + ID_PREFIX + 8]) {
    let prefix = id_prefix(id);
    let mut lo = [0u8; 1 + ID_PREFIX];
    lo[0] = IDS;
    lo[1..].copy_from_slice(&prefix);
    let mut hi = [0xffu8; 1 + ID_PREFIX + 8];
    hi[..=ID_PREFIX].copy_from_slice(&lo);
    (lo, hi)
}

/// The key of `stream`'s snapshot.
pub fn snapshot_key(stream: &StreamId) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.as_str().len() + 1);
    k.push(SNAPSHOTS);
    k.extend_from_slice(stream.as_str().as_bytes());
    k
}
