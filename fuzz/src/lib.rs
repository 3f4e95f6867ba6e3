//! Helpers shared by the fuzz targets: checksum fix-ups, so that mutations reach the fields
//! behind the CRCs, and a reader that takes the numbers the store derives from keys out of
//! the fuzzer's input.

use annals::{EventId, Position, StreamId, Version};
use annals_store::format::{ID_PREFIX, StreamEntry};
use annals_store::{MemDisk, layout};

/// The streams [`disk_from`] writes stream-index keys of.
pub const STREAMS: [&str; 3] = ["acc-1", "acc-2", "z-3"];

/// An in-memory disk built from the input: a marker choice, then up to seven keys, each a
/// kind byte (chunk, stream-index entry, id bucket, id entry), a number for the key, a length
/// byte and the value, whose checksums are fixed up.
pub fn disk_from(data: &[u8]) -> MemDisk {
    let mut input = Input(data);
    let disk = MemDisk::new();
    let marker = match input.byte() % 8 {
        0 => None,
        1 => Some(9),
        _ => Some(layout::STORE_FORMAT),
    };
    if let Some(m) = marker {
        disk.overwrite(layout::FORMAT_KEY, &[m]);
    }
    for _ in 0..(input.byte() % 8) {
        let kind = input.byte();
        let n = input.number();
        let len = usize::from(input.byte());
        let mut value = input.take(len).to_vec();
        let key = match kind % 5 {
            0 => {
                fix_chunk_crcs(&mut value);
                layout::event_key(Position(n)).to_vec()
            }
            1 | 2 => {
                fix_trailing_crc(&mut value);
                let Ok(s) = StreamId::new(STREAMS[usize::from(kind / 5) % 3]) else {
                    continue;
                };
                layout::stream_key(&s, Version(n))
            }
            3 => {
                fix_trailing_crc(&mut value);
                let mut prefix = [0u8; ID_PREFIX];
                prefix[..8].copy_from_slice(&n.to_le_bytes());
                layout::id_bucket_key(prefix, Position(n)).to_vec()
            }
            _ => {
                fix_trailing_crc(&mut value);
                layout::id_key(EventId::from_bytes(u128::from(n).to_be_bytes())).to_vec()
            }
        };
        disk.overwrite(&key, &value);
    }
    disk
}

/// The fuzzer's input, consumed from the front.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    /// The next byte (0 when the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    /// The next eight bytes as a little-endian number (missing bytes are 0). Numbers near
    /// the edges are likelier than uniform: the first byte picks a region.
    pub fn number(&mut self) -> u64 {
        let region = self.byte();
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        let raw = u64::from_le_bytes(b);
        match region % 4 {
            0 => raw % 64,
            1 => u64::MAX - raw % 64,
            2 => u64::from(u32::MAX).wrapping_add(raw % 64).wrapping_sub(32),
            _ => raw,
        }
    }

    /// The next `n` bytes (fewer when the input ends).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }

    /// Whatever is left.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Rewrites the last four bytes as the CRC-32 of the ones before them (the framing of index
/// entries, id entries, id buckets and snapshots).
pub fn fix_trailing_crc(bytes: &mut [u8]) {
    if bytes.len() < 4 {
        return;
    }
    let split = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[..split]);
    bytes[split..].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites the checksum of every record framed in `records` (records one after another:
/// `format | codec | body_len u32 | crc u32 | body`); a truncated last record is left as is.
pub fn fix_record_crcs(records: &mut [u8]) {
    let mut at = 0usize;
    while records.len().saturating_sub(at) >= 10 {
        let len = u32::from_le_bytes([
            records[at + 2],
            records[at + 3],
            records[at + 4],
            records[at + 5],
        ]) as usize;
        let end = (at + 10).saturating_add(len).min(records.len());
        let mut h = crc32fast::Hasher::new();
        h.update(&records[at..at + 6]);
        h.update(&records[at + 10..end]);
        let crc = h.finalize();
        records[at + 6..at + 10].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// Rewrites the record checksums of a chunk (`format | count u32 | records`).
pub fn fix_chunk_crcs(chunk: &mut [u8]) {
    if chunk.len() > 5 {
        fix_record_crcs(&mut chunk[5..]);
    }
}

/// Calls every accessor the store and `verify` use on a decoded stream-index entry, and
/// checks the promises decoding makes about its numbers.
pub fn use_entry(e: &StreamEntry) {
    assert!(e.keeps_its_promises(), "{e:?}");
}
