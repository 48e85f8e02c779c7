//! Chunk sizes of blob uploads: the bounds the registry announces to
//! clients (`OCI-Chunk-Min-Length`, and the distribution spec's proposed
//! `OCI-Chunk-Max-Length`) and which sequences of chunks storage can
//! assemble into one blob.
//!
//! Each chunk becomes one part of a multipart upload. S3-compatible stores
//! refuse parts under 5 MiB except the last; R2 (through its binding and
//! its S3 API alike) also needs every part but the last to have the same
//! size, and the last to be no longer. The registry holds no bytes between
//! requests, so it cannot re-cut chunks into equal parts: it refuses a chunk
//! that would break these rules, naming the sizes, before reading it.
//!
//! On Cloudflare a request body over the plan's limit never reaches the
//! Worker (the edge answers 413), so the largest chunk announced stays
//! under the limit the deployment declares.

/// The shortest part storage takes, except the last.
pub const MIN_CHUNK: u64 = 5 * 1024 * 1024;

/// The parts a chunk without `Content-Length` is cut into; the largest
/// chunk announced is a multiple of it.
pub const PART_SIZE: u64 = 16 * 1024 * 1024;

/// The longest part S3 takes.
pub const MAX_PART: u64 = 5 * 1024 * 1024 * 1024;

/// Cloudflare's request body limit on the Free and Pro plans ("100 MB",
/// read as the smaller, decimal megabytes).
pub const DEFAULT_BODY_LIMIT: u64 = 100_000_000;

/// The largest chunk to announce when request bodies may be at most
/// `body_limit` bytes (0: no limit): the limit rounded down to a multiple of
/// `PART_SIZE` (of `MIN_CHUNK` for a limit under it), never below
/// `MIN_CHUNK` nor above `MAX_PART`.
pub fn max_chunk(body_limit: u64) -> u64 {
    let ceiling = match body_limit {
        0 => MAX_PART,
        limit => limit.min(MAX_PART),
    };
    let aligned = ceiling / PART_SIZE * PART_SIZE;
    if aligned > 0 {
        return aligned;
    }
    (ceiling / MIN_CHUNK * MIN_CHUNK).max(MIN_CHUNK)
}

/// One part of a blob sent straight to storage: its number (from 1), where
/// it starts in the blob and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedPart {
    pub number: u32,
    pub offset: u64,
    pub len: u64,
}

/// The part size for a blob of `size` bytes when `wanted` is asked for:
/// at least `MIN_CHUNK`, at most `MAX_PART`, and large enough that the blob
/// fits in `hold_api::MAX_PARTS` parts (rounded up to whole MiB then).
pub fn part_size_for(size: u64, wanted: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let max_parts = u64::from(crate::hold_api::MAX_PARTS);
    let fitting = size.div_ceil(max_parts).div_ceil(MIB) * MIB;
    wanted.max(fitting).clamp(MIN_CHUNK, MAX_PART)
}

/// A blob of `size` bytes cut into parts of `part_size` (see
/// `part_size_for`): all of one size but the last, which is shorter or
/// equal, as R2 and S3 assemble them. An empty blob is one empty part.
pub fn plan_parts(size: u64, part_size: u64) -> Vec<PlannedPart> {
    let part_size = part_size.max(1);
    let count = size.div_ceil(part_size).max(1);
    (0..count)
        .map(|i| {
            let offset = i * part_size;
            PlannedPart {
                number: i as u32 + 1,
                offset,
                len: part_size.min(size - offset),
            }
        })
        .collect()
}

/// The parts an upload has so far, as far as the next chunk cares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartsSoFar {
    /// Length of the first part: the one every middle part must match.
    pub first: Option<u64>,
    /// Length of the last part, which more bytes turn into a middle one.
    pub last: Option<u64>,
}

