//! The index formats: stream-index entries and event-id index entries. Like records, these
//! bytes last forever: a change gets a new format byte and the old decoders stay.
//!
//! # Stream index
//!
//! Stored under `s + stream + 0x00 + version u64 BE` (see [`crate::layout`]); every format
//! is read:
//!
//! * **format 1**, keyed by the run's *last* version: one run that starts its chunk —
//!   `format u8 (= 1) | first position u64 | count u32 | crc32 u32`;
//! * **format 2**, keyed by the run's *last* version: one run anywhere in a chunk —
//!   `format u8 (= 2) | chunk position u64 | first position u64 | count u32 | crc32 u32`;
//! * **format 3** (written now), keyed by the entry's *first* version: up to [`MAX_RUNS`]
//!   runs of consecutive versions, each in some chunk — `format u8 (= 3) | run count u16 |
//!   per run: chunk position u64, first position u64, count u32 | crc32 u32`.
//!
//! The writer extends a stream's newest format-3 entry in place (same key, the old runs a
//! prefix of the new ones) until it holds [`MAX_RUNS`] runs, so a stream appended to one
//! event at a time costs one key per [`MAX_RUNS`] appends rather than one per append. That
//! matters because sled 0.34 keeps in-memory state for every page of its tree (a leaf holds
//! at most 16 keys) for as long as the store is open: each key written costs memory for
//! good, about 16 bytes for keys written in order and 35 for keys spread over the key space
//! like stream-index keys (`cargo bench --bench workloads -- sled-memory`).
//!
//! Within one stream, entries of formats 1 and 2 (keyed by last versions) all precede those
//! of format 3 (keyed by first versions, above every older last version), so key order is
//! version order in every store.
//!
//! All integers are little endian; every CRC-32 (IEEE) covers the bytes before it.
//!
//! # Event-id index
//!
//! * **format 1**: under `i + id [16]`, `format u8 (= 1) | position u64 | crc32 u32`. Every
//!   id of a format-1 store; now written only for ids that are not UUID v7 ([`bucketed`]).
//! * **format 2** (written now for UUID v7 ids), an *id bucket*: under `i + the id's first`
//!   [`ID_PREFIX`] `bytes + the position u64 BE of its first entry`, the ids of one group
//!   commit that share those first bytes — `format u8 (= 2) | count u16 | per id: id [16],
//!   position u64 | crc32 u32`, at most [`ID_BUCKET_MAX`] ids. [`EventId::new`] makes UUID
//!   v7 ids whose first six bytes are the millisecond and whose next bytes a counter started
//!   at a random value each millisecond, so the ids made in one millisecond share their first
//!   ten bytes (65,536 ids at most do): a group costs a key or two for its ids instead of one
//!   per event. v7 ids of generators that fill those bytes at random cost one key each, as
//!   in format 1.
//!
//! A UUID v7 is found by scanning the keys that start with `i` and its first ten bytes (a
//! 17-byte key there is a format-1 entry of an older store, a 19-byte key a bucket to
//! search); any other id by reading its format-1 key.

use annals_core::{Error, EventId, Position, Version};

/// Stream-index format 1 (one run starting its chunk); also the event-id entry format 1.
/// Read, no longer written.
pub const INDEX_FORMAT_V1: u8 = 1;
/// Stream-index format 2 (one run, keyed by its last version). Read, no longer written.
pub const INDEX_FORMAT_V2: u8 = 2;
/// Stream-index format 3 (written by this build): several runs, keyed by the first version.
pub const INDEX_FORMAT_V3: u8 = 3;
/// Event-id bucket format (written by this build).
pub const ID_BUCKET_FORMAT_V2: u8 = 2;
/// The most runs the writer puts in one format-3 stream-index entry (so a value stays
/// under 340 bytes while it is rewritten in place).
pub const MAX_RUNS: usize = 16;
/// The most ids the writer puts in one id bucket (about 4 KiB, like a chunk).
pub const ID_BUCKET_MAX: usize = 168;
/// How many leading bytes of an id name its bucket (a UUID v7's millisecond and the high
/// bytes of its counter).
pub const ID_PREFIX: usize = 10;

