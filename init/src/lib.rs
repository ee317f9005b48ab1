//! Restore side of seamless, run as an early init stage on the new kernel.
pub mod restore;

pub mod boot;
pub mod handover;
pub mod netlock;
pub mod network;
pub mod rewarm;
pub mod sysctl;
pub mod tmpfs;
pub mod units;
