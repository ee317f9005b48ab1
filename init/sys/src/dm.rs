//! device-mapper through its control device (`/dev/mapper/control`), the ioctls
//! `dmsetup` and libdevmapper use (`linux/dm-ioctl.h`): a device's live table with its keys
//! (`DM_TABLE_STATUS` with `DM_STATUS_TABLE_FLAG`, what `dmsetup table --showkeys` prints),
//! and making a mapping (`DM_DEV_CREATE`, `DM_TABLE_LOAD`, `DM_DEV_SUSPEND` to resume) or
//! taking it away (`DM_DEV_REMOVE`). Every buffer that may hold a key is sent with
//! `DM_SECURE_DATA_FLAG` (the kernel wipes its copies) and wiped here after use.

use crate::secret::{wipe, Secret};
use crate::{SysError, SysResult};
use std::os::fd::AsRawFd;

/// The control device.
pub const CONTROL: &str = "/dev/mapper/control";
/// `sizeof(struct dm_ioctl)`.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC: usize = 40;
/// Longest device name (`DM_NAME_LEN` less the NUL).
pub const MAX_NAME: usize = 127;
/// Longest device UUID (`DM_UUID_LEN` less the NUL).
pub const MAX_UUID: usize = 128;

const DM_DEV_CREATE: u8 = 3;
const DM_DEV_REMOVE: u8 = 4;
const DM_DEV_SUSPEND: u8 = 6;
const DM_DEV_STATUS: u8 = 7;
const DM_TABLE_LOAD: u8 = 9;
const DM_TABLE_STATUS: u8 = 12;

const DM_READONLY_FLAG: u32 = 1;
const DM_STATUS_TABLE_FLAG: u32 = 1 << 4;
const DM_ACTIVE_PRESENT_FLAG: u32 = 1 << 5;
const DM_BUFFER_FULL_FLAG: u32 = 1 << 8;
const DM_SECURE_DATA_FLAG: u32 = 1 << 15;

/// `_IOWR(0xfd, nr, struct dm_ioctl)`.
const fn request(nr: u8) -> libc::c_ulong {
    (3 << 30) | ((HEADER as libc::c_ulong) << 16) | (0xfd << 8) | nr as libc::c_ulong
}

/// One target of a table: `start length type params`, as `dmsetup table` prints it. The
/// parameters of a `crypt` target hold its key (or the keyring reference of one): they are
/// a [`Secret`].
#[derive(Debug)]
pub struct Target {
    /// First sector.
    pub start: u64,
    /// Length in 512-byte sectors.
    pub length: u64,
    /// Target type (`crypt`, `linear`, ...).
    pub kind: String,
    /// The parameters.
    pub params: Secret,
}

/// What `DM_DEV_STATUS` says about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its device number (`major << 8 | minor` as the kernel's `huge_encode_dev`).
    pub dev: u64,
    /// Its device-mapper UUID.
    pub uuid: String,
    /// How many times it is open.
    pub open_count: i32,
    /// Whether a live table is loaded.
    pub active: bool,
}

impl Info {
    /// `(major, minor)` of [`Info::dev`].
    pub fn major_minor(&self) -> (u64, u64) {
        ((self.dev >> 8) & 0xfff | (self.dev >> 32) & !0xfff, (self.dev & 0xff) | ((self.dev >> 12) & !0xff))
    }
}

/// A `struct dm_ioctl` buffer with room for `extra` bytes of data after the header.
struct Buf(Vec<u8>);

