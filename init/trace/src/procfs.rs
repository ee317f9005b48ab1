//! Parsers for the `/proc` files both sides need: maps, stat, status.

use std::io;

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapLine {
    /// Start address.
    pub start: u64,
    /// End address (exclusive).
    pub end: u64,
    /// PROT_* bits.
    pub prot: u32,
    /// `s` rather than `p`.
    pub shared: bool,
    /// File offset.
    pub offset: u64,
    /// Device `major:minor` as a number (`makedev` layout).
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Path or pseudo name (`[heap]`, ...), empty for anonymous memory.
    pub name: String,
}

impl MapLine {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the area is empty.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

fn bad(what: &str, line: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {what}: {line:?}"))
}

/// Parses `/proc/PID/maps`.
pub fn read_maps(pid: i32) -> io::Result<Vec<MapLine>> {
    parse_maps(&std::fs::read_to_string(format!("/proc/{pid}/maps"))?)
}

/// Parses the text of a maps file.
pub fn parse_maps(text: &str) -> io::Result<Vec<MapLine>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.splitn(6, ' ');
        let range = it.next().ok_or_else(|| bad("maps", line))?;
        let perms = it.next().ok_or_else(|| bad("maps", line))?.as_bytes();
        let offset = it.next().ok_or_else(|| bad("maps", line))?;
        let dev = it.next().ok_or_else(|| bad("maps", line))?;
        let ino = it.next().ok_or_else(|| bad("maps", line))?;
        let name = it.next().unwrap_or("").trim_start().to_string();
        let (s, e) = range.split_once('-').ok_or_else(|| bad("maps", line))?;
        let hex = |v: &str| u64::from_str_radix(v, 16).map_err(|_| bad("maps", line));
        let (maj, min) = dev.split_once(':').ok_or_else(|| bad("maps", line))?;
        let (maj, min) = (hex(maj)?, hex(min)?);
        if perms.len() < 4 {
            return Err(bad("maps", line));
        }
        let mut prot = 0;
        if perms[0] == b'r' {
            prot |= 1;
        }
        if perms[1] == b'w' {
            prot |= 2;
        }
        if perms[2] == b'x' {
            prot |= 4;
        }
        out.push(MapLine {
            start: hex(s)?,
            end: hex(e)?,
            prot,
            shared: perms[3] == b's',
            offset: hex(offset)?,
            dev: makedev(maj, min),
            ino: ino.parse().map_err(|_| bad("maps", line))?,
            name,
        });
    }
    Ok(out)
}

/// glibc's `makedev` layout of a device number.
pub fn makedev(major: u64, minor: u64) -> u64 {
    ((major & 0xffff_f000) << 32) | ((major & 0xfff) << 8) | ((minor & 0xffff_ff00) << 12) | (minor & 0xff)
}

/// `/proc/PID/stat` split after the `comm` field: index 0 is field 3 (state).
#[derive(Debug, Clone)]
pub struct Stat {
    /// comm (field 2).
    pub comm: String,
    /// Fields 3.. as strings.
    pub rest: Vec<String>,
}

impl Stat {
    /// Field number `n` (1-based as in proc(5)), parsed as i64; 0 if missing.
    pub fn field(&self, n: usize) -> i64 {
        self.rest.get(n.wrapping_sub(3)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// Field `n` as u64.
    pub fn ufield(&self, n: usize) -> u64 {
        self.rest.get(n.wrapping_sub(3)).and_then(|v| v.parse().ok()).unwrap_or(0)
    }

    /// State letter (field 3).
    pub fn state(&self) -> char {
        self.rest.first().and_then(|s| s.chars().next()).unwrap_or('?')
    }
}

/// Reads `/proc/PID/stat` (or `/proc/PID/task/TID/stat` via `path`).
pub fn read_stat_path(path: &str) -> io::Result<Stat> {
    let text = std::fs::read_to_string(path)?;
    let open = text.find('(').ok_or_else(|| bad("stat", &text))?;
    let close = text.rfind(')').ok_or_else(|| bad("stat", &text))?;
    let comm = text[open + 1..close].to_string();
    let rest = text[close + 1..].split_whitespace().map(str::to_string).collect();
    Ok(Stat { comm, rest })
}

/// Reads `/proc/PID/stat`.
pub fn read_stat(pid: i32) -> io::Result<Stat> {
    read_stat_path(&format!("/proc/{pid}/stat"))
}

/// `/proc/PID/status` as (key, value) pairs.
pub fn read_status(pid: i32) -> io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect())
}

/// Looks a key up in a parsed status file.
pub fn status_get<'a>(status: &'a [(String, String)], key: &str) -> Option<&'a str> {
    status.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// Thread ids of a process.
pub fn tids(pid: i32) -> io::Result<Vec<i32>> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    v.sort_unstable();
    // Leader first.
    if let Some(i) = v.iter().position(|&t| t == pid) {
        v.remove(i);
        v.insert(0, pid);
    }
    Ok(v)
}

/// Children of a process (all threads' `children` files).
pub fn children(pid: i32) -> io::Result<Vec<i32>> {
    let mut out = Vec::new();
    for t in tids(pid)? {
        let text = match std::fs::read_to_string(format!("/proc/{pid}/task/{t}/children")) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(text.split_whitespace().filter_map(|s| s.parse::<i32>().ok()));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}
