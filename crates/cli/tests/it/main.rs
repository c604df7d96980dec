//! The berth binary's integration tests: one test binary (linking is slow on
//! small machines), one module per area.

mod common;
mod interop;
mod layout;
mod api_blobs;
mod api_manifests;
mod oci;
mod tools;
mod tools_copy;