const RUN_BYTES: usize = 20;
const ID_ENTRY_BYTES: usize = 24;

/// A run of one stream's events inside one chunk: `count` events with consecutive versions
/// starting at `first_position`, in the chunk stored under `chunk`. On its own (formats 1
/// and 2), a stream-index entry is exactly one run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct IndexEntry {
    /// Position of the first event of the chunk holding the run.
    pub chunk: Position,
    /// Position of the run's first event.
    pub first_position: Position,
    /// Number of events in the run.
    pub count: u32,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Whether the last four bytes of `bytes` are the CRC-32 (LE) of the bytes before them.
pub(crate) fn trailing_crc_ok(bytes: &[u8]) -> bool {
    let Some(split) = bytes.len().checked_sub(4) else {
        return false;
    };
    let (body, crc) = bytes.split_at(split);
    crc32fast::hash(body) == u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]])
}

/// Encodes `format u8 | count u16 | items | crc32 u32`, each item written by `put` in
/// `item_len` bytes (`items` holds at most `u16::MAX`: the writer's caps keep far below).
fn encode_counted<T>(
    format: u8,
    items: &[T],
    item_len: usize,
    put: impl Fn(&T, &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + item_len * items.len());
    out.push(format);
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    for item in items {
        put(item, &mut out);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The items of a `format u8 | count u16 | items | crc32 u32` value, checked for format,
/// length and checksum.
fn counted_items(
    bytes: &[u8],
    format: u8,
    item_len: usize,
) -> Result<std::slice::ChunksExact<'_, u8>, &'static str> {
    if bytes.len() < 3 || bytes[0] != format {
        return Err("unknown format or truncated");
    }
    let n = usize::from(u16::from_le_bytes([bytes[1], bytes[2]]));
    if n == 0 || bytes.len() != 3 + n * item_len + 4 {
        return Err("wrong length for its count");
    }
    if !trailing_crc_ok(bytes) {
        return Err("checksum mismatch");
    }
    Ok(bytes[3..bytes.len() - 4].chunks_exact(item_len))
}

impl IndexEntry {
    /// Encodes the entry as a format-2 stream-index value (fixtures and tests only: this
    /// build writes format 3).
    pub fn encode(&self) -> [u8; 25] {
        let mut out = [0u8; 25];
        out[0] = INDEX_FORMAT_V2;
        out[1..9].copy_from_slice(&self.chunk.0.to_le_bytes());
        out[9..17].copy_from_slice(&self.first_position.0.to_le_bytes());
        out[17..21].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&out[..21]);
        out[21..25].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Encodes the entry in format 1 (fixtures and tests only; `chunk` must equal
    /// `first_position`).
    pub fn encode_v1(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = INDEX_FORMAT_V1;
        out[1..9].copy_from_slice(&self.first_position.0.to_le_bytes());
        out[9..13].copy_from_slice(&self.count.to_le_bytes());
        let crc = crc32fast::hash(&out[..13]);
        out[13..17].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a single-run entry of format 1 or 2; `what` names it in errors.
    ///
    /// # Errors
    /// [`Error::Corrupt`] on a bad length, format or checksum.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::corrupt(Position::NONE, format!("{what}: {reason}"));
        let entry = match (bytes.first(), bytes.len()) {
            (Some(&INDEX_FORMAT_V1), 17) => IndexEntry {
                chunk: Position(u64_at(bytes, 1)),
                first_position: Position(u64_at(bytes, 1)),
                count: u32_at(bytes, 9),
            },
            (Some(&INDEX_FORMAT_V2), 25) => IndexEntry {
                chunk: Position(u64_at(bytes, 1)),
                first_position: Position(u64_at(bytes, 9)),
                count: u32_at(bytes, 17),
            },
            _ => return Err(bad("unknown index format or wrong length")),
        };
        if !trailing_crc_ok(bytes) {
            return Err(bad("checksum mismatch"));
        }
        entry.check().map_err(bad)?;
        Ok(entry)
    }

    /// Refuses a run no writer can have made: empty, starting before its chunk, reaching
    /// past the records one chunk can count (`u32`), or ending at or past [`Position::MAX`]
    /// (which readers use as "no bound"), so that every accessor's arithmetic stays in range.
    fn check(&self) -> Result<(), &'static str> {
        if self.count == 0 || self.chunk == Position::NONE || self.first_position < self.chunk {
            return Err("empty or inconsistent run");
        }
        let offset = self.first_position.0 - self.chunk.0;
        if offset.saturating_add(u64::from(self.count)) > u64::from(u32::MAX) {
            return Err("run reaches past what one chunk can hold");
        }
        // The last position, `first + count - 1`, stays below `Position::MAX` exactly when
        // `first + count` does not pass `u64::MAX`.
        match self.first_position.0.checked_add(u64::from(self.count)) {
            Some(_) => Ok(()),
            None => Err("run reaches past the largest position"),
        }
    }

    /// The position of the run's last event.
    pub fn last_position(&self) -> Position {
        Position(
            self.first_position
                .0
                .saturating_add(u64::from(self.count).saturating_sub(1)),
        )
    }
}

/// One stream-index value of any format, decoded: the stream's versions
/// `first_version ..= last_version()`, stored in `runs` (in version order).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct StreamEntry {
    /// The version of the first event of the first run.
    pub first_version: Version,
    /// The runs, in version (and position) order.
    pub runs: Vec<IndexEntry>,
    /// The format it was stored in (1, 2 or 3); only format 3 is extended in place.
    pub format: u8,
}

impl StreamEntry {
    /// A new format-3 entry of one run.
    pub fn new(first_version: Version, run: IndexEntry) -> Self {
        Self {
            first_version,
            runs: vec![run],
            format: INDEX_FORMAT_V3,
        }
    }

    /// How many events the entry covers.
    pub fn count(&self) -> u64 {
        self.runs
            .iter()
            .fold(0u64, |n, r| n.saturating_add(u64::from(r.count)))
    }

    /// The version of the entry's last event. A decoded entry's versions are in range
    /// ([`Self::decode`] checks); the arithmetic saturates for entries built by hand.
    pub fn last_version(&self) -> Version {
        Version(
            self.first_version
                .0
                .saturating_add(self.count().saturating_sub(1)),
        )
    }

    /// The version its key names: the last for formats 1 and 2, the first for format 3.
    pub fn key_version(&self) -> Version {
        if self.format == INDEX_FORMAT_V3 {
            self.first_version
        } else {
            self.last_version()
        }
    }

    /// The runs, each with the version of its first event.
    pub fn runs_with_versions(&self) -> impl Iterator<Item = (Version, IndexEntry)> + '_ {
        let mut next = self.first_version.0;
        self.runs.iter().map(move |r| {
            let v = Version(next);
            next = next.saturating_add(u64::from(r.count));
            (v, *r)
        })
    }

    /// The version of the last event at or before `bound`, if the entry has one.
    pub fn last_version_within(&self, bound: Position) -> Option<Version> {
        let mut last = None;
        for (v, r) in self.runs_with_versions() {
            if r.first_position > bound {
                break;
            }
            // `bound >= first_position >= 1`, so this is at least 1 and cannot wrap.
            let visible = (bound.0 - r.first_position.0)
                .saturating_add(1)
                .min(u64::from(r.count));
            last = Some(Version(v.0.saturating_add(visible - 1)));
        }
        last
    }

    /// Calls every accessor the store and `verify` use and checks the promises
    /// [`Self::decode`] makes about the numbers of what it returns (for the property tests and
    /// the fuzz targets; not a stable API).
    #[doc(hidden)]
    pub fn keeps_its_promises(&self) -> bool {
        let _ = (
            self.count(),
            self.key_version(),
            self.extendable(),
            self.extends(self),
        );
        let mut ok = self.first_version > Version::NONE && self.last_version() < Version::MAX;
        for (v, r) in self.runs_with_versions() {
            ok &= r.first_position >= r.chunk && r.last_position() < Position::MAX;
            let _ = (v.next(), r.last_position().next());
        }
        for bound in [
            Position::NONE,
            Position(1),
            Position(u64::MAX / 2),
            Position::MAX,
        ] {
            let _ = self.last_version_within(bound);
        }
        ok
    }

    /// Whether the writer may add a run to this entry in place.
    pub fn extendable(&self) -> bool {
        self.format == INDEX_FORMAT_V3 && self.runs.len() < MAX_RUNS
    }

    /// Whether `self` is `old` with runs added (what an in-place rewrite may do).
    pub fn extends(&self, old: &StreamEntry) -> bool {
        old.format == INDEX_FORMAT_V3
            && self.format == INDEX_FORMAT_V3
            && self.first_version == old.first_version
            && self.runs.len() > old.runs.len()
            && self.runs.starts_with(&old.runs)
    }

    /// Encodes the entry in format 3 (stored under the key of [`Self::first_version`]).
    pub fn encode(&self) -> Vec<u8> {
        encode_counted(INDEX_FORMAT_V3, &self.runs, RUN_BYTES, |r, out| {
            out.extend_from_slice(&r.chunk.0.to_le_bytes());
            out.extend_from_slice(&r.first_position.0.to_le_bytes());
            out.extend_from_slice(&r.count.to_le_bytes());
        })
    }

    /// Decodes the value stored under a stream-index key naming `key_version`; `what` names
    /// it in errors.
    ///
    /// # Errors
    /// [`Error::Corrupt`] on a bad length, format, checksum, or runs that do not fit together.
    pub fn decode(key_version: Version, bytes: &[u8], what: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::corrupt(Position::NONE, format!("{what}: {reason}"));
        // `Version::MAX` is the readers' "no bound": no stored event has it, so every
        // `version + 1` a reader computes stays in range.
        if key_version == Version::NONE || key_version == Version::MAX {
            return Err(bad("key names version 0 or the largest version"));
        }
        if bytes.first() != Some(&INDEX_FORMAT_V3) {
            let run = IndexEntry::decode(bytes, what)?;
            let count = u64::from(run.count);
            if count > key_version.0 {
                return Err(bad("the run counts past version 1"));
            }
            return Ok(Self {
                // `count <= key_version`, so this is at least 1.
                first_version: Version(key_version.0 - count + 1),
                runs: vec![run],
                format: bytes.first().copied().unwrap_or_default(),
            });
        }
        let items = counted_items(bytes, INDEX_FORMAT_V3, RUN_BYTES).map_err(&bad)?;
        if items.len() > MAX_RUNS {
            return Err(bad("more runs than an entry holds"));
        }
        let mut runs: Vec<IndexEntry> = Vec::with_capacity(items.len());
        let mut total = 0u64;
        for item in items {
            let run = IndexEntry {
                chunk: Position(u64_at(item, 0)),
                first_position: Position(u64_at(item, 8)),
                count: u32_at(item, 16),
            };
            run.check().map_err(&bad)?;
            if runs
                .last()
                .is_some_and(|prev| run.first_position <= prev.last_position())
            {
                return Err(bad("runs out of position order"));
            }
            total += u64::from(run.count);
            runs.push(run);
        }
        // The last version, `key_version + total - 1`, stays below `Version::MAX` exactly
        // when `key_version + total` does not pass `u64::MAX`.
        if key_version.0.checked_add(total).is_none() {
            return Err(bad("versions out of range"));
        }
        Ok(Self {
            first_version: key_version,
            runs,
            format: INDEX_FORMAT_V3,
        })
    }
}

