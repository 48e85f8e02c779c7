//! Record keys of type `tid`: 13 characters of sortable base32 encoding a
//! microsecond timestamp and a 10-bit clock id (ATProto record key spec).

const ALPHABET: &[u8; 32] = b"234567abcdefghijklmnopqrstuvwxyz";

/// A TID for `micros` since the Unix epoch and a `clock_id` (0..1024).
pub fn tid(micros: u64, clock_id: u16) -> String {
    let value = ((micros & ((1 << 53) - 1)) << 10) | u64::from(clock_id & 0x3ff);
    (0..13)
        .rev()
        .map(|i| ALPHABET[((value >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_are_13_chars_and_sort_by_time() {
        let a = tid(1_700_000_000_000_000, 1);
        let b = tid(1_700_000_000_000_001, 0);
        assert_eq!(a.len(), 13);
        assert!(a < b);
        // The first character of any current TID is in 2..=j (top bit zero).
        assert!(matches!(a.as_bytes()[0], b'2'..=b'9' | b'a'..=b'j'), "{a}");
        assert_eq!(tid(0, 0), "2222222222222");
    }
}
