//! Test harness for seamless: host round trips and VM upgrade scenarios.
pub mod paths;
