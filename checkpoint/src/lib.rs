//! Checkpoint side of seamless: pre-flight checks, kexec loading, process dump and the upgrade
//! orchestration.
pub mod check;
pub mod dump;
pub mod inspect;
pub mod interrupt;
pub mod kexec;
pub mod supervisor;
pub mod targets;
pub mod upgrade;