impl Buf {
    fn new(name: &str, extra: usize) -> SysResult<Self> {
        if name.is_empty() || name.len() > MAX_NAME || name.contains(['\0', '/']) {
            return Err(SysError::new(
                "device-mapper",
                name.to_string(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad device name"),
            ));
        }
        let size = HEADER + extra;
        let mut b = vec![0u8; size];
        b[0..4].copy_from_slice(&4u32.to_ne_bytes());
        b[12..16].copy_from_slice(&(size as u32).to_ne_bytes());
        b[16..20].copy_from_slice(&(HEADER as u32).to_ne_bytes());
        b[48..48 + name.len()].copy_from_slice(name.as_bytes());
        Ok(Self(b))
    }
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.0[at..at + 4].try_into().unwrap_or([0; 4]))
    }
    fn u64_at(&self, at: usize) -> u64 {
        u64::from_ne_bytes(self.0[at..at + 8].try_into().unwrap_or([0; 8]))
    }
    fn set_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn flags(&self) -> u32 {
        self.u32_at(28)
    }
    fn cstr(&self, at: usize, max: usize) -> String {
        let s = &self.0[at..(at + max).min(self.0.len())];
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        String::from_utf8_lossy(&s[..end]).into_owned()
    }
    fn ioctl(&mut self, nr: u8, call: &'static str, name: &str) -> SysResult<()> {
        let ctl = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL)
            .map_err(|e| SysError::new("open", CONTROL, e))?;
        // SAFETY: the buffer is a `struct dm_ioctl` followed by its data, `data_size` (the
        // kernel reads and writes at most that many bytes) is the buffer's length, and it
        // lives for the duration of the call; the descriptor is open.
        let r = unsafe { libc::ioctl(ctl.as_raw_fd(), request(nr), self.0.as_mut_ptr()) };
        if r != 0 {
            return Err(SysError::last(call, name.to_string()));
        }
        Ok(())
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// The state of device `name`; `None` when no device has that name.
pub fn info(name: &str) -> SysResult<Option<Info>> {
    let mut b = Buf::new(name, 0)?;
    match b.ioctl(DM_DEV_STATUS, "ioctl(DM_DEV_STATUS)", name) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(libc::ENXIO) => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok(Some(Info {
        dev: b.u64_at(40),
        uuid: b.cstr(176, MAX_UUID + 1),
        open_count: b.u32_at(24) as i32,
        active: b.flags() & DM_ACTIVE_PRESENT_FLAG != 0,
    }))
}

/// The live table of device `name` with its keys (`dmsetup table --showkeys`). Needs
/// `CAP_SYS_ADMIN`.
pub fn table(name: &str) -> SysResult<Vec<Target>> {
    let mut extra = 16 << 10;
    loop {
        let mut b = Buf::new(name, extra)?;
        b.set_u32(28, DM_STATUS_TABLE_FLAG | DM_SECURE_DATA_FLAG);
        b.ioctl(DM_TABLE_STATUS, "ioctl(DM_TABLE_STATUS)", name)?;
        if b.flags() & DM_BUFFER_FULL_FLAG != 0 {
            if extra >= 4 << 20 {
                return Err(SysError::new(
                    "ioctl(DM_TABLE_STATUS)",
                    name.to_string(),
                    std::io::Error::other("table larger than 4 MiB"),
                ));
            }
            extra *= 4;
            continue;
        }
        let count = b.u32_at(20) as usize;
        let start = b.u32_at(16) as usize;
        let mut out = Vec::with_capacity(count);
        let mut at = start;
        let bad = || {
            SysError::new(
                "ioctl(DM_TABLE_STATUS)",
                name.to_string(),
                std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed target list"),
            )
        };
        for _ in 0..count {
            if at < start || at + SPEC > b.0.len() {
                return Err(bad());
            }
            let params_at = at + SPEC;
            let rest = &b.0[params_at..];
            let end = rest.iter().position(|&c| c == 0).ok_or_else(bad)?;
            out.push(Target {
                start: b.u64_at(at),
                length: b.u64_at(at + 8),
                kind: b.cstr(at + 24, 16),
                params: Secret::copy_of(&rest[..end]),
            });
            at = start + b.u32_at(at + 20) as usize;
        }
        return Ok(out);
    }
}

