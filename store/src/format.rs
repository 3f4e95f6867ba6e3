//! The stored byte formats. These bytes last forever: every change gets a new format byte,
//! and decoders of every old format stay.
//!
//! # Records
//!
//! One event is one *record*:
//!
//! ```text
//! format u8 (1 or 2) | codec u8 | body_len u32 LE | crc32 u32 LE | body
//! ```
//!
//! The CRC-32 (IEEE) covers the first six bytes and the body. The body, all integers little
//! endian:
//!
//! ```text
//! position u64 | version u64 | recorded_at i64 (µs since the epoch) | event id [16]
//! schema_version u32 | stream: u16 len + UTF-8 | event type: u8 len + UTF-8
//! flags u8 (bit 0: correlation id, bit 1: causation id) | [correlation 16] | [causation 16]
//! header count u32 | per header: u32 len + UTF-8 key, u32 len + UTF-8 value
//! payload len u32 | payload
//! ```
//!
//! Record format 2 (written now) is format 1 with two more flag bits, which tell where the
//! record sits in the append that stored it: bit 2, the append's first event; bit 3, its
//! last ([`AppendMarks`]). An idempotent re-append must repeat a whole original append, and
//! these bits are how the store knows where appends began and ended. Format-1 records carry
//! no such bits (a format-1 record with them set is corrupt).
//!
//! # Chunks
//!
//! Records are stored in *chunks* under the key of their first position: `format u8 | count
//! u32 LE | records`, cut at about [`CHUNK_TARGET_BYTES`]. Format 2 (written now) holds the
//! records of one group commit — several appends, any streams — with contiguous positions, so
//! a group is one key however many appends it carries. Format 1 (still read) held the records
//! of one append only.
//!
//! # Index entries
//!
//! The stream index and the event-id index are in [`index`] (re-exported here).

pub mod index;

pub use index::*;

use index::trailing_crc_ok;

use annals_core::{
    CodecId, Error, EventData, EventId, Metadata, Position, RecordedEvent, StreamId, Timestamp,
    Uuid, Version,
};

/// Record format 1: no append boundaries. Read, no longer written.
pub const RECORD_FORMAT_V1: u8 = 1;
/// Record format 2 (written by this build): flag bits 2 and 3 mark the first and last
/// record of the append that stored it.
pub const RECORD_FORMAT_V2: u8 = 2;
/// Chunk format 1: the records of one append (one stream, contiguous versions). Read, no
/// longer written.
pub const CHUNK_FORMAT_V1: u8 = 1;
/// Chunk format 2 (written by this build): the records of one group commit, any streams,
/// contiguous positions.
pub const CHUNK_FORMAT_V2: u8 = 2;
/// Chunks are cut once they reach this size (a single larger record gets a chunk of its own).
/// Small values keep sled's nodes small, which keeps them out of sled's blob files.
pub const CHUNK_TARGET_BYTES: usize = 4096;
/// The largest payload accepted, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
/// The largest metadata accepted (headers, encoded), in bytes.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

const RECORD_HEADER: usize = 10;
const FLAG_CORRELATION: u8 = 1;
const FLAG_CAUSATION: u8 = 2;
const FLAG_APPEND_FIRST: u8 = 4;
const FLAG_APPEND_LAST: u8 = 8;

pub use annals_core::AppendMarks;

