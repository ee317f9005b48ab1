//! Checkpoint side of seamless: pre-flight checks, kexec loading, process dump and the upgrade
//! orchestration.
pub mod inspect;
pub mod kexec;
