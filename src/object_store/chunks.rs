//! [`ChunkSizes`]: which chunk size each new object is written with, by its
//! path.
//!
//! A ranged read fetches whole chunks: the chunks holding the range, so up
//! to one chunk more than asked for on each side. That is nothing for an
//! engine that reads megabytes at a time (Parquet's column chunks), and
//! everything for one that reads 4 KiB blocks at any offset (an LSM tree's
//! SSTs): at 64 KiB chunks a 4 KiB block costs 64 to 128 KiB. Each object's
//! header records its chunk size, so objects of one zone may differ and
//! every reader opens each as it was written.

use crate::stream::Params;

/// The chunk size for objects read in blocks of about 4 KiB at any offset
/// (SlateDB's SST blocks): 1 KiB, so a 4 KiB block fetches about 5 KiB,
/// while the tags cost 1.6% of the stored bytes. See
/// `docs/PERFORMANCE.md` for the measurements behind it.
pub const BLOCK_CHUNK_SIZE: usize = 1024;

/// Which chunk size each new object is written with, chosen by its path:
/// the first rule whose pattern matches, else the zone's chunk size. Reads
/// use whatever chunk size each object's header records.
///
/// Keep a path's rule stable once objects exist under it: reads are exact
/// whatever the rule, but a listing cannot read every object, so it reports
/// the plaintext size an object of the listed length has at the chunk size
/// the rules give its path now.
///
/// ```
/// use cmek::object_store::{ChunkSizes, BLOCK_CHUNK_SIZE};
/// use cmek::stream::Params;
///
/// let sizes = ChunkSizes::slatedb();
/// assert_eq!(sizes.for_path("db/compacted/01J.sst").map(|p| p.chunk_size()), Some(BLOCK_CHUNK_SIZE));
/// assert_eq!(sizes.for_path("db/manifest/00001.manifest"), None); // the zone's
///
/// let lake = ChunkSizes::default().with_prefix("tables/", Params::new(1 << 20)?);
/// assert_eq!(lake.for_path("tables/t/part-0.parquet").map(|p| p.chunk_size()), Some(1 << 20));
/// # Ok::<(), cmek::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkSizes {
    rules: Vec<(Pattern, Params)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Prefix(String),
    Suffix(String),
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match self {
            Pattern::Prefix(p) => path.starts_with(p.as_str()),
            Pattern::Suffix(s) => path.ends_with(s.as_str()),
        }
    }
}

impl ChunkSizes {
    /// For SlateDB: its SSTs (`.sst`, the write-ahead log's included) in
    /// [`BLOCK_CHUNK_SIZE`] chunks, since SlateDB reads them a block (about
    /// 4 KiB) at a time at any offset; the rest (manifests, compaction
    /// state) at the zone's chunk size.
    pub fn slatedb() -> Self {
        Self::default().with_suffix(".sst", block_params())
    }

    /// Adds a rule: paths that start with `prefix` (as `Path::as_ref`
    /// spells them, no leading `/`) get `params`. Rules are tried in the
    /// order they were added.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>, params: Params) -> Self {
        self.rules.push((Pattern::Prefix(prefix.into()), params));
        self
    }

    /// Adds a rule: paths that end with `suffix` (for example `.sst`) get
    /// `params`. Rules are tried in the order they were added.
    #[must_use]
    pub fn with_suffix(mut self, suffix: impl Into<String>, params: Params) -> Self {
        self.rules.push((Pattern::Suffix(suffix.into()), params));
        self
    }

    /// The chunk layout the rules give `path`, or `None` for the zone's.
    pub fn for_path(&self, path: &str) -> Option<Params> {
        self.rules
            .iter()
            .find(|(pattern, _)| pattern.matches(path))
            .map(|(_, params)| *params)
    }
}

fn block_params() -> Params {
    Params::new(BLOCK_CHUNK_SIZE).expect("BLOCK_CHUNK_SIZE is a valid chunk size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_matching_rule_wins() {
        let small = Params::new(1024).unwrap();
        let large = Params::new(1 << 20).unwrap();
        let sizes = ChunkSizes::default()
            .with_prefix("wal/", large)
            .with_suffix(".sst", small);
        assert_eq!(sizes.for_path("wal/0001.sst"), Some(large));
        assert_eq!(sizes.for_path("compacted/0001.sst"), Some(small));
        assert_eq!(sizes.for_path("manifest/0001.manifest"), None);
        assert_eq!(ChunkSizes::default().for_path("anything"), None);
    }
}