fn push_str_u32(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn mark_bits(marks: AppendMarks) -> u8 {
    (if marks.first { FLAG_APPEND_FIRST } else { 0 })
        | (if marks.last { FLAG_APPEND_LAST } else { 0 })
}

/// Appends the record (format 2) of `event`, with its place in its append, to `out`.
///
/// The caller has validated sizes ([`validate_sizes`]), so every length fits its field.
pub fn encode_record(event: &RecordedEvent, marks: AppendMarks, out: &mut Vec<u8>) {
    encode_record_as(RECORD_FORMAT_V2, event, mark_bits(marks), out);
}

/// Appends a format-1 record of `event` to `out` (fixtures and tests only).
pub fn encode_record_v1(event: &RecordedEvent, out: &mut Vec<u8>) {
    encode_record_as(RECORD_FORMAT_V1, event, 0, out);
}

fn encode_record_as(format: u8, event: &RecordedEvent, extra_flags: u8, out: &mut Vec<u8>) {
    let start = out.len();
    out.push(format);
    out.push(event.codec.0);
    out.extend_from_slice(&[0; 8]); // body_len + crc, filled in below
    let body_start = out.len();
    out.extend_from_slice(&event.position.0.to_le_bytes());
    out.extend_from_slice(&event.version.0.to_le_bytes());
    out.extend_from_slice(&event.recorded_at.0.to_le_bytes());
    out.extend_from_slice(event.id.as_bytes());
    out.extend_from_slice(&event.schema_version.to_le_bytes());
    let stream = event.stream.as_str().as_bytes();
    out.extend_from_slice(&(stream.len() as u16).to_le_bytes());
    out.extend_from_slice(stream);
    out.push(event.event_type.len() as u8);
    out.extend_from_slice(event.event_type.as_bytes());
    let m = &event.metadata;
    let flags = if m.correlation_id.is_some() {
        FLAG_CORRELATION
    } else {
        0
    } | if m.causation_id.is_some() {
        FLAG_CAUSATION
    } else {
        0
    } | extra_flags;
    out.push(flags);
    if let Some(id) = m.correlation_id {
        out.extend_from_slice(id.as_bytes());
    }
    if let Some(id) = m.causation_id {
        out.extend_from_slice(id.as_bytes());
    }
    out.extend_from_slice(&(m.headers.len() as u32).to_le_bytes());
    for (k, v) in &m.headers {
        push_str_u32(out, k);
        push_str_u32(out, v);
    }
    out.extend_from_slice(&(event.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&event.payload);
    let body_len = (out.len() - body_start) as u32;
    out[start + 2..start + 6].copy_from_slice(&body_len.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..start + 6]);
    h.update(&out[body_start..]);
    let crc = h.finalize();
    out[start + 6..start + 10].copy_from_slice(&crc.to_le_bytes());
}

/// Checks the sizes a record format field can hold: event type length, payload and metadata
/// size.
///
/// # Errors
/// [`Error::InvalidEvent`] naming the field.
pub fn validate_sizes(event_type: &str, metadata: &Metadata, payload: &[u8]) -> Result<(), Error> {
    let bad = |reason: String| Err(Error::InvalidEvent { reason });
    if event_type.is_empty() {
        return bad("event type is empty".into());
    }
    if event_type.len() > annals_core::MAX_EVENT_TYPE_LEN {
        return bad(format!(
            "event type {event_type:?} is longer than 255 bytes"
        ));
    }
    if event_type.chars().any(char::is_control) {
        return bad(format!(
            "event type {event_type:?} contains a control character"
        ));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return bad(format!(
            "payload of {} bytes is larger than the limit of {MAX_PAYLOAD_BYTES}",
            payload.len()
        ));
    }
    let meta: usize = metadata
        .headers
        .iter()
        .map(|(k, v)| 8 + k.len() + v.len())
        .sum();
    if meta > MAX_METADATA_BYTES {
        return bad(format!(
            "metadata of {meta} bytes is larger than the limit of {MAX_METADATA_BYTES}"
        ));
    }
    Ok(())
}

/// A bounds-checked reader over a record body; every failure names the position.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    position: Position,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.at..end];
                self.at = end;
                Ok(s)
            }
            None => Err(Error::corrupt(self.position, format!("truncated {what}"))),
        }
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8, Error> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, Error> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, Error> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn str(&mut self, n: usize, what: &str) -> Result<&'a str, Error> {
        let s = self.take(n, what)?;
        std::str::from_utf8(s)
            .map_err(|_| Error::corrupt(self.position, format!("{what} is not UTF-8")))
    }
}

/// Decodes one record from the front of `bytes`; returns it and the bytes it used.
/// `position_hint` names the record in errors raised before its own position is readable.
///
/// # Errors
/// [`Error::Corrupt`] for a bad checksum, truncation, an unknown format or invalid fields.
pub fn decode_record(
    bytes: &[u8],
    position_hint: Position,
) -> Result<(RecordedEvent, usize), Error> {
    decode_record_in(bytes, position_hint, None).map(|(e, used, _)| (e, used))
}

