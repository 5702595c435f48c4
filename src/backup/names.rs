//! File names of segments in a backup and in a restore: derived from the
//! segment id, never read from a file, so no input can name a path outside
//! the directory it belongs in.
//!
//! Bytes `a-z`, `0-9`, `-`, `_` and `.` (but not a leading `.`) are kept;
//! every other byte becomes `%XX` (upper-case hex). Upper-case letters are
//! escaped too, so two ids never share a name on a case-insensitive file
//! system. A name that would exceed [`MAX_NAME`] bytes is `~` followed by the
//! SHA-256 of the id in hex (64 digits); `~` is always escaped in the first
//! form, so the two forms never collide. Names never start with `.`, which
//! is left to temporary files.

use crate::cipher::sha256;

/// Longest escaped name kept as is (file systems allow 255 bytes).
pub(crate) const MAX_NAME: usize = 200;

/// The file name of segment `segment_id`.
pub(crate) fn segment_file_name(segment_id: &str) -> String {
    let mut out = String::with_capacity(segment_id.len());
    for (i, b) in segment_id.bytes().enumerate() {
        let keep = b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || b == b'_'
            || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        if out.len() > MAX_NAME {
            break;
        }
    }
    if out.len() > MAX_NAME {
        let digest = sha256(&[segment_id.as_bytes()]);
        let mut hashed = String::from("~");
        for b in digest {
            hashed.push_str(&format!("{b:02x}"));
        }
        return hashed;
    }
    out
}

/// The temporary name a segment file is written under before it is renamed
/// into place.
pub(crate) fn partial_file_name(segment_id: &str) -> String {
    format!(".{}.partial", segment_file_name(segment_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_distinct() {
        assert_eq!(segment_file_name("seg-001.log"), "seg-001.log");
        assert_eq!(
            segment_file_name("orders/000001.log"),
            "orders%2F000001.log"
        );
        assert_eq!(segment_file_name(".."), "%2E.");
        assert_eq!(segment_file_name("A"), "%41");
        assert_eq!(segment_file_name("~x"), "%7Ex");
        assert_ne!(segment_file_name("A"), segment_file_name("a"));
        assert_eq!(segment_file_name("é"), "%C3%A9");
        let long = "x/".repeat(300);
        let name = segment_file_name(&long);
        assert!(name.starts_with('~') && name.len() == 65, "{name}");
        assert_ne!(name, segment_file_name(&"x/".repeat(301)));
        for id in ["a", "/", "a/b", &long, "%41", "."] {
            let n = segment_file_name(id);
            assert!(!n.starts_with('.') && !n.contains('/') && n.len() <= MAX_NAME + 1);
        }
        assert_eq!(partial_file_name("a"), ".a.partial");
    }
}
