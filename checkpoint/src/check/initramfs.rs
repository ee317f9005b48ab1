//! Does the new kernel's initramfs carry seamless-init?

use super::{CheckOptions, Verdict};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where the dracut module and the mkinitcpio hook install the binary.
pub const WRAPPER_PATH: &str = "usr/lib/seamless/seamless-init";

/// Verdict on the target initramfs.
pub fn check(opts: &CheckOptions) -> Vec<Verdict> {
    let Some(initrd) = &opts.initrd else {
        return vec![Verdict::warn("initramfs", "no --initrd given: not checked")];
    };
    match list(initrd) {
        Ok(names) => {
            let init_is_ours = names.iter().any(|n| n == "init" || n == "seamless-init")
                && std::fs::read(initrd).map(|b| contains(&b, b"seamless-init")).unwrap_or(false);
            if names.iter().any(|n| n == WRAPPER_PATH) {
                vec![Verdict::ok(
                    "initramfs",
                    format!("{}: has /{WRAPPER_PATH} (dracut/mkinitcpio hook)", initrd.display()),
                )]
            } else if init_is_ours {
                vec![Verdict::ok("initramfs", format!("{}: seamless-init is /init", initrd.display()))]
            } else {
                vec![Verdict::fail(
                    "initramfs",
                    format!(
                        "{}: no seamless-init inside ({} entries): rebuild it with the seamless dracut module or mkinitcpio hook",
                        initrd.display(),
                        names.len()
                    ),
                )]
            }
        }
        Err(e) => vec![Verdict::fail("initramfs", format!("{}: {e}", initrd.display()))],
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Names of all entries of an initramfs: concatenated newc archives, possibly followed by
/// one compressed archive (gzip, zstd, xz, lz4: decompressed by the system's tool).
pub fn list(path: &Path) -> Result<Vec<String>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data[pos] == 0 {
            pos += 1;
            continue;
        }
        if data[pos..].starts_with(b"070701") || data[pos..].starts_with(b"070702") {
            pos = parse_newc(&data, pos, &mut names)?;
            continue;
        }
        let tool: &[&str] = match &data[pos..(pos + 4).min(data.len())] {
            [0x1f, 0x8b, ..] => &["gzip", "-dc"],
            [0x28, 0xb5, 0x2f, 0xfd] => &["zstd", "-dcq"],
            [0xfd, b'7', b'z', b'X'] => &["xz", "-dc"],
            [0x02, 0x21, 0x4c, 0x18] | [0x04, 0x22, 0x4d, 0x18] => &["lz4", "-dc"],
            _ => return Err(format!("unknown data at offset {pos}")),
        };
        let out = decompress(tool, &data[pos..])?;
        let mut p = 0;
        while p < out.len() {
            if out[p] == 0 {
                p += 1;
                continue;
            }
            p = parse_newc(&out, p, &mut names)?;
        }
        break;
    }
    Ok(names)
}

fn decompress(tool: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {} to decompress: {e}", tool[0]))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = feeder.join();
    Ok(out.stdout)
}

/// Parses one newc archive starting at `pos`, up to and including its trailer.
fn parse_newc(d: &[u8], mut pos: usize, names: &mut Vec<String>) -> Result<usize, String> {
    let pad = |n: usize| (n + 3) & !3;
    loop {
        let h = d.get(pos..pos + 110).ok_or("truncated cpio header")?;
        if !(h.starts_with(b"070701") || h.starts_with(b"070702")) {
            return Err(format!("bad cpio magic at {pos}"));
        }
        let field = |i: usize| -> Result<usize, String> {
            let s = std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).map_err(|_| "bad header")?;
            usize::from_str_radix(s, 16).map_err(|_| format!("bad hex {s:?}"))
        };
        let (size, namesize) = (field(6)?, field(11)?);
        let name = d.get(pos + 110..pos + 110 + namesize.saturating_sub(1)).ok_or("truncated name")?;
        let name = String::from_utf8_lossy(name).trim_start_matches("./").to_string();
        pos = pad(pos + 110 + namesize);
        pos = pad(pos.checked_add(size).ok_or("size overflow")?);
        if name == "TRAILER!!!" {
            return Ok(pos);
        }
        names.push(name);
        if pos > d.len() {
            return Err("truncated cpio data".into());
        }
    }
}