/// Encodes a format-1 event-id entry (written for ids that are not UUID v7).
pub fn encode_id_entry(position: Position) -> [u8; 13] {
    let mut out = [0u8; 13];
    out[0] = INDEX_FORMAT_V1;
    out[1..9].copy_from_slice(&position.0.to_le_bytes());
    let crc = crc32fast::hash(&out[..9]);
    out[9..13].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a format-1 event-id entry.
///
/// # Errors
/// [`Error::Corrupt`] on a bad length, format or checksum.
pub fn decode_id_entry(bytes: &[u8], id: EventId) -> Result<Position, Error> {
    let bad =
        |reason: &str| Error::corrupt(Position::NONE, format!("id index entry of {id}: {reason}"));
    if bytes.len() != 13 || bytes[0] != INDEX_FORMAT_V1 {
        return Err(bad("wrong length or format"));
    }
    if !trailing_crc_ok(bytes) {
        return Err(bad("checksum mismatch"));
    }
    match Position(u64_at(bytes, 1)) {
        Position::NONE | Position::MAX => Err(bad("position 0 or the largest position")),
        p => Ok(p),
    }
}

/// Whether `id` goes into a bucket: a UUID v7 (version 7, RFC 4122 variant), whose first
/// bytes are its millisecond. Other ids get a format-1 entry each: ids that share their first
/// bytes without being time-ordered (counters, say) would pile into one bucket prefix.
pub fn bucketed(id: EventId) -> bool {
    let b = id.as_bytes();
    b[6] >> 4 == 7 && b[8] & 0xc0 == 0x80
}

/// The bucket-naming prefix of `id`.
pub fn id_prefix(id: EventId) -> [u8; ID_PREFIX] {
    let mut p = [0u8; ID_PREFIX];
    p.copy_from_slice(&id.as_bytes()[..ID_PREFIX]);
    p
}

/// Encodes an id bucket (format 2) of `entries` (at most [`ID_BUCKET_MAX`] of them, sharing
/// their first [`ID_PREFIX`] bytes).
pub fn encode_id_bucket(entries: &[(EventId, Position)]) -> Vec<u8> {
    encode_counted(
        ID_BUCKET_FORMAT_V2,
        entries,
        ID_ENTRY_BYTES,
        |(id, p), out| {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&p.0.to_le_bytes());
        },
    )
}