/// [`decode_record`] with the record's place in its append: `None` for a format-1 record,
/// which does not say.
///
/// # Errors
/// As [`decode_record`].
pub fn decode_record_marks(
    bytes: &[u8],
    position_hint: Position,
) -> Result<(RecordedEvent, usize, Option<AppendMarks>), Error> {
    decode_record_in(bytes, position_hint, None)
}

/// [`decode_record_marks`], reusing `same_stream` when the record names that stream (records
/// of a chunk share one), which saves validating and allocating the name again.
fn decode_record_in(
    bytes: &[u8],
    position_hint: Position,
    same_stream: Option<&StreamId>,
) -> Result<(RecordedEvent, usize, Option<AppendMarks>), Error> {
    let corrupt = |reason: String| Error::corrupt(position_hint, reason);
    if bytes.len() < RECORD_HEADER {
        return Err(corrupt(format!(
            "truncated record header ({} bytes)",
            bytes.len()
        )));
    }
    let known_flags = match bytes[0] {
        RECORD_FORMAT_V1 => FLAG_CORRELATION | FLAG_CAUSATION,
        RECORD_FORMAT_V2 => {
            FLAG_CORRELATION | FLAG_CAUSATION | FLAG_APPEND_FIRST | FLAG_APPEND_LAST
        }
        other => return Err(corrupt(format!("unknown record format {other}"))),
    };
    let codec = CodecId(bytes[1]);
    let body_len = u32::from_le_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
    let stored_crc = u32::from_le_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let Some(body) = bytes.get(RECORD_HEADER..RECORD_HEADER.saturating_add(body_len)) else {
        return Err(corrupt(format!(
            "truncated record: body of {body_len} bytes, {} present",
            bytes.len().saturating_sub(RECORD_HEADER)
        )));
    };
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..6]);
    h.update(body);
    if h.finalize() != stored_crc {
        return Err(corrupt("checksum mismatch".into()));
    }
    let mut r = Reader {
        bytes: body,
        at: 0,
        position: position_hint,
    };
    let position = Position(r.u64("position")?);
    r.position = position;
    let version = Version(r.u64("version")?);
    let recorded_at = Timestamp(i64::from_le_bytes(r.array("recorded_at")?));
    let id = EventId::from_bytes(r.array("event id")?);
    let schema_version = r.u32("schema version")?;
    let stream_len = r.u16("stream length")? as usize;
    let stream = r.str(stream_len, "stream id")?;
    let stream = match same_stream {
        Some(s) if s.as_str() == stream => s.clone(),
        _ => StreamId::new(stream)
            .map_err(|e| Error::corrupt(position, format!("stored stream id invalid: {e}")))?,
    };
    let type_len = r.u8("event type length")? as usize;
    let event_type = r.str(type_len, "event type")?.to_owned();
    let flags = r.u8("flags")?;
    if flags & !known_flags != 0 {
        return Err(Error::corrupt(
            position,
            format!("unknown flags {flags:#x}"),
        ));
    }
    let marks = (bytes[0] == RECORD_FORMAT_V2).then_some(AppendMarks::new(
        flags & FLAG_APPEND_FIRST != 0,
        flags & FLAG_APPEND_LAST != 0,
    ));
    let mut metadata = Metadata::default();
    if flags & FLAG_CORRELATION != 0 {
        metadata.correlation_id = Some(Uuid::from_bytes(r.array("correlation id")?));
    }
    if flags & FLAG_CAUSATION != 0 {
        metadata.causation_id = Some(Uuid::from_bytes(r.array("causation id")?));
    }
    let headers = r.u32("header count")?;
    for _ in 0..headers {
        let kl = r.u32("header key length")? as usize;
        let k = r.str(kl, "header key")?.to_owned();
        let vl = r.u32("header value length")? as usize;
        let v = r.str(vl, "header value")?.to_owned();
        metadata.headers.insert(k, v);
    }
    let payload_len = r.u32("payload length")? as usize;
    let payload = r.take(payload_len, "payload")?.to_vec();
    if r.at != body.len() {
        return Err(Error::corrupt(position, "trailing bytes in record body"));
    }
    // 0 is "none" and the largest value the readers' "no bound": neither is ever stored,
    // so `position + 1` and `version + 1` stay in range wherever they are computed.
    if position == Position::NONE
        || version == Version::NONE
        || position == Position::MAX
        || version == Version::MAX
    {
        return Err(Error::corrupt(
            position,
            "record has position or version 0 or the largest value",
        ));
    }
    let event = RecordedEvent::new(
        position,
        stream,
        version,
        recorded_at,
        EventData::new(id, event_type, schema_version, codec, metadata, payload),
    );
    Ok((event, RECORD_HEADER + body_len, marks))
}

