//! The berth binary's integration tests: one test binary (linking is slow on
//! small machines), one module per area.

#![allow(clippy::unwrap_used)]

mod accounts;
mod api_blobs;
mod api_errors;
mod api_faults;
mod api_manifests;
mod api_process;
mod audit;
mod auth;
mod auth_attacks;
mod auth_flood;
mod auth_manage;
mod auth_refusals;
mod backup;
mod bench;
mod buildkit;
mod cluster;
mod common;
mod content_kinds;
mod credentials;
mod database;
mod deploy;
mod gc;
mod interop;
mod layout;
mod lifecycle_pulls;
mod lifecycle_rules;
mod lifecycle_usage;
mod listener;
mod migrate;
mod mirror;
mod observability;
mod oci;
mod oidc;
mod prometheus;
mod retention;
mod retention_cli;
mod s3;
mod scan;
mod scan_access;
mod scan_jobs;
mod scan_vulns;
mod scrub;
mod serve_lifecycle;
mod shell;
mod tenancy;
mod tls;
mod tls_clients;
mod tools;
mod tools_client;
mod tools_copy;
mod trust;
mod trust_bundles;
mod trust_clients;
mod trust_notation;
mod ui;
mod ui_admin;
mod ui_browser;
mod ui_tags;
mod vulndb;
mod webhooks;
#[path = "../../../store/tests/support/weed.rs"]
mod weed;