/// Creates device `name` with device-mapper UUID `uuid` and no table (`DM_DEV_CREATE`);
/// returns its state.
pub fn create(name: &str, uuid: &str) -> SysResult<Info> {
    if uuid.len() > MAX_UUID || uuid.contains('\0') {
        return Err(SysError::new(
            "ioctl(DM_DEV_CREATE)",
            name.to_string(),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad UUID"),
        ));
    }
    let mut b = Buf::new(name, 0)?;
    b.0[176..176 + uuid.len()].copy_from_slice(uuid.as_bytes());
    b.ioctl(DM_DEV_CREATE, "ioctl(DM_DEV_CREATE)", name)?;
    Ok(Info { dev: b.u64_at(40), uuid: uuid.to_string(), open_count: 0, active: false })
}

/// Loads `targets` as the inactive table of device `name` (`DM_TABLE_LOAD`, with
/// `DM_SECURE_DATA_FLAG`): [`resume`] makes it live. The parameter strings go through a
/// buffer wiped afterwards.
pub fn load(name: &str, targets: &[Target], read_only: bool) -> SysResult<()> {
    let mut extra = 0;
    for t in targets {
        extra += (SPEC + t.params.len() + 1).next_multiple_of(8);
    }
    let mut b = Buf::new(name, extra)?;
    b.set_u32(20, targets.len() as u32);
    b.set_u32(28, DM_SECURE_DATA_FLAG | if read_only { DM_READONLY_FLAG } else { 0 });
    let mut at = HEADER;
    for t in targets {
        if t.kind.is_empty() || t.kind.len() > 15 || t.params.as_bytes().contains(&0) {
            return Err(SysError::new(
                "ioctl(DM_TABLE_LOAD)",
                name.to_string(),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad target"),
            ));
        }
        let len = (SPEC + t.params.len() + 1).next_multiple_of(8);
        b.0[at..at + 8].copy_from_slice(&t.start.to_ne_bytes());
        b.0[at + 8..at + 16].copy_from_slice(&t.length.to_ne_bytes());
        // `next`: from this spec to the next one when loading.
        b.0[at + 20..at + 24].copy_from_slice(&(len as u32).to_ne_bytes());
        b.0[at + 24..at + 24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
        b.0[at + SPEC..at + SPEC + t.params.len()].copy_from_slice(t.params.as_bytes());
        at += len;
    }
    b.ioctl(DM_TABLE_LOAD, "ioctl(DM_TABLE_LOAD)", name)
}

/// `DM_UDEV_PRIMARY_SOURCE_FLAG` of libdevmapper's udev cookie (`event_nr >> 16`): device-mapper's
/// udev rules then treat the resume's `change` event as an activation, record it in the
/// udev database (which a coldplug after the switch to the real root reads again) and make
/// `/dev/mapper/NAME` and the `/dev/disk/by-*` links, as after `cryptsetup open` without a
/// semaphore to wait on.
const DM_UDEV_PRIMARY_SOURCE_FLAG: u32 = 0x0040;

/// Makes the loaded table of device `name` live (`DM_DEV_SUSPEND` without
/// `DM_SUSPEND_FLAG`: resume); the kernel sends the uevent udev names the device by.
pub fn resume(name: &str) -> SysResult<()> {
    let mut b = Buf::new(name, 0)?;
    b.set_u32(32, DM_UDEV_PRIMARY_SOURCE_FLAG << 16);
    b.ioctl(DM_DEV_SUSPEND, "ioctl(DM_DEV_SUSPEND resume)", name)
}

/// Removes device `name` (`DM_DEV_REMOVE`).
pub fn remove(name: &str) -> SysResult<()> {
    let mut b = Buf::new(name, 0)?;
    b.ioctl(DM_DEV_REMOVE, "ioctl(DM_DEV_REMOVE)", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_header() {
        // DM_TABLE_STATUS = _IOWR(0xfd, 12, struct dm_ioctl) as strace prints it.
        assert_eq!(request(DM_TABLE_STATUS), 0xc138_fd0c);
        assert_eq!(request(DM_DEV_CREATE), 0xc138_fd03);
        assert!(Buf::new("a/b", 0).is_err());
        assert!(Buf::new(&"x".repeat(128), 0).is_err());
    }
}
