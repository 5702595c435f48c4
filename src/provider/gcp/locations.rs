//! Which Google Cloud regions a Cloud KMS location serves: one table,
//! written from Google's published list of Cloud KMS locations.
//!
//! A *region*, for a Cloud KMS key, is a Google Cloud region name such as
//! `us-central1` or `europe-west1`: where a zone's data lives. A key's own
//! region ([`KeyRef::region`](crate::KeyRef::region)) is its location id,
//! which for a multi-region or `global` key is not a region but the name
//! of a set of them (`europe`, `nam4`, `global`).
//!
//! * A key in a **regional** location serves that region only.
//! * A key in a **multi-region** location — the large ones (`us`, `europe`,
//!   `asia`, `ca`) and the ones Google once called dual-regions (`nam4`,
//!   `eur4`, `asia1`, ...) — serves every region whose data centers the
//!   location spans, as listed in [`MULTI_REGIONS`]. Data centers without a
//!   public region (Oklahoma, in several `nam` locations) have no entry.
//! * A key in **`global`** serves every region in [`REGIONS`].
//!
//! A location missing from the table serves only itself, so a new Google
//! location is refused across regions (never accepted wrongly) until its
//! row is added. The membership is Google's, as published for Cloud KMS
//! locations; the `europe` multi-region leaves out London (`europe-west2`)
//! and Zürich (`europe-west6`), as Google's notes on it say.

/// Every Google Cloud region a Cloud KMS key may live in, and `global`
/// serves.
pub const REGIONS: &[&str] = &[
    // Americas
    "northamerica-northeast1",
    "northamerica-northeast2",
    "northamerica-south1",
    "southamerica-east1",
    "southamerica-west1",
    "us-central1",
    "us-east1",
    "us-east4",
    "us-east5",
    "us-south1",
    "us-west1",
    "us-west2",
    "us-west3",
    "us-west4",
    // Europe
    "europe-central2",
    "europe-north1",
    "europe-north2",
    "europe-southwest1",
    "europe-west1",
    "europe-west2",
    "europe-west3",
    "europe-west4",
    "europe-west6",
    "europe-west8",
    "europe-west9",
    "europe-west10",
    "europe-west12",
    // Middle East and Africa
    "africa-south1",
    "me-central1",
    "me-central2",
    "me-west1",
    // Asia Pacific
    "asia-east1",
    "asia-east2",
    "asia-northeast1",
    "asia-northeast2",
    "asia-northeast3",
    "asia-south1",
    "asia-south2",
    "asia-southeast1",
    "asia-southeast2",
    "australia-southeast1",
    "australia-southeast2",
];

/// The `global` location's id.
pub const GLOBAL: &str = "global";

/// Multi-region locations and the regions each spans.
pub const MULTI_REGIONS: &[(&str, &[&str])] = &[
    (
        "us",
        &[
            "us-central1",
            "us-east1",
            "us-east4",
            "us-east5",
            "us-south1",
            "us-west1",
            "us-west2",
            "us-west3",
            "us-west4",
        ],
    ),
    (
        "europe",
        &[
            "europe-central2",
            "europe-north1",
            "europe-north2",
            "europe-southwest1",
            "europe-west1",
            "europe-west3",
            "europe-west4",
            "europe-west8",
            "europe-west9",
            "europe-west10",
            "europe-west12",
        ],
    ),
    (
        "asia",
        &[
            "asia-east1",
            "asia-east2",
            "asia-northeast1",
            "asia-northeast2",
            "asia-northeast3",
            "asia-south1",
            "asia-south2",
            "asia-southeast1",
            "asia-southeast2",
        ],
    ),
    (
        "ca",
        &["northamerica-northeast1", "northamerica-northeast2"],
    ),
    // Northern Virginia and South Carolina.
    ("nam3", &["us-east4", "us-east1"]),
    // Iowa, South Carolina (and Oklahoma).
    ("nam4", &["us-central1", "us-east1"]),
    // Iowa and South Carolina.
    ("nam6", &["us-central1", "us-east1"]),
    // Iowa, Northern Virginia (and Oklahoma).
    ("nam7", &["us-central1", "us-east4"]),
    // Los Angeles, Oregon and Salt Lake City.
    ("nam8", &["us-west2", "us-west1", "us-west3"]),
    // Northern Virginia and Iowa.
    ("nam9", &["us-east4", "us-central1"]),
    // Iowa, Salt Lake City (and Oklahoma).
    ("nam10", &["us-central1", "us-west3"]),
    // Iowa, South Carolina (and Oklahoma).
    ("nam11", &["us-central1", "us-east1"]),
    // Iowa, Northern Virginia, Oregon (and Oklahoma).
    ("nam12", &["us-central1", "us-east4", "us-west1"]),
    // Netherlands and Finland.
    ("eur4", &["europe-west4", "europe-north1"]),
    // Tokyo and Osaka.
    ("asia1", &["asia-northeast1", "asia-northeast2"]),
];

