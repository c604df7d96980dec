//! The berth binary's integration tests: one test binary (linking is slow on
//! small machines), one module per area.

mod common;
mod api_blobs;
mod oci;
