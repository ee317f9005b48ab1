//! Kernel settings before the restore: every sysctl the old kernel recorded (see the
//! checkpoint side's `upgrade::sysctl`) is set on the new kernel where its value differs, so
//! the restored processes find the settings they were running with. A setting the new kernel
//! does not have or refuses is named in the report; the restore goes on.

use seamless_image::upgrade::Sysctl;
use seamless_sys::chain;
use std::path::Path;

fn same(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// Sets the recorded values below `base` (normally `/proc/sys`); returns the number of values
/// changed and one line per problem.
pub fn apply_under(base: &Path, sysctls: &[Sysctl]) -> (usize, Vec<String>) {
    let mut changed = 0;
    let mut problems = Vec::new();
    for s in sysctls {
        // Recorded names are relative paths below /proc/sys; anything else is refused.
        if s.name.is_empty()
            || s.name.starts_with('/')
            || s.name.split('/').any(|c| c.is_empty() || c == "." || c == "..")
        {
            problems.push(format!("sysctl {:?}: not a name below /proc/sys; ignored", s.name));
            continue;
        }
        let path = base.join(&s.name);
        let dotted = s.name.replace('/', ".");
        match std::fs::read_to_string(&path) {
            Ok(now) if same(&now, &s.value) => continue,
            Ok(_) => {}
            Err(e) => {
                problems.push(format!(
                    "sysctl {dotted}: not available on this kernel ({}); was {:?}",
                    chain(&e),
                    s.value
                ));
                continue;
            }
        }
        match std::fs::write(&path, format!("{}\n", s.value)) {
            Ok(()) => {
                log::info!("sysctl {dotted} = {:?} (as on the old kernel)", s.value);
                changed += 1;
            }
            Err(e) => problems.push(format!("sysctl {dotted}: cannot set {:?} on this kernel: {}", s.value, chain(&e))),
        }
    }
    (changed, problems)
}

/// [`apply_under`] on `/proc/sys`.
pub fn apply(sysctls: &[Sysctl]) -> (usize, Vec<String>) {
    apply_under(Path::new("/proc/sys"), sysctls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_what_differs_and_names_what_is_missing() {
        let dir = std::env::temp_dir().join(format!("seamless-sysctl-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("net/ipv4")).unwrap();
        std::fs::write(dir.join("net/ipv4/ping_group_range"), "1\t0\n").unwrap();
        std::fs::write(dir.join("net/ipv4/same"), "4096\t87380\n").unwrap();
        let rec = |n: &str, v: &str| Sysctl { name: n.into(), value: v.into() };
        let (changed, problems) = apply_under(
            &dir,
            &[
                rec("net/ipv4/ping_group_range", "0\t2147483647"),
                rec("net/ipv4/same", "4096 87380"),
                rec("net/ipv4/gone", "1"),
                rec("../etc/passwd", "x"),
            ],
        );
        assert_eq!(changed, 1);
        assert_eq!(std::fs::read_to_string(dir.join("net/ipv4/ping_group_range")).unwrap(), "0\t2147483647\n");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("net.ipv4.gone"), "{problems:?}");
        assert!(problems[1].contains("not a name"), "{problems:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
