//! Seccomp filters, installed again as the last thing before the trampoline goes (every
//! other injected call of the process runs before them; the dump's pre-check proved that the
//! trampoline's `munmap` and each `seccomp(2)` call pass the filters installed before it).
//!
//! Sharing: the filters every thread has at the same depth from the oldest (one filter object
//! in the dumped process, from `SECCOMP_FILTER_FLAG_TSYNC` or inherited at `clone`) are
//! installed once in the leader with `SECCOMP_FILTER_FLAG_TSYNC`, so the threads share them
//! again; the rest of each chain is installed in its own thread.

use crate::abi;
use crate::child::Child;
use crate::inject::Remote;
use crate::plan::ProcPlan;
use crate::tracee::Tracee;
use crate::RestoreError;
use seamless_image::records::seccomp::{SeccompRecord, FLAG_TSYNC};

const SECCOMP_SET_MODE_FILTER: u64 = 1;

/// Installs filter `index` of `rec` in the thread `t` runs in.
fn install_one<T: Tracee + ?Sized>(
    t: &mut T,
    rec: &SeccompRecord,
    index: u32,
    tsync: bool,
) -> Result<(), RestoreError> {
    let pid = t.pid();
    let f = usize::try_from(index)
        .ok()
        .and_then(|i| rec.filters.get(i))
        .ok_or_else(|| RestoreError::Corrupt { pid, what: format!("no seccomp filter {index}") })?;
    let len = u16::try_from(f.prog.len())
        .map_err(|_| RestoreError::Corrupt { pid, what: format!("seccomp filter {index} too long") })?;
    let mut s = t.scratch();
    let prog = s.put(t, &abi::word_bytes(&f.prog))?;
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    let fprog = s.put_words(t, &[u64::from(len), prog])?;
    let flags = u64::from(f.flags) | if tsync { u64::from(FLAG_TSYNC) } else { 0 };
    let got = t.call_for(
        format!("installing seccomp filter {index} (flags {flags:#x})"),
        "seccomp(SECCOMP_SET_MODE_FILTER)",
        libc::SYS_seccomp,
        [SECCOMP_SET_MODE_FILTER, flags, fprog, 0, 0, 0],
    )?;
    // With TSYNC a positive result names a thread that could not be synchronised.
    if got != 0 {
        return Err(RestoreError::Failed { pid, what: format!("seccomp TSYNC failed for thread {got}") });
    }
    Ok(())
}

/// The depth up to which every thread of the process (`tids`, leader first) has the same
/// filters (by index).
pub fn common_depth(rec: &SeccompRecord, tids: &[i32]) -> usize {
    let chains: Vec<&[u32]> = tids
        .iter()
        .map(|t| rec.threads.iter().find(|(x, _)| x == t).map(|(_, c)| c.as_slice()).unwrap_or(&[]))
        .collect();
    let mut d = 0;
    while let Some(&first) = chains.first().and_then(|c| c.get(d)) {
        if chains.iter().all(|c| c.get(d) == Some(&first)) {
            d += 1;
        } else {
            break;
        }
    }
    d
}

/// Installs the filters of `p` in its rebuilt leader `c` and its other threads `threads`
/// (in the order of `p.threads` after the leader).
pub fn install(c: &mut Child, threads: &mut [Remote], p: &ProcPlan) -> Result<(), RestoreError> {
    let Some(rec) = &p.seccomp else { return Ok(()) };
    let tids: Vec<i32> = p.threads.iter().map(|t| t.tid).collect();
    let shared = common_depth(rec, &tids);
    let chain_of = |tid: i32| rec.threads.iter().find(|(x, _)| *x == tid).map(|(_, c)| c.clone()).unwrap_or_default();
    let leader_chain = chain_of(p.rec.pid);
    for &i in leader_chain.iter().take(shared) {
        install_one(c, rec, i, tids.len() > 1)?;
    }
    for &i in leader_chain.iter().skip(shared) {
        install_one(c, rec, i, false)?;
    }
    for (t, rt) in p.threads.iter().skip(1).zip(threads.iter_mut()) {
        for &i in chain_of(t.tid).iter().skip(shared) {
            install_one(&mut c.thread(rt), rec, i, false)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use seamless_image::records::seccomp::SeccompFilter;

    #[test]
    fn filters_every_thread_has_are_installed_once_with_tsync() {
        let f = SeccompFilter { prog: vec![0x7fff_0000_0000_0006], flags: 0 };
        let rec = SeccompRecord {
            filters: vec![f.clone(), f.clone(), f],
            threads: vec![(10, vec![0, 1]), (11, vec![0, 2]), (12, vec![0])],
        };
        assert_eq!(common_depth(&rec, &[10, 11, 12]), 1);
        assert_eq!(common_depth(&rec, &[10, 11, 12, 13]), 0, "a thread without filters");
        let rec = SeccompRecord { threads: vec![(10, vec![0, 1]), (11, vec![0, 1])], ..rec };
        assert_eq!(common_depth(&rec, &[10, 11]), 2);
    }
}
