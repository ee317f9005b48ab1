//! `seamless check` on live processes (needs root for the ptrace pre-check): a plain process
//! passes its verdict, init is refused, and the exit code says whether anything blocks.

use std::process::Command;

fn check(args: &[String]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seamless")).arg("check").args(args).arg("--json").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn verdicts_per_process_and_exit_code() {
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = child.id().to_string();
    let (code, json) = check(&["--pid".into(), pid.clone()]);
    let report: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let verdicts = report["verdicts"].as_array().expect("a verdicts array");
    let mine = verdicts.iter().find(|v| v["subject"] == format!("pid {pid}").as_str());
    assert_eq!(mine.map(|v| &v["status"]), Some(&serde_json::json!("ok")), "no ok verdict for pid {pid}:\n{json}");
    // The process was frozen only for the check: it still runs, untraced.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "{status}");
    let blocking = verdicts.iter().any(|v| v["status"] == "fail");
    assert_eq!(code, i32::from(blocking), "exit code {code} does not match the verdicts:\n{json}");

    let (code, json) = check(&["--pid".into(), "1".into()]);
    assert_eq!(code, 1, "{json}");
    let report: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let init = report["verdicts"].as_array().and_then(|v| v.iter().find(|v| v["subject"] == "pid 1"));
    let init = init.unwrap_or_else(|| panic!("no verdict for pid 1: {json}"));
    assert_eq!(init["status"], "fail", "{json}");
    assert!(init["detail"].as_str().is_some_and(|d| d.contains("cannot dump init")), "{json}");

    let (code, _) = check(&["--pid".into(), "999999999".into()]);
    assert_ne!(code, 0);
    let _ = child.kill();
    let _ = child.wait();
}
