//! The throwaway SeaweedFS S3 server lives in `berth-testkit` (the bench
//! starts one too); the suites include this file by path.

#[allow(unused_imports)]
pub use berth_testkit::weed::*;
