//! The dedup memory: which alert versions were already written.
//!
//! Kept per minute of `lastUpdateDateTime` so it can be pruned by time: only versions that a later
//! window can re-read (those at or after the next window's start) need remembering. That has no
//! bound: a bulk job that touches 100k alerts in ten minutes puts 100k versions inside the
//! overlap. So the memory also knows which entries are new since it was last *spilled* into
//! immutable chunks (see `state::ChunkedSave`): a store whose items are bounded keeps those
//! chunks apart and only the new entries in its small head item.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};

use crate::fingerprint::version_fingerprint;

const ENCODING_VERSION: u8 = 1;

/// A set of alert-version fingerprints bucketed by the minute of their `lastUpdateDateTime`.
#[derive(Debug, Clone, Default)]
pub struct SeenVersions {
    buckets: BTreeMap<i64, HashSet<u64>>,
    /// Entries inserted since the last spill, in insertion order: the ones in no chunk yet.
    unspilled: Vec<SeenEntry>,
}

/// Two memories are equal when they remember the same versions, however they are stored.
impl PartialEq for SeenVersions {
    fn eq(&self, other: &Self) -> bool {
        self.buckets == other.buckets
    }
}

impl Eq for SeenVersions {}

/// A piece of the memory in its binary form (see `encode_in_pieces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPiece {
    pub bytes: Vec<u8>,
    pub last_minute: i64,
    pub entries: usize,
}

/// One remembered version: the minute bucket it lives in and its fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeenEntry {
    pub minute: i64,
    pub fingerprint: u64,
}

