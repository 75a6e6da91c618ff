//! Snapshots: everything needed to rebuild a room, in a versioned, checksummed binary file, and
//! the retention rule that decides which snapshots to keep.
//!
//! File layout (little-endian): `ERSN` magic, format `u16`, seq `u64`, created_ms `u64`,
//! CRC-32 of the body `u32`, body length `u32`, then the body: the postcard encoding of
//! [`Snapshot`].

use edgeroom_protocol::StateEntry;
use serde::{Deserialize, Serialize};

use crate::StoredEvent;

/// The snapshot format this code writes and reads.
pub const SNAPSHOT_FORMAT: u16 = 1;

const MAGIC: &[u8; 4] = b"ERSN";
const HEADER_LEN: usize = 4 + 2 + 8 + 8 + 4 + 4;

/// A room at one sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The tenant.
    pub tenant: String,
    /// The room.
    pub room: String,
    /// The room's sequence number.
    pub seq: u64,
    /// When the snapshot was taken, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The whole shared state.
    pub state: Vec<StateEntry>,
    /// The most recent history (up to the configured number of events), in order.
    pub events: Vec<StoredEvent>,
    /// The room's persistent sequences (connection ids, …), so ids are never reused.
    pub sequences: Vec<(String, u64)>,
}

/// Why bytes are not a readable snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Too short, or not starting with the magic bytes.
    #[error("not an edgeroom snapshot")]
    NotASnapshot,
    /// Written by a newer format.
    #[error("snapshot format {0} is not supported (this build reads format {SNAPSHOT_FORMAT})")]
    UnsupportedFormat(u16),
    /// The body does not match its length or checksum.
    #[error("the snapshot is corrupted: {0}")]
    Corrupted(String),
}

/// The R2 key of a room's snapshot at `seq`; the zero-padded seq sorts keys in seq order.
pub fn snapshot_key(tenant: &str, room: &str, seq: u64) -> String {
    format!("snapshots/{tenant}/{room}/{seq:020}.snap")
}

impl Snapshot {
    /// Encodes the snapshot with its header. Returns the bytes and the body's CRC-32.
    pub fn encode(&self) -> Result<(Vec<u8>, u32), SnapshotError> {
        let body = postcard::to_stdvec(self).map_err(|e| SnapshotError::Corrupted(e.to_string()))?;
        let checksum = crc32(&body);
        let body_len =
            u32::try_from(body.len()).map_err(|_| SnapshotError::Corrupted("body over 4 GiB".into()))?;
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.created_ms.to_le_bytes());
        out.extend_from_slice(&checksum.to_le_bytes());
        out.extend_from_slice(&body_len.to_le_bytes());
        out.extend_from_slice(&body);
        Ok((out, checksum))
    }

    /// Decodes and verifies a snapshot.
    pub fn decode(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let (header, body) = bytes.split_at_checked(HEADER_LEN).ok_or(SnapshotError::NotASnapshot)?;
        let mut reader = Reader(header);
        if reader.take::<4>() != Some(*MAGIC) {
            return Err(SnapshotError::NotASnapshot);
        }
        let field = |bytes: Option<[u8; 8]>| bytes.map(u64::from_le_bytes).ok_or(SnapshotError::NotASnapshot);
        let format = reader.take::<2>().map(u16::from_le_bytes).ok_or(SnapshotError::NotASnapshot)?;
        if format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::UnsupportedFormat(format));
        }
        let seq = field(reader.take::<8>())?;
        let _created_ms = field(reader.take::<8>())?;
        let checksum = reader.take::<4>().map(u32::from_le_bytes).ok_or(SnapshotError::NotASnapshot)?;
        let body_len = reader.take::<4>().map(u32::from_le_bytes).ok_or(SnapshotError::NotASnapshot)?;
        if body.len() != body_len as usize {
            return Err(SnapshotError::Corrupted(format!(
                "body is {} bytes, header says {body_len}",
                body.len()
            )));
        }
        if crc32(body) != checksum {
            return Err(SnapshotError::Corrupted("checksum mismatch".into()));
        }
        let snapshot: Snapshot =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Corrupted(e.to_string()))?;
        if snapshot.seq != seq {
            return Err(SnapshotError::Corrupted("header and body disagree on seq".into()));
        }
        Ok(snapshot)
    }
}

/// R2 snapshot objects that no index row names (their flush failed after the R2 write) and that
/// are older than `min_age_ms`, so a flush still writing its index row is never touched.
pub fn orphaned_snapshots<'a>(
    listed: &'a [(String, u64)],
    indexed: &std::collections::HashSet<String>,
    now_ms: u64,
    min_age_ms: u64,
) -> Vec<&'a str> {
    listed
        .iter()
        .filter(|(key, uploaded_ms)| {
            !indexed.contains(key) && now_ms.saturating_sub(*uploaded_ms) >= min_age_ms
        })
        .map(|(key, _)| key.as_str())
        .collect()
}