/// Why a chunk cannot follow the parts sent so far; `Display` names the sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkRefusal {
    /// The previous chunk is too short to be followed.
    PreviousTooShort { previous: u64 },
    /// The previous chunk was shorter than the first, so it had to be the last.
    PreviousUneven { first: u64, previous: u64 },
    /// This chunk is longer than the first.
    Longer { first: u64, this: u64 },
    /// A chunk without `Content-Length` (cut into `PART_SIZE` parts) after
    /// chunks of another size.
    StreamedAfterOtherSize { first: u64 },
}

impl std::fmt::Display for ChunkRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkRefusal::PreviousTooShort { previous } => write!(
                f,
                "the previous chunk was {previous} bytes: every chunk but the last must be at least {MIN_CHUNK} bytes (OCI-Chunk-Min-Length)"
            ),
            ChunkRefusal::PreviousUneven { first, previous } => write!(
                f,
                "the previous chunk was {previous} bytes, shorter than the first ({first} bytes), so it had to be the last: storage assembles a blob only from chunks of one size, the last of which may be shorter"
            ),
            ChunkRefusal::Longer { first, this } => write!(
                f,
                "this chunk is {this} bytes, longer than the first ({first} bytes): storage assembles a blob only from chunks of one size, the last of which may be shorter; send {first}-byte chunks"
            ),
            ChunkRefusal::StreamedAfterOtherSize { first } => write!(
                f,
                "a chunk without Content-Length is cut into {PART_SIZE}-byte parts, which cannot follow {first}-byte chunks: storage assembles a blob only from parts of one size; send Content-Length"
            ),
        }
    }
}

