//! The encrypted object store on `object_store` 0.14: conformance, ranges,
//! tampering, multipart and the shared manifest store.
#![cfg(feature = "object-store")]

use cmek::object_store::v014 as adapter;
use object_store_014 as os;

mod common;

#[path = "object_store/s3.rs"]
mod s3;

#[path = "object_store/cases.rs"]
mod cases;
