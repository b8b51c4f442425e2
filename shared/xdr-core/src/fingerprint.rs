//! Identity of one alert version: (`id`, `lastUpdateDateTime` as an instant).

use chrono::{DateTime, Utc};
use xxhash_rust::xxh3::Xxh3;

/// A 64-bit fingerprint of an alert version. Stable across processes and releases (XXH3 is a
/// fixed algorithm), so it can be persisted. Two versions of the same alert differ in their
/// instant; two spellings of one instant (`.5Z` vs `.5000000Z`) are the same version.
pub fn version_fingerprint(id: &str, last_update: DateTime<Utc>) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(id.as_bytes());
    // A separator byte that cannot occur in UTF-8 keeps ("ab", t) and ("a", "b"+t) apart.
    hasher.update(&[0xff]);
    hasher.update(&last_update.timestamp().to_le_bytes());
    hasher.update(&last_update.timestamp_subsec_nanos().to_le_bytes());
    hasher.digest()
}

/// Fingerprint of a raw record's bytes, for records that have no usable identity (quarantine).
pub fn content_fingerprint(raw: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeutil::parse_instant;

    #[test]
    fn same_instant_different_spelling_is_same_version() {
        let a = version_fingerprint("x", parse_instant("2026-01-01T00:00:00.5Z").unwrap());
        let b = version_fingerprint("x", parse_instant("2026-01-01T00:00:00.5000000Z").unwrap());
        assert_eq!(a, b);
    }

    #[test]
    fn different_ids_or_instants_differ() {
        let t = parse_instant("2026-01-01T00:00:00Z").unwrap();
        let u = parse_instant("2026-01-01T00:00:00.0000001Z").unwrap();
        assert_ne!(version_fingerprint("x", t), version_fingerprint("y", t));
        assert_ne!(version_fingerprint("x", t), version_fingerprint("x", u));
    }

    const PINNED: u64 = 6_554_099_777_926_239_094;

    #[test]
    fn fingerprint_is_stable_across_releases() {
        // Persisted state depends on this value never changing.
        let t = parse_instant("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(version_fingerprint("alert-1", t), PINNED);
    }
}