/// Whether a chunk of `this` bytes (`None`: no `Content-Length`, cut into
/// `PART_SIZE` parts) may follow `parts`.
pub fn check_next(parts: PartsSoFar, this: Option<u64>) -> Result<(), ChunkRefusal> {
    let (Some(first), Some(last)) = (parts.first, parts.last) else {
        // No part yet (or an upload from before `first` was kept): any size.
        return match parts.last {
            Some(previous) if previous < MIN_CHUNK => {
                Err(ChunkRefusal::PreviousTooShort { previous })
            }
            _ => Ok(()),
        };
    };
    if last < MIN_CHUNK {
        return Err(ChunkRefusal::PreviousTooShort { previous: last });
    }
    if last != first {
        return Err(ChunkRefusal::PreviousUneven {
            first,
            previous: last,
        });
    }
    match this {
        Some(this) if this > first => Err(ChunkRefusal::Longer { first, this }),
        None if first != PART_SIZE => Err(ChunkRefusal::StreamedAfterOtherSize { first }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn parts_are_planned_of_one_size_with_a_shorter_last() {
        let plan = plan_parts(25 * MIB, 8 * MIB);
        let lens: Vec<u64> = plan.iter().map(|p| p.len).collect();
        assert_eq!(lens, [8 * MIB, 8 * MIB, 8 * MIB, MIB]);
        assert_eq!(plan[3].offset, 24 * MIB);
        assert_eq!(plan[3].number, 4);
        assert_eq!(plan_parts(16 * MIB, 8 * MIB).len(), 2);
        assert_eq!(
            plan_parts(0, 8 * MIB),
            [PlannedPart {
                number: 1,
                offset: 0,
                len: 0
            }]
        );
        assert_eq!(plan_parts(1, 8 * MIB)[0].len, 1);
        for size in [0, 1, 5 * MIB, 33 * MIB + 7] {
            let plan = plan_parts(size, MIN_CHUNK);
            assert_eq!(plan.iter().map(|p| p.len).sum::<u64>(), size);
        }
    }

    #[test]
    fn part_sizes_respect_storage_limits() {
        // (blob size, wanted, chosen)
        for (size, wanted, chosen) in [
            (100 * MIB, 64 * MIB, 64 * MIB),
            (100 * MIB, MIB, MIN_CHUNK),             // S3's smallest part
            (100 * MIB, 10 * MAX_PART, MAX_PART),    // S3's largest
            (200 * 1024 * MIB, 16 * MIB, 21 * MIB),  // 200 GiB: 10,000 parts at most
            (10_000 * 64 * MIB, 64 * MIB, 64 * MIB), // exactly 10,000 parts
            (10_000 * 64 * MIB + 1, 64 * MIB, 65 * MIB), // one byte more
        ] {
            let part = part_size_for(size, wanted);
            assert_eq!(part, chosen, "{size} {wanted}");
            assert!(plan_parts(size, part).len() <= 10_000);
        }
    }

    #[test]
    fn max_chunk_stays_under_the_limit_on_part_boundaries() {
        for (limit, max) in [
            (100_000_000, 80 * MIB),  // Free and Pro
            (100 * MIB, 96 * MIB),    // the limit read as MiB
            (200_000_000, 176 * MIB), // Business
            (500_000_000, 464 * MIB), // Enterprise
            (0, MAX_PART),            // no limit: S3's largest part
            (u64::MAX, MAX_PART),     // beyond S3's largest part
            (12 * MIB, 10 * MIB),     // under one part: MIN_CHUNK steps
            (MIB, MIN_CHUNK),         // under MIN_CHUNK: MIN_CHUNK still
        ] {
            assert_eq!(max_chunk(limit), max, "limit {limit}");
            assert!(max_chunk(limit) >= MIN_CHUNK);
        }
    }

    fn parts(first: u64, last: u64) -> PartsSoFar {
        PartsSoFar {
            first: Some(first),
            last: Some(last),
        }
    }

    #[test]
    fn chunks_of_one_size_then_a_shorter_last_are_taken() {
        let none = PartsSoFar::default();
        assert_eq!(check_next(none, Some(1)), Ok(()));
        assert_eq!(check_next(none, Some(80 * MIB)), Ok(()));
        assert_eq!(check_next(none, None), Ok(()));
        assert_eq!(check_next(parts(6 * MIB, 6 * MIB), Some(6 * MIB)), Ok(()));
        assert_eq!(check_next(parts(6 * MIB, 6 * MIB), Some(10)), Ok(()));
        assert_eq!(check_next(parts(PART_SIZE, PART_SIZE), None), Ok(()));
        // An upload sealed before the first part's length was kept.
        let old = PartsSoFar {
            first: None,
            last: Some(6 * MIB),
        };
        assert_eq!(check_next(old, Some(9 * MIB)), Ok(()));
    }

    #[test]
    fn chunks_storage_cannot_assemble_are_refused_with_their_sizes() {
        let short = check_next(parts(6 * MIB, 1000), Some(MIB)).unwrap_err();
        assert_eq!(short, ChunkRefusal::PreviousTooShort { previous: 1000 });
        assert!(short.to_string().contains("1000 bytes"));
        let old = PartsSoFar {
            first: None,
            last: Some(1000),
        };
        assert_eq!(
            check_next(old, Some(MIB)),
            Err(ChunkRefusal::PreviousTooShort { previous: 1000 })
        );

        let uneven = check_next(parts(8 * MIB, 6 * MIB), Some(MIB)).unwrap_err();
        assert_eq!(
            uneven,
            ChunkRefusal::PreviousUneven {
                first: 8 * MIB,
                previous: 6 * MIB
            }
        );
        assert!(uneven.to_string().contains("8388608 bytes"));
        assert!(uneven.to_string().contains("6291456 bytes"));

        let longer = check_next(parts(6 * MIB, 6 * MIB), Some(7 * MIB)).unwrap_err();
        assert_eq!(
            longer,
            ChunkRefusal::Longer {
                first: 6 * MIB,
                this: 7 * MIB
            }
        );
        assert!(longer.to_string().contains("7340032 bytes"));

        assert_eq!(
            check_next(parts(6 * MIB, 6 * MIB), None),
            Err(ChunkRefusal::StreamedAfterOtherSize { first: 6 * MIB })
        );
    }
}
