//! Test harness for seamless: host round trips and VM upgrade scenarios.
pub mod conventions;
pub mod fleet;
pub mod flows;
pub mod host;
pub mod netns;
pub mod paths;
pub mod redis;
pub mod releases;
pub mod scenarios;
pub mod service;
pub mod services;
pub mod stream;
pub mod vm;
pub mod workloads;