/// CRC-32 (IEEE 802.3, the one of zlib and `crc32fast`), a byte at a time with a 1 KiB table:
/// `crc32fast`'s 16 KiB slice-by-16 table weighed more in the Worker than snapshots need speed.
fn crc32(bytes: &[u8]) -> u32 {
    // Evaluated at compile time: an index out of bounds would fail the build, not panic.
    #[allow(clippy::indexing_slicing)]
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &byte| {
        let index = usize::from((crc as u8) ^ byte);
        // `index` is below 256: the table lookup cannot fail.
        TABLE.get(index).copied().unwrap_or_default() ^ (crc >> 8)
    })
}

/// Reads fixed-size fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// One stored snapshot, as the index lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its seq.
    pub seq: u64,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// Which snapshots of one room retention deletes: it keeps the newest `keep_last`, plus the
/// newest snapshot of each of the last `daily_days` days (UTC) before `now_ms`.
pub fn snapshots_to_delete(
    snapshots: &[SnapshotInfo],
    now_ms: u64,
    keep_last: usize,
    daily_days: u64,
) -> Vec<u64> {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let mut newest_first: Vec<SnapshotInfo> = snapshots.to_vec();
    newest_first.sort_by_key(|info| std::cmp::Reverse(info.seq));
    let today = now_ms / DAY_MS;
    let mut days_kept = std::collections::BTreeSet::new();
    newest_first
        .iter()
        .enumerate()
        .filter(|(rank, info)| {
            let day = info.created_ms / DAY_MS;
            let within_days = today.saturating_sub(day) < daily_days;
            let first_of_its_day = within_days && days_kept.insert(day);
            *rank >= keep_last && !first_of_its_day
        })
        .map(|(_, info)| info.seq)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeroom_protocol::{Body, Event, EventKind};

    #[test]
    fn crc32_is_the_ieee_checksum() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the standard check value");
        let bytes: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in [1, 7, 16, 17, 255, 4096, 5000] {
            assert_eq!(crc32(&bytes[..len]), crc32fast::hash(&bytes[..len]), "{len} bytes");
        }
    }

    fn sample() -> Snapshot {
        Snapshot {
            tenant: "acme".into(),
            room: "lobby".into(),
            seq: 42,
            created_ms: 1_700_000_000_000,
            state: vec![StateEntry {
                key: "k".into(),
                value: Body::from_json(r#"{"a":[1]}"#).unwrap(),
                seq: 40,
            }],
            events: vec![StoredEvent {
                event: Event {
                    seq: 42,
                    kind: EventKind::Message,
                    body: Body::from_json("\"hi\"").unwrap(),
                    sender: Some(3),
                    topic: None,
                    key: None,
                },
                op_id: Some("op".into()),
                at_ms: 5,
            }],
            sequences: vec![("connection".into(), 9)],
        }
    }

    #[test]
    fn round_trips_and_names_keys_in_seq_order() {
        let (bytes, checksum) = sample().encode().unwrap();
        assert_eq!(Snapshot::decode(&bytes).unwrap(), sample());
        assert_eq!(checksum, crc32(&bytes[HEADER_LEN..]));
        assert_eq!(snapshot_key("acme", "lobby", 42), "snapshots/acme/lobby/00000000000000000042.snap");
        assert!(snapshot_key("a", "b", 9) < snapshot_key("a", "b", 10));
    }

    #[test]
    fn corruption_is_detected() {
        let (mut bytes, _) = sample().encode().unwrap();
        assert_eq!(Snapshot::decode(&bytes[..10]), Err(SnapshotError::NotASnapshot));
        assert_eq!(Snapshot::decode(b"nope, not at all a snapshot file"), Err(SnapshotError::NotASnapshot));
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert!(matches!(Snapshot::decode(&bytes), Err(SnapshotError::Corrupted(_))));
        let (mut newer, _) = sample().encode().unwrap();
        newer[4] = 9;
        assert_eq!(Snapshot::decode(&newer), Err(SnapshotError::UnsupportedFormat(9)));
    }

    #[test]
    fn retention_keeps_the_last_k_and_one_per_day() {
        const DAY: u64 = 24 * 60 * 60 * 1000;
        let now = 100 * DAY + 1000;
        // Three snapshots a day over the last 10 days, seq increasing with time.
        let mut snapshots = Vec::new();
        for day in 0..10u64 {
            for i in 0..3u64 {
                let seq = day * 3 + i + 1;
                snapshots.push(SnapshotInfo { seq, created_ms: (91 + day) * DAY + i * 1000 });
            }
        }
        let deleted = snapshots_to_delete(&snapshots, now, 4, 7);
        let kept: Vec<u64> = snapshots.iter().map(|s| s.seq).filter(|seq| !deleted.contains(seq)).collect();
        // The newest 4 (27..=30) plus the newest of each of days 94..=100 (day 100 is today:
        // seqs 30 and before): 12, 15, 18, 21, 24 besides those already kept.
        assert_eq!(kept, vec![12, 15, 18, 21, 24, 27, 28, 29, 30]);
    }

    #[test]
    fn only_old_unindexed_objects_are_orphans() {
        let listed = vec![("a".to_owned(), 0), ("b".to_owned(), 0), ("c".to_owned(), 9_500)];
        let indexed = ["a".to_owned()].into_iter().collect();
        assert_eq!(orphaned_snapshots(&listed, &indexed, 10_000, 1_000), vec!["b"]);
        assert_eq!(orphaned_snapshots(&listed, &indexed, 10_000, 0), vec!["b", "c"]);
    }
}