/// Decodes an id bucket.
///
/// # Errors
/// [`Error::Corrupt`] on a bad length, format or checksum, or a zero position.
pub fn decode_id_bucket(bytes: &[u8]) -> Result<Vec<(EventId, Position)>, Error> {
    let bad = |reason: &str| Error::corrupt(Position::NONE, format!("id bucket: {reason}"));
    let items = counted_items(bytes, ID_BUCKET_FORMAT_V2, ID_ENTRY_BYTES).map_err(&bad)?;
    if items.len() > ID_BUCKET_MAX {
        return Err(bad("more ids than a bucket holds"));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut id = [0u8; 16];
        id.copy_from_slice(&item[..16]);
        let p = Position(u64_at(item, 16));
        if p == Position::NONE || p == Position::MAX {
            return Err(bad("position 0 or the largest position"));
        }
        out.push((EventId::from_bytes(id), p));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(chunk: u64, first: u64, count: u32) -> IndexEntry {
        IndexEntry {
            chunk: Position(chunk),
            first_position: Position(first),
            count,
        }
    }

    fn three_runs() -> StreamEntry {
        let mut e = StreamEntry::new(Version(5), run(10, 12, 2));
        e.runs.push(run(20, 20, 1));
        e.runs.push(run(30, 33, 4));
        e
    }

    #[test]
    fn multi_run_entries_round_trip_and_detect_damage() {
        let e = three_runs();
        assert_eq!((e.count(), e.last_version()), (7, Version(11)));
        let bytes = e.encode();
        assert_eq!(bytes.len(), 3 + 3 * RUN_BYTES + 4);
        assert_eq!(StreamEntry::decode(Version(5), &bytes, "x").unwrap(), e);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                StreamEntry::decode(Version(5), &bad, "x").is_err(),
                "byte {i}"
            );
            assert!(StreamEntry::decode(Version(5), &bytes[..i], "x").is_err());
        }
        // Version 0 and versions past u64::MAX are refused.
        assert!(StreamEntry::decode(Version::NONE, &bytes, "x").is_err());
        assert!(StreamEntry::decode(Version(u64::MAX - 3), &bytes, "x").is_err());
        // Runs must go forward in position.
        let mut back = e.clone();
        back.runs.swap(0, 1);
        assert!(StreamEntry::decode(Version(5), &back.encode(), "x").is_err());
    }

    #[test]
    fn single_run_formats_decode_keyed_by_their_last_version() {
        let r = run(10, 12, 3);
        let e = StreamEntry::decode(Version(9), &r.encode(), "x").unwrap();
        assert_eq!(
            (e.first_version, e.last_version()),
            (Version(7), Version(9))
        );
        assert_eq!((e.format, e.key_version()), (INDEX_FORMAT_V2, Version(9)));
        assert!(!e.extendable(), "old formats are never rewritten");
        let v1 = run(12, 12, 3);
        let e = StreamEntry::decode(Version(3), &v1.encode_v1(), "x").unwrap();
        assert_eq!((e.first_version, e.runs[0]), (Version(1), v1));
        // A run longer than the versions below its key.
        assert!(StreamEntry::decode(Version(2), &v1.encode_v1(), "x").is_err());
    }

    #[test]
    fn visible_versions_stop_at_the_bound() {
        let e = three_runs(); // versions 5-6 at 12-13, 7 at 20, 8-11 at 33-36
        assert_eq!(e.last_version_within(Position(11)), None);
        assert_eq!(e.last_version_within(Position(12)), Some(Version(5)));
        assert_eq!(e.last_version_within(Position(19)), Some(Version(6)));
        assert_eq!(e.last_version_within(Position(34)), Some(Version(9)));
        assert_eq!(e.last_version_within(Position::MAX), Some(Version(11)));
    }

    #[test]
    fn extension_only_adds_runs() {
        let old = three_runs();
        let mut new = old.clone();
        assert!(!new.extends(&old), "the same entry is no extension");
        new.runs.push(run(40, 40, 1));
        assert!(new.extends(&old));
        let mut changed = new.clone();
        changed.runs[0].count = 1;
        assert!(!changed.extends(&old));
        let mut full = StreamEntry::new(Version(1), run(1, 1, 1));
        for p in 2..=MAX_RUNS as u64 {
            assert!(full.extendable());
            full.runs.push(run(p, p, 1));
        }
        assert!(!full.extendable());
    }

    #[test]
    fn id_buckets_round_trip_and_detect_damage() {
        let a = EventId::new();
        let b = EventId::new();
        let entries = vec![(a, Position(7)), (b, Position(9))];
        let bytes = encode_id_bucket(&entries);
        assert_eq!(decode_id_bucket(&bytes).unwrap(), entries);
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x08;
            assert!(decode_id_bucket(&bad).is_err(), "byte {i}");
            assert!(decode_id_bucket(&bytes[..i]).is_err());
        }
        assert!(bucketed(a) && bucketed(b));
        assert!(!bucketed(EventId::from_bytes([0; 16])));
        // A UUID v4 (version nibble 4).
        assert!(!bucketed(EventId::from_bytes([
            0x5a, 1, 2, 3, 4, 5, 0x41, 7, 0x88, 9, 10, 11, 12, 13, 14, 15
        ])));
        let id = EventId::new();
        let e = encode_id_entry(Position(9));
        assert_eq!(decode_id_entry(&e, id).unwrap(), Position(9));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            if std::env::var_os("ANNALS_STRESS").is_some() { 100_000 } else { 2_000 }
        ))]

        /// Arbitrary bytes never panic the index decoders.
        #[test]
        fn arbitrary_index_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            key in any::<u64>(),
        ) {
            let _ = StreamEntry::decode(Version(key), &bytes, "x");
            let _ = decode_id_bucket(&bytes);
        }

        /// Mutated multi-run entries are errors or decode to exactly what was encoded.
        #[test]
        fn mutated_entries_are_errors_or_identical(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let e = three_runs();
            let good = e.encode();
            let mut bad = good.clone();
            for (i, b) in edits {
                let i = i.index(bad.len());
                bad[i] = b;
            }
            match StreamEntry::decode(Version(5), &bad, "x") {
                Ok(back) => prop_assert!(bad == good && back == e),
                Err(err) => prop_assert!(matches!(err, Error::Corrupt { .. }), "{err:?}"),
            }
        }
    }
}
