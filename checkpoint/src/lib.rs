//! Checkpoint side of seamless: pre-flight checks, kexec loading, process dump and the upgrade
//! orchestration.
pub mod inspect;
pub mod dump;
pub mod kexec;
pub mod check;
pub mod targets;
pub mod upgrade;
