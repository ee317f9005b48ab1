//! Test harness for seamless: host round trips and VM upgrade scenarios.
pub mod paths;
pub mod vm;
pub mod host;
pub mod workloads;
