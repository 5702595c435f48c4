//! The encrypted object store on `object_store` 0.14 (feature
//! `object-store`): for engines on that major, such as SlateDB 0.18. See the
//! [parent module](super) for what it does.

pub use ::object_store_014 as object_store;
use ::object_store_014 as os;

/// The name of this module, for the examples its items share.
macro_rules! version_module {
    () => {
        "v014"
    };
}

// Each supported major compiles the same adapter against its own crate.
#[allow(clippy::duplicate_mod)]
#[path = "adapter.rs"]
mod adapter;
#[allow(clippy::duplicate_mod)]
#[path = "manifest.rs"]
mod manifest;
#[allow(clippy::duplicate_mod)]
#[path = "verdicts.rs"]
mod verdicts;

pub use adapter::EncryptedStore;
pub use manifest::ObjectManifestStore;
pub use verdicts::ObjectVerdictStore;

/// What a `GetResult` carries besides its payload, meta, range and
/// attributes in this major: its extensions.
type Extras = os::Extensions;

/// Takes a `GetResult` apart into its fields and its bytes as a stream.
fn split(r: os::GetResult) -> (os::ObjectMeta, os::Attributes, Extras, Payload) {
    let (meta, attributes, extras) = (r.meta.clone(), r.attributes.clone(), r.extensions.clone());
    (meta, attributes, extras, r.into_stream())
}

/// Builds a `GetResult` from its parts.
fn join(
    meta: os::ObjectMeta,
    range: std::ops::Range<u64>,
    attributes: os::Attributes,
    extras: Extras,
    payload: Payload,
) -> os::GetResult {
    os::GetResult {
        payload: os::GetResultPayload::Stream(payload),
        meta,
        range,
        attributes,
        extensions: extras,
    }
}

/// A byte stream as the store returns it.
type Payload = futures_util::stream::BoxStream<'static, os::Result<bytes::Bytes>>;
