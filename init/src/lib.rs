//! Restore side of seamless, run as an early init stage on the new kernel.
pub mod boot;
pub mod crypt;
pub mod error;
pub mod handover;
pub mod network;
pub mod page_cache;
pub mod sysctl;
pub mod tmpfs;
pub mod units;