impl SeenEntry {
    pub fn new(id: &str, last_update: DateTime<Utc>) -> Self {
        Self {
            minute: last_update.timestamp().div_euclid(60),
            fingerprint: version_fingerprint(id, last_update),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("dedup state is corrupt: {0}")]
pub struct SeenDecodeError(pub &'static str);

impl SeenVersions {
    pub fn contains(&self, entry: SeenEntry) -> bool {
        self.buckets.get(&entry.minute).is_some_and(|bucket| bucket.contains(&entry.fingerprint))
    }

    /// Returns true when the entry was not there before.
    pub fn insert(&mut self, entry: SeenEntry) -> bool {
        let new = self.buckets.entry(entry.minute).or_default().insert(entry.fingerprint);
        if new {
            self.unspilled.push(entry);
        }
        new
    }

    /// Takes in entries read back from a chunk: remembered, and already spilled.
    pub fn absorb_spilled(&mut self, chunk: SeenVersions) {
        for (minute, bucket) in chunk.buckets {
            self.buckets.entry(minute).or_default().extend(bucket);
        }
    }

    /// The entries in no chunk yet.
    pub fn unspilled(&self) -> &[SeenEntry] {
        &self.unspilled
    }

    /// Marks every entry as in no chunk: the next save stores all of them anew.
    pub fn mark_all_unspilled(&mut self) {
        self.unspilled = self
            .buckets
            .iter()
            .flat_map(|(minute, bucket)| {
                bucket.iter().map(move |fingerprint| SeenEntry { minute: *minute, fingerprint: *fingerprint })
            })
            .collect();
    }

    /// Marks every entry as spilled (stored in chunks).
    pub fn mark_spilled(&mut self) {
        self.unspilled = Vec::new();
    }

    /// The first minute remembered, if any.
    pub fn first_minute(&self) -> Option<i64> {
        self.buckets.keys().next().copied()
    }

    pub fn remove(&mut self, entry: SeenEntry) {
        if let Some(bucket) = self.buckets.get_mut(&entry.minute) {
            bucket.remove(&entry.fingerprint);
            if bucket.is_empty() {
                self.buckets.remove(&entry.minute);
            }
        }
    }

    pub fn extend(&mut self, entries: impl IntoIterator<Item = SeenEntry>) {
        for entry in entries {
            self.insert(entry);
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = SeenEntry> + '_ {
        self.buckets.iter().flat_map(|(minute, bucket)| {
            bucket.iter().map(|fingerprint| SeenEntry { minute: *minute, fingerprint: *fingerprint })
        })
    }

    /// Forgets versions whose whole minute lies before `cutoff`. Entries in the minute that
    /// contains `cutoff` are kept: remembering a little too much is harmless.
    pub fn prune_before(&mut self, cutoff: DateTime<Utc>) {
        self.prune_before_minute(cutoff.timestamp().div_euclid(60));
    }

    /// Forgets every minute before `first_kept_minute`.
    pub fn prune_before_minute(&mut self, first_kept_minute: i64) {
        self.buckets = self.buckets.split_off(&first_kept_minute);
        self.unspilled.retain(|entry| entry.minute >= first_kept_minute);
    }

    /// `entries` in the binary form of `to_bytes`, cut into pieces of at most `max_bytes` each
    /// (one minute may span pieces), each with its newest minute and how many entries it holds.
    pub fn encode_in_pieces(entries: &[SeenEntry], max_bytes: usize) -> Vec<EncodedPiece> {
        let mut sorted = entries.to_vec();
        sorted.sort_unstable_by_key(|entry| (entry.minute, entry.fingerprint));
        sorted.dedup();
        // Header (1) + one minute's header (12) + one fingerprint (8) must fit.
        let max_bytes = max_bytes.max(21);
        let mut pieces = Vec::new();
        let mut piece = SeenVersions::default();
        let mut piece_bytes = 1;
        let finish = |piece: &SeenVersions| EncodedPiece {
            bytes: piece.to_bytes(),
            last_minute: piece.buckets.keys().next_back().copied().unwrap_or(i64::MIN),
            entries: piece.len(),
        };
        for entry in sorted {
            let cost = if piece.buckets.contains_key(&entry.minute) { 8 } else { 20 };
            if piece_bytes + cost > max_bytes {
                pieces.push(finish(&piece));
                piece = SeenVersions::default();
                piece_bytes = 1;
            }
            piece_bytes += if piece.buckets.contains_key(&entry.minute) { 8 } else { 20 };
            piece.buckets.entry(entry.minute).or_default().insert(entry.fingerprint);
        }
        if !piece.buckets.is_empty() {
            pieces.push(finish(&piece));
        }
        pieces
    }

    /// The binary form of just `entries` (as `to_bytes` would encode a memory of them).
    pub fn encode_entries(entries: &[SeenEntry]) -> Vec<u8> {
        let mut only = SeenVersions::default();
        for entry in entries {
            only.buckets.entry(entry.minute).or_default().insert(entry.fingerprint);
        }
        only.to_bytes()
    }

    /// Compact, deterministic binary form: version byte, then per bucket (ascending minute):
    /// minute (i64 LE), count (u32 LE), fingerprints (u64 LE, ascending).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.buckets.len() * 12 + self.len() * 8);
        out.push(ENCODING_VERSION);
        for (minute, bucket) in &self.buckets {
            out.extend_from_slice(&minute.to_le_bytes());
            out.extend_from_slice(&(bucket.len() as u32).to_le_bytes());
            let mut sorted: Vec<u64> = bucket.iter().copied().collect();
            sorted.sort_unstable();
            for fingerprint in sorted {
                out.extend_from_slice(&fingerprint.to_le_bytes());
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SeenDecodeError> {
        let (&version, mut rest) = bytes.split_first().ok_or(SeenDecodeError("empty"))?;
        if version != ENCODING_VERSION {
            return Err(SeenDecodeError("unknown encoding version"));
        }
        let mut seen = SeenVersions::default();
        let mut decoded = Vec::new();
        while !rest.is_empty() {
            let minute = i64::from_le_bytes(take::<8>(&mut rest)?);
            let count = u32::from_le_bytes(take::<4>(&mut rest)?) as usize;
            if rest.len() < count.saturating_mul(8) {
                return Err(SeenDecodeError("truncated bucket"));
            }
            let bucket = seen.buckets.entry(minute).or_default();
            for _ in 0..count {
                let fingerprint = u64::from_le_bytes(take::<8>(&mut rest)?);
                if bucket.insert(fingerprint) {
                    decoded.push(SeenEntry { minute, fingerprint });
                }
            }
        }
        // Decoded entries are in no chunk: a store that spills decides that, not the encoding.
        seen.unspilled = decoded;
        Ok(seen)
    }
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], SeenDecodeError> {
    if rest.len() < N {
        return Err(SeenDecodeError("truncated"));
    }
    let (head, tail) = rest.split_at(N);
    *rest = tail;
    head.try_into().map_err(|_| SeenDecodeError("truncated"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil::parse_instant;
    use chrono::TimeDelta;

    fn at(text: &str) -> DateTime<Utc> {
        parse_instant(text).unwrap()
    }

    #[test]
    fn remembers_and_prunes_by_minute() {
        let mut seen = SeenVersions::default();
        let old = SeenEntry::new("a", at("2026-01-01T00:00:10Z"));
        let edge = SeenEntry::new("b", at("2026-01-01T00:01:59Z"));
        let new = SeenEntry::new("c", at("2026-01-01T00:05:00Z"));
        assert!(seen.insert(old));
        assert!(!seen.insert(old));
        seen.extend([edge, new]);
        seen.prune_before(at("2026-01-01T00:01:30Z"));
        assert!(!seen.contains(old));
        assert!(seen.contains(edge), "the cutoff's own minute is kept");
        assert!(seen.contains(new));
        assert_eq!(seen.len(), 2);
    }

    #[test]
    fn binary_form_round_trips_and_rejects_truncation() {
        let mut seen = SeenVersions::default();
        let base = at("2026-01-01T00:00:00Z");
        for i in 0..500 {
            seen.insert(SeenEntry::new(&format!("alert-{i}"), base + TimeDelta::seconds(i * 7)));
        }
        let bytes = seen.to_bytes();
        assert_eq!(SeenVersions::from_bytes(&bytes).unwrap(), seen);
        assert_eq!(bytes, SeenVersions::from_bytes(&bytes).unwrap().to_bytes());
        assert!(SeenVersions::from_bytes(&bytes[..bytes.len() - 3]).is_err());
        assert!(SeenVersions::from_bytes(&[]).is_err());
        assert!(SeenVersions::from_bytes(&[9]).is_err());
    }

    #[test]
    fn a_sustained_thousand_updates_a_minute_fits_a_dynamodb_item() {
        // 15 minutes of overlap + a 5-minute interval + a slice in progress, at 1,000 per minute.
        let mut seen = SeenVersions::default();
        let base = at("2026-01-01T00:00:00Z");
        for i in 0..30_000i64 {
            seen.insert(SeenEntry::new(
                &format!("da6375512276775608{i:02}_-961444813"),
                base + TimeDelta::milliseconds(i * 60),
            ));
        }
        let encoded = seen.to_bytes().len();
        assert!(encoded < 300 * 1024, "encoded dedup state is {encoded} bytes");
    }
}