/// What kind of location an id names, as far as the table knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocationKind {
    /// One region.
    Region,
    /// A multi-region: the regions listed for it.
    MultiRegion(&'static [&'static str]),
    /// `global`: every region in [`REGIONS`].
    Global,
    /// Not in the table.
    Unknown,
}

/// The kind of location `id` is.
pub fn kind_of(id: &str) -> LocationKind {
    if id == GLOBAL {
        LocationKind::Global
    } else if let Some((_, regions)) = MULTI_REGIONS.iter().find(|(m, _)| *m == id) {
        LocationKind::MultiRegion(regions)
    } else if REGIONS.contains(&id) {
        LocationKind::Region
    } else {
        LocationKind::Unknown
    }
}

/// True if a key in `location` serves `region`: the location itself, or a
/// region inside it.
pub fn serves(location: &str, region: &str) -> bool {
    if location == region {
        return true;
    }
    match kind_of(location) {
        LocationKind::Global => REGIONS.contains(&region),
        LocationKind::MultiRegion(regions) => regions.contains(&region),
        LocationKind::Region | LocationKind::Unknown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_regions_serve_their_members_only() {
        assert!(serves("europe", "europe-west1"));
        assert!(serves("europe", "europe-north1"));
        assert!(!serves("europe", "europe-west2"), "London is outside");
        assert!(!serves("europe", "europe-west6"), "Zürich is outside");
        assert!(!serves("europe", "us-central1"));
        assert!(serves("us", "us-east1"));
        assert!(!serves("us", "northamerica-northeast1"));
        assert!(serves("nam4", "us-central1") && serves("nam4", "us-east1"));
        assert!(!serves("nam4", "us-west1"));
        assert!(serves("eur4", "europe-north1") && !serves("eur4", "europe-west1"));
        assert!(serves("asia1", "asia-northeast2"));
    }

    #[test]
    fn regions_serve_themselves_and_global_serves_every_region() {
        assert!(serves("europe-west1", "europe-west1"));
        assert!(!serves("europe-west1", "europe-west4"));
        assert!(!serves("europe-west1", "europe"));
        for region in REGIONS {
            assert!(serves(GLOBAL, region), "{region}");
            assert_eq!(kind_of(region), LocationKind::Region, "{region}");
        }
        assert!(!serves(GLOBAL, "mars-north1"));
        assert!(!serves(GLOBAL, "europe"), "a multi-region is not a region");
        assert!(serves("mars-north1", "mars-north1"));
        assert!(
            !serves("mars", "mars-north1"),
            "unknown locations serve only themselves"
        );
        assert_eq!(kind_of("mars"), LocationKind::Unknown);
    }

    #[test]
    fn the_table_is_consistent() {
        for (location, regions) in MULTI_REGIONS {
            assert!(!REGIONS.contains(location), "{location} is listed as both");
            assert!(!regions.is_empty(), "{location}");
            for region in *regions {
                assert!(
                    REGIONS.contains(region),
                    "{location}: {region} is not a region"
                );
            }
        }
        let mut names: Vec<&str> = REGIONS.to_vec();
        names.extend(MULTI_REGIONS.iter().map(|(m, _)| *m));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a location is listed twice");
    }
}