/// Encodes a chunk (format 2) from already-encoded records.
pub fn encode_chunk(count: u32, records: &[u8]) -> Vec<u8> {
    encode_chunk_as(CHUNK_FORMAT_V2, count, records)
}

/// Encodes a chunk of the given format (format 1 only for fixtures and tests).
pub fn encode_chunk_as(format: u8, count: u32, records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + records.len());
    out.push(format);
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(records);
    out
}

/// Decodes a chunk stored under `first`, checking that its records have contiguous positions
/// starting at `first`, one stream and contiguous versions.
///
/// # Errors
/// [`Error::Corrupt`] naming the first position that could not be read.
pub fn decode_chunk(bytes: &[u8], first: Position) -> Result<Vec<RecordedEvent>, Error> {
    let mut out = Vec::new();
    decode_chunk_into(bytes, first, &mut out)?;
    Ok(out)
}

/// [`decode_chunk`] appending to `out` (left as it was on an error).
///
/// # Errors
/// As [`decode_chunk`].
pub fn decode_chunk_into(
    bytes: &[u8],
    first: Position,
    out: &mut Vec<RecordedEvent>,
) -> Result<(), Error> {
    let start = out.len();
    let r = decode_chunk_records(bytes, first, out, start, &mut |_| {});
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// [`decode_chunk`] with each record's place in its append (`None` for format-1 records).
///
/// # Errors
/// As [`decode_chunk`].
pub fn decode_chunk_marks(
    bytes: &[u8],
    first: Position,
) -> Result<Vec<(RecordedEvent, Option<AppendMarks>)>, Error> {
    let mut events = Vec::new();
    let mut marks = Vec::new();
    decode_chunk_records(bytes, first, &mut events, 0, &mut |m| marks.push(m))?;
    Ok(events.into_iter().zip(marks).collect())
}

fn decode_chunk_records(
    bytes: &[u8],
    first: Position,
    out: &mut Vec<RecordedEvent>,
    start: usize,
    marks: &mut dyn FnMut(Option<AppendMarks>),
) -> Result<(), Error> {
    if bytes.len() < 5 {
        return Err(Error::corrupt(first, "truncated chunk header"));
    }
    let one_run = match bytes[0] {
        CHUNK_FORMAT_V1 => true,
        CHUNK_FORMAT_V2 => false,
        other => {
            return Err(Error::corrupt(
                first,
                format!("unknown chunk format {other}"),
            ));
        }
    };
    let count = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    if count == 0 {
        return Err(Error::corrupt(first, "empty chunk"));
    }
    out.reserve(count.min(4096) as usize);
    let mut at = 5;
    for i in 0..u64::from(count) {
        let expected = Position(first.0.saturating_add(i));
        let prev = out[start..].last();
        let rest = bytes.get(at..).unwrap_or_default();
        let (event, used, m) = decode_record_in(rest, expected, prev.map(|e| &e.stream))?;
        if event.position != expected {
            return Err(Error::corrupt(
                expected,
                format!("record claims position {}", event.position),
            ));
        }
        let breaks_run = |prev: &RecordedEvent| {
            event.stream != prev.stream || event.version.0 != prev.version.0.saturating_add(1)
        };
        if one_run && prev.is_some_and(breaks_run) {
            return Err(Error::corrupt(
                expected,
                "chunk records are not one contiguous stream run",
            ));
        }
        at += used;
        out.push(event);
        marks(m);
    }
    if at != bytes.len() {
        return Err(Error::corrupt(
            first,
            "trailing bytes after the last record of a chunk",
        ));
    }
    Ok(())
}

/// The snapshot format written by this build.
pub const SNAPSHOT_FORMAT_V1: u8 = 1;

/// Encodes a snapshot: `format u8 | version u64 | schema u32 | codec u8 | taken_at i64 |
/// payload len u32 | payload | crc32 u32` (little endian; the CRC covers everything before it).
pub fn encode_snapshot(s: &annals_core::Snapshot) -> Vec<u8> {
    let mut out = Vec::with_capacity(30 + s.payload.len());
    out.push(SNAPSHOT_FORMAT_V1);
    out.extend_from_slice(&s.version.0.to_le_bytes());
    out.extend_from_slice(&s.schema_version.to_le_bytes());
    out.push(s.codec.0);
    out.extend_from_slice(&s.taken_at.0.to_le_bytes());
    out.extend_from_slice(&(s.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&s.payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a snapshot.
///
/// # Errors
/// [`Error::Corrupt`] (at position 0) on a bad length, format or checksum.
pub fn decode_snapshot(bytes: &[u8]) -> Result<annals_core::Snapshot, Error> {
    let bad = |reason: &str| Error::corrupt(Position::NONE, format!("snapshot: {reason}"));
    if bytes.len() < 30 {
        return Err(bad("truncated"));
    }
    if !trailing_crc_ok(bytes) {
        return Err(bad("checksum mismatch"));
    }
    let body = &bytes[..bytes.len() - 4];
    let mut r = Reader {
        bytes: body,
        at: 0,
        position: Position::NONE,
    };
    if r.u8("format")? != SNAPSHOT_FORMAT_V1 {
        return Err(bad("unknown format"));
    }
    let version = Version(r.u64("version")?);
    let schema_version = r.u32("schema version")?;
    let codec = CodecId(r.u8("codec")?);
    let taken_at = Timestamp(i64::from_le_bytes(r.array("taken_at")?));
    let len = r.u32("payload length")? as usize;
    let payload = r.take(len, "payload")?.to_vec();
    if r.at != body.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(annals_core::Snapshot::new(
        version,
        schema_version,
        codec,
        payload,
        taken_at,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample(position: u64, version: u64) -> RecordedEvent {
        RecordedEvent::new(
            Position(position),
            StreamId::new("account-1").unwrap(),
            Version(version),
            Timestamp(1_700_000_000_000_000),
            EventData::new(
                EventId::from_bytes([7; 16]),
                "Deposited",
                2,
                CodecId::BINCODE,
                Metadata::new()
                    .with_correlation_id(Uuid::from_bytes([1; 16]))
                    .with_header("user", "ada"),
                vec![1, 2, 3, 4],
            ),
        )
    }

    fn chunk_of(events: &[RecordedEvent]) -> Vec<u8> {
        let mut recs = Vec::new();
        for (i, e) in events.iter().enumerate() {
            encode_record(e, AppendMarks::of(i, events.len()), &mut recs);
        }
        encode_chunk(events.len() as u32, &recs)
    }

    #[test]
    fn record_round_trip() {
        let e = sample(5, 3);
        for marks in [(false, false), (true, false), (false, true), (true, true)] {
            let marks = AppendMarks::new(marks.0, marks.1);
            let mut buf = Vec::new();
            encode_record(&e, marks, &mut buf);
            let (back, used, m) = decode_record_marks(&buf, Position(5)).unwrap();
            assert_eq!((back, used, m), (e.clone(), buf.len(), Some(marks)));
        }
        // Format 1: no marks, and the mark bits are unknown flags there.
        let mut v1 = Vec::new();
        encode_record_v1(&e, &mut v1);
        assert_eq!(decode_record_marks(&v1, Position(5)).unwrap().2, None);
        let mut marked = Vec::new();
        encode_record_as(RECORD_FORMAT_V1, &e, FLAG_APPEND_FIRST, &mut marked);
        assert!(decode_record(&marked, Position(5)).is_err());
    }

    #[test]
    fn chunk_round_trip_and_contiguity() {
        let events = vec![sample(10, 1), sample(11, 2), sample(12, 3)];
        let chunk = chunk_of(&events);
        assert_eq!(decode_chunk(&chunk, Position(10)).unwrap(), events);
        // Stored under the wrong key: the first record names another position.
        assert!(matches!(
            decode_chunk(&chunk, Position(9)),
            Err(Error::Corrupt {
                position: Position(9),
                ..
            })
        ));
        // Format 1 chunks hold one stream run: a version gap is corrupt.
        let mut recs = Vec::new();
        encode_record_v1(&sample(10, 1), &mut recs);
        encode_record_v1(&sample(11, 3), &mut recs);
        let gap = encode_chunk_as(CHUNK_FORMAT_V1, 2, &recs);
        assert!(matches!(
            decode_chunk(&gap, Position(10)),
            Err(Error::Corrupt {
                position: Position(11),
                ..
            })
        ));
        // Format 2 chunks hold a group: any streams, but contiguous positions.
        let mut other = sample(11, 7);
        other.stream = StreamId::new("account-2").unwrap();
        let group = vec![sample(10, 1), other];
        assert_eq!(
            decode_chunk(&chunk_of(&group), Position(10)).unwrap(),
            group
        );
        let hole = chunk_of(&[sample(10, 1), sample(12, 2)]);
        assert!(matches!(
            decode_chunk(&hole, Position(10)),
            Err(Error::Corrupt {
                position: Position(11),
                ..
            })
        ));
    }

    #[test]
    fn every_flipped_bit_and_truncation_is_corrupt() {
        let events = vec![sample(10, 1), sample(11, 2)];
        let chunk = chunk_of(&events);
        for i in 0..chunk.len() {
            for bit in 0..8 {
                let mut bad = chunk.clone();
                bad[i] ^= 1 << bit;
                match decode_chunk(&bad, Position(10)) {
                    // The position named is in the chunk, or past it when the damaged count
                    // claims more records than there are.
                    Err(Error::Corrupt { position, .. }) => assert!(position.0 >= 10),
                    other => panic!("byte {i} bit {bit}: {other:?}"),
                }
            }
        }
        for len in 0..chunk.len() {
            assert!(matches!(
                decode_chunk(&chunk[..len], Position(10)),
                Err(Error::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn snapshots_round_trip_and_detect_damage() {
        let s = annals_core::Snapshot::new(
            Version(100),
            2,
            CodecId::BINCODE,
            vec![1, 2, 3],
            Timestamp(5),
        );
        let bytes = encode_snapshot(&s);
        assert_eq!(decode_snapshot(&bytes).unwrap(), s);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 4;
            assert!(decode_snapshot(&bad).is_err());
            assert!(decode_snapshot(&bytes[..i]).is_err());
        }
    }

    #[test]
    fn index_entries_round_trip_and_detect_damage() {
        let e = IndexEntry {
            chunk: Position(40),
            first_position: Position(42),
            count: 3,
        };
        let bytes = e.encode();
        assert_eq!(IndexEntry::decode(&bytes, "x").unwrap(), e);
        for i in 0..bytes.len() {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert!(IndexEntry::decode(&bad, "x").is_err());
        }
        let v1 = IndexEntry {
            chunk: Position(42),
            ..e
        };
        assert_eq!(IndexEntry::decode(&v1.encode_v1(), "x").unwrap(), v1);
        let id = EventId::new();
        let b = encode_id_entry(Position(9));
        assert_eq!(decode_id_entry(&b, id).unwrap(), Position(9));
        let mut bad = b;
        bad[3] ^= 1;
        assert!(decode_id_entry(&bad, id).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            if std::env::var_os("ANNALS_STRESS").is_some() { 100_000 } else { 2_000 }
        ))]

        /// Arbitrary bytes never panic the decoders.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_chunk(&bytes, Position(1));
            let _ = decode_record(&bytes, Position(1));
            let _ = IndexEntry::decode(&bytes, "x");
            let _ = decode_id_entry(&bytes, EventId::new());
            let _ = decode_snapshot(&bytes);
        }

        /// Mutated valid chunks never panic and never decode into different events silently.
        #[test]
        fn mutated_chunks_are_errors_or_identical(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let events = vec![sample(10, 1), sample(11, 2)];
            let chunk = chunk_of(&events);
            let mut bad = chunk.clone();
            for (i, b) in edits {
                let i = i.index(bad.len());
                bad[i] = b;
            }
            if let Some(c) = cut {
                let n = c.index(bad.len());
                bad.truncate(n);
            }
            match decode_chunk(&bad, Position(10)) {
                Ok(back) => prop_assert!(bad == chunk && back == events),
                Err(e) => prop_assert!(matches!(e, Error::Corrupt { .. }), "{e:?}"),
            }
        }
    }
}
