//! `seamless region`: low-level region maintenance. `write-pattern` fills a region with a test
//! image (a pattern record and page chunks whose bytes derive from a seed and their address);
//! `wipe` erases an image; `flip-byte` damages one entry on purpose, for tests of the checks.

use anyhow::Context;
use seamless_image::pattern::{self, Pattern};
use seamless_image::{BlockStore, CpioStore, DirStore, FileStore, Reader, RecordKind, Store, Writer, WriterInfo};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `seamless region`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Write a test image: one pattern record and N MiB of page chunks with a known pattern.
    WritePattern {
        /// The store: a block device (/dev/pmem0), a FILE.cpio archive, or a directory.
        store: PathBuf,
        /// MiB of page data.
        #[arg(long, default_value_t = 16)]
        mib: u32,
        /// Seed of the pattern (decimal or 0x-prefixed hex).
        #[arg(long, default_value = "0x5ea31e55", value_parser = parse_u64)]
        seed: u64,
    },
    /// Erase the image in a store: zero its used bytes (the superblock at least).
    Wipe {
        /// The store.
        store: PathBuf,
        /// Zero the whole store, not only the bytes the image used.
        #[arg(long)]
        all: bool,
    },
    /// Invert one byte of an entry's data without fixing its checksum (for tests).
    FlipByte {
        /// The store.
        store: PathBuf,
        /// Index of the entry to damage.
        #[arg(long)]
        entry: u32,
        /// Offset of the byte inside the entry's data.
        #[arg(long, default_value_t = 0)]
        at: u64,
    },
}

fn parse_u64(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("{s:?} is not a number: {e}"))
}

/// Base virtual address of the pattern's page chunks.
const PATTERN_BASE: u64 = 0x7f00_0000_0000;
const CHUNK: usize = 1 << 20;

fn is_block(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.file_type().is_block_device()).unwrap_or(false)
}

/// Opens an existing store for reading and writing, by what the path is.
fn open_rw(path: &Path) -> anyhow::Result<Box<dyn Store>> {
    Ok(if is_block(path) {
        Box::new(BlockStore::open(path)?)
    } else if path.is_dir() {
        Box::new(DirStore::open(path)?)
    } else if path.extension().is_some_and(|e| e == "cpio") {
        Box::new(CpioStore::open(path)?)
    } else {
        Box::new(FileStore::open_file(path, true)?)
    })
}

fn write_pattern(path: &Path, mib: u32, seed: u64) -> anyhow::Result<()> {
    let capacity = (u64::from(mib) + 1) << 20;
    let store: Box<dyn Store> = if is_block(path) {
        Box::new(BlockStore::open(path)?)
    } else if path.extension().is_some_and(|e| e == "cpio") {
        Box::new(CpioStore::create(path, capacity)?)
    } else {
        Box::new(DirStore::create(path, capacity)?)
    };
    let mut w = Writer::new(store, WriterInfo::current(env!("CARGO_PKG_VERSION")))?;
    let bytes = u64::from(mib) << 20;
    w.put_record(RecordKind::PATTERN, 0, seed, &Pattern { seed, chunks: mib, bytes })?;
    let mut buf = vec![0u8; CHUNK];
    for i in 0..u64::from(mib) {
        let vaddr = PATTERN_BASE + i * CHUNK as u64;
        pattern::fill(seed, vaddr, &mut buf);
        w.put_pages(0, vaddr, &buf)?;
    }
    let entries = w.entries().len();
    let store = w.finish()?;
    println!(
        "wrote test pattern seed {seed:#x}: {mib} chunks, {bytes} bytes, {} entries, to {}",
        entries,
        store.describe()
    );
    Ok(())
}

fn wipe(path: &Path, all: bool) -> anyhow::Result<()> {
    let mut store = open_rw(path)?;
    let capacity = store.capacity();
    let len = if all {
        capacity
    } else {
        match Reader::open_for_inspect(open_rw(path)?) {
            Ok(r) => r.superblock().used.min(capacity),
            Err(_) => capacity.min(seamless_image::SUPERBLOCK_SIZE as u64),
        }
    };
    let zeros = vec![0u8; CHUNK];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(CHUNK as u64) as usize;
        store.write_at(at, &zeros[..n])?;
        at += n as u64;
    }
    store.sync()?;
    println!("wiped {len} bytes of {}", store.describe());
    Ok(())
}

fn flip_byte(path: &Path, entry: u32, at: u64) -> anyhow::Result<()> {
    let reader = Reader::open_for_inspect(open_rw(path)?).context("reading the index")?;
    let e = reader.entry(entry)?;
    if at >= e.len {
        anyhow::bail!("entry {entry} has {} bytes; --at {at} is outside it", e.len);
    }
    let mut store = reader.into_store();
    let off = e.offset + at;
    let mut b = [0u8; 1];
    store.read_at(off, &mut b)?;
    let old = b[0];
    b[0] = !old;
    store.write_at(off, &b)?;
    store.sync()?;
    println!(
        "flipped byte {at} of entry {entry} ({}, tag {:#x}) at offset {off:#x}: {old:#04x} -> {:#04x}",
        e.kind, e.tag, b[0]
    );
    Ok(())
}

/// Runs `seamless region`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::WritePattern { store, mib, seed } => write_pattern(&store, mib, seed),
        Command::Wipe { store, all } => wipe(&store, all),
        Command::FlipByte { store, entry, at } => flip_byte(&store, entry, at),
    }
    .map(|()| ExitCode::SUCCESS)
}
