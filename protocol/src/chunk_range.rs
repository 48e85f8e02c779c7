//! `Content-Range` of an upload chunk (distribution spec, "Pushing a blob
//! in chunks"): `<start>-<end>`, both inclusive byte offsets, with no unit
//! and no total, unlike HTTP's own `Content-Range`.

/// An inclusive byte range of an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

impl ChunkRange {
    /// Parses `<start>-<end>` (whitespace around it tolerated; a `bytes `
    /// prefix too, which some clients send). `None` for anything else,
    /// including an end before the start.
    pub fn parse(header: &str) -> Option<ChunkRange> {
        let text = header.trim();
        let text = text.strip_prefix("bytes ").unwrap_or(text).trim();
        let (start, end) = text.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(start) || !digits(end) {
            return None;
        }
        let (start, end) = (start.parse().ok()?, end.parse().ok()?);
        (start <= end).then_some(ChunkRange { start, end })
    }

    pub fn length(&self) -> u64 {
        self.end - self.start + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_examples_and_refuses_the_rest() {
        assert_eq!(
            ChunkRange::parse("0-1023"),
            Some(ChunkRange {
                start: 0,
                end: 1023
            })
        );
        assert_eq!(
            ChunkRange::parse(" bytes 10-19 "),
            Some(ChunkRange { start: 10, end: 19 })
        );
        assert_eq!(ChunkRange::parse("5-5").map(|r| r.length()), Some(1));
        for bad in [
            "",
            "-",
            "5-",
            "-5",
            "9-3",
            "a-b",
            "1-2-3",
            "+1-2",
            "1 - 2",
            "0-99999999999999999999999",
        ] {
            assert_eq!(ChunkRange::parse(bad), None, "{bad}");
        }
    }
}
