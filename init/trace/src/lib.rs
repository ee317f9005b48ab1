//! The ptrace machinery shared by the dump (`seamless`) and the restore (`seamless-init`):
//! running system calls inside a stopped, traced thread ([`inject`]), reading and writing
//! another process's memory ([`memio`]), laying out scratch memory for the calls' arguments
//! ([`scratch`]), and parsing what `/proc` says about a process ([`procfs`]). No `unsafe` here: the system calls themselves are `seamless-sys`'s.

pub mod error;
pub mod inject;
pub mod memio;
pub mod procfs;
pub mod scratch;
