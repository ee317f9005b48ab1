//! Checked wrappers around the Linux system calls seamless needs and that `nix` and `rustix`
//! do not cover (ptrace register sets, `kexec_file_load`, `finit_module`, `clone3` with
//! `set_tid`, `TCP_REPAIR`, ...).
//!
//! This is the only crate of the workspace allowed to contain `unsafe` code. Every `unsafe`
//! block carries a `// SAFETY:` comment saying why the call is sound. Everything exported is
//! safe to call and reports failures as [`SysError`], naming the call and its subject.
#![allow(unsafe_code)]

pub mod arch;
pub mod dm;
pub mod epoll;
mod error;
pub mod eventfd;
pub mod flock;
pub mod fsfreeze;
pub mod kexec;
pub mod keyring;
pub mod logger;
pub mod module;
pub mod mount;
pub mod mqueue;
pub mod nft;
pub mod nodes;
pub mod notify;
pub mod pagecache;
pub mod proc;
pub mod ptrace;
mod release;
pub mod rtnl;
pub mod sched;
pub mod secret;
pub mod signal;
pub mod sockets;
pub mod sysv;
pub mod timens;
pub mod tty;
pub mod vm;

pub use error::{chain, Chain, SysError, SysResult};
pub use release::kernel_release;
