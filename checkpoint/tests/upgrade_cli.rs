//! `seamless upgrade --newest --json` as a fleet tool sees it: the newest kernel in a boot
//! directory is picked, exit 3 with outcome "up-to-date" when it is the running one, exit 1 with
//! outcome "refused" and the failing verdicts when the pre-flight check fails (nothing changed).

use std::path::Path;
use std::process::Command;

fn upgrade(boot: &Path, pid: u32) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_seamless"))
        .args(["upgrade", "--newest", "--reuse-cmdline", "--json", "--pid", &pid.to_string(), "--boot"])
        .arg(boot)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text:?} / {:?}", out.stderr));
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn newest_picks_the_kernel_and_says_what_happened() {
    let boot = std::env::temp_dir().join(format!("seamless-upgrade-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&boot);
    std::fs::create_dir_all(&boot).unwrap();
    let running = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap().trim().to_string();
    for f in [format!("vmlinuz-{running}"), format!("initrd.img-{running}"), "vmlinuz-1.0.0-old".into()] {
        std::fs::write(boot.join(f), b"x").unwrap();
    }
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let (code, json) = upgrade(&boot, child.id());
    assert_eq!((code, json["outcome"].as_str()), (3, Some("up-to-date")), "{json}");
    assert_eq!(json["kernel"], running.as_str());
    // A newer one that is not a kernel at all: the pre-flight check refuses it, nothing changes.
    for f in ["vmlinuz-999.0.0-test", "initrd.img-999.0.0-test"] {
        std::fs::write(boot.join(f), b"not a kernel").unwrap();
    }
    let (code, json) = upgrade(&boot, child.id());
    assert_eq!((code, json["outcome"].as_str()), (1, Some("refused")), "{json}");
    assert_eq!(json["kernel"], "999.0.0-test");
    let failed: Vec<&str> = json["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter(|v| v["status"] == "fail")
        .filter_map(|v| v["subject"].as_str())
        .collect();
    assert!(failed.contains(&"initramfs"), "{json}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    assert!(status.contains("TracerPid:\t0") && !status.contains("(stopped)"), "{status}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&boot);
}
