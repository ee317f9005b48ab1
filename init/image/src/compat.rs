//! Which image formats a build reads and writes, and the format an upgrade writes for the
//! `seamless-init` of the kernel it jumps to.
//!
//! `seamless-init --image-formats` prints [`Formats::to_text`] of its build; `seamless check`
//! and `seamless upgrade` run the target initramfs's `seamless-init` that way, parse the text
//! with [`Formats::parse`] and [`choose`] the newest format both sides know, or refuse before
//! anything is frozen. The text is line-based (`key value...`), the first line names the
//! protocol; unknown keys are ignored so that later builds can add lines.

use crate::entry::RecordKind;
use crate::superblock::{FORMAT_VERSION, KNOWN_COMPAT_FEATURES, KNOWN_INCOMPAT_FEATURES, OLDEST_FORMAT_VERSION};
use std::fmt;

/// First line of the `--image-formats` text.
pub const HEADER: &str = "seamless-image-formats 1";

/// What one build of seamless reads and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formats {
    /// Release version of the build (`unknown` when it did not say).
    pub release: String,
    /// Oldest format version it reads and writes.
    pub oldest: u32,
    /// Newest format version it reads and writes.
    pub newest: u32,
    /// Incompatible feature bits it understands.
    pub incompat: u64,
    /// Compatible feature bits it understands.
    pub compat: u64,
    /// Record kinds it understands, ascending.
    pub kinds: Vec<u16>,
}

/// The record kinds of the last format-1 release, which predates `--image-formats`.
/// (It does not know [`RecordKind::PAGE_CACHE`], which writers mark `IGNORABLE`.)
const PREDATING_KINDS: &[u16] = &[1, 2, 3, 4, 5, 16, 17, 18, 19, 20, 21, 22, 23];

impl Formats {
    /// This build.
    pub fn this_build(release: &str) -> Self {
        let kinds = (0..=u16::MAX)
            .filter(|&k| RecordKind(k).is_known() && !crate::records::NOT_RESTORED.contains(&RecordKind(k)))
            .collect();
        Formats {
            release: release.to_string(),
            oldest: OLDEST_FORMAT_VERSION,
            newest: FORMAT_VERSION,
            incompat: KNOWN_INCOMPAT_FEATURES,
            compat: KNOWN_COMPAT_FEATURES,
            kinds,
        }
    }

    /// A `seamless-init` too old to answer `--image-formats` (it prints its usage and exits
    /// 2): the last release before the option, which reads format 1 only.
    pub fn predating() -> Self {
        Formats {
            release: "older than --image-formats".into(),
            oldest: 1,
            newest: 1,
            incompat: 0,
            compat: 0,
            kinds: PREDATING_KINDS.to_vec(),
        }
    }

    /// Whether format `version` is one this build reads.
    pub fn reads(&self, version: u32) -> bool {
        (self.oldest..=self.newest).contains(&version)
    }

    /// The text `seamless-init --image-formats` prints.
    pub fn to_text(&self) -> String {
        let kinds: Vec<String> = self.kinds.iter().map(u16::to_string).collect();
        format!(
            "{HEADER}\nrelease {}\nformats {} {}\nincompat {:#x}\ncompat {:#x}\nkinds {}\n",
            self.release,
            self.oldest,
            self.newest,
            self.incompat,
            self.compat,
            kinds.join(" ")
        )
    }

    /// Parses [`Formats::to_text`]'s output.
    pub fn parse(text: &str) -> Result<Self, FormatsError> {
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(FormatsError::Header);
        }
        let (mut release, mut range, mut incompat, mut compat, mut kinds) = (None, None, None, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let bad = || FormatsError::Line(line.to_string());
            match key {
                "release" => release = Some(value.to_string()),
                "formats" => {
                    let v: Vec<u32> = value.split(' ').map(str::parse).collect::<Result<_, _>>().map_err(|_| bad())?;
                    match v[..] {
                        [oldest, newest] if oldest <= newest => range = Some((oldest, newest)),
                        _ => return Err(bad()),
                    }
                }
                "incompat" => incompat = Some(hex(value).ok_or_else(bad)?),
                "compat" => compat = Some(hex(value).ok_or_else(bad)?),
                "kinds" => {
                    let k: Vec<u16> =
                        value.split_whitespace().map(str::parse).collect::<Result<_, _>>().map_err(|_| bad())?;
                    kinds = Some(k);
                }
                _ => {}
            }
        }
        let missing = FormatsError::Missing;
        let (oldest, newest) = range.ok_or(missing("formats"))?;
        let mut kinds = kinds.ok_or(missing("kinds"))?;
        kinds.sort_unstable();
        Ok(Formats {
            release: release.ok_or(missing("release"))?,
            oldest,
            newest,
            incompat: incompat.ok_or(missing("incompat"))?,
            compat: compat.ok_or(missing("compat"))?,
            kinds,
        })
    }
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// A `--image-formats` text that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatsError {
    /// The first line is not [`HEADER`].
    #[error("the first line is not '{HEADER}'")]
    Header,
    /// A line's value does not parse.
    #[error("line '{0}' does not parse")]
    Line(String),
    /// A required line is missing.
    #[error("no '{0}' line")]
    Missing(&'static str),
}

/// What the writer of an image needs its reader to know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The format version the operator asked for (`None`: the newest both sides know).
    pub version: Option<u32>,
    /// Incompatible feature bits the image will have.
    pub incompat: u64,
    /// Record kinds the image may hold that a reader must know (not `IGNORABLE` ones).
    pub kinds: Vec<u16>,
}

/// Why no format fits both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The writer's side.
    pub writer: Box<Formats>,
    /// The reader's side.
    pub reader: Box<Formats>,
    /// What does not fit.
    pub detail: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this seamless ({}) writes image formats {}..{}, the target's seamless-init ({}) reads {}..{}: {}",
            self.writer.release,
            self.writer.oldest,
            self.writer.newest,
            self.reader.release,
            self.reader.oldest,
            self.reader.newest,
            self.detail
        )
    }
}

impl std::error::Error for Mismatch {}

/// The format version `writer` writes so that `reader` can read the image, or why none fits.
pub fn choose(writer: &Formats, reader: &Formats, needs: &Needs) -> Result<u32, Mismatch> {
    let fail = |detail: String| Mismatch { writer: Box::new(writer.clone()), reader: Box::new(reader.clone()), detail };
    let version =
        match needs.version {
            Some(v) if !writer.reads(v) => {
                return Err(fail(format!("format {v} was asked for and this seamless cannot write it")))
            }
            Some(v) if !reader.reads(v) => {
                return Err(fail(format!("format {v} was asked for and the target cannot read it")))
            }
            Some(v) => v,
            None => match (writer.oldest..=writer.newest).rev().find(|&v| reader.reads(v)) {
                Some(v) => v,
                None => return Err(fail(
                    "no format in common: install a seamless-init that reads these formats into the target initramfs"
                        .into(),
                )),
            },
        };
    let unknown = needs.incompat & !reader.incompat;
    if unknown != 0 {
        return Err(fail(format!(
            "the image needs incompatible features {unknown:#x} that the target does not know: update the target's seamless-init"
        )));
    }
    let missing: Vec<String> = needs
        .kinds
        .iter()
        .filter(|k| reader.kinds.binary_search(k).is_err())
        .map(|&k| RecordKind(k).to_string())
        .collect();
    if !missing.is_empty() {
        return Err(fail(format!(
            "the target does not know record kinds {}: update the target's seamless-init",
            missing.join(", ")
        )));
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_tolerates_new_lines() {
        let f = Formats::this_build("9.9.9");
        assert_eq!(Formats::parse(&f.to_text()), Ok(f.clone()));
        let later = format!("{}sparse-pages yes\n", f.to_text());
        assert_eq!(Formats::parse(&later), Ok(f));
        assert_eq!(Formats::parse("usage: seamless-init"), Err(FormatsError::Header));
        assert_eq!(Formats::parse(&format!("{HEADER}\nformats 2 1\n")), Err(FormatsError::Line("formats 2 1".into())));
        assert_eq!(Formats::parse(&format!("{HEADER}\nformats 1 2\n")), Err(FormatsError::Missing("kinds")));
    }

    #[test]
    fn the_newest_common_format_is_chosen() {
        let me = Formats::this_build("new");
        assert_eq!(choose(&me, &me, &Needs::default()), Ok(FORMAT_VERSION));
        assert_eq!(choose(&me, &Formats::predating(), &Needs::default()), Ok(1));
        let asked = Needs { version: Some(1), ..Needs::default() };
        assert_eq!(choose(&me, &me, &asked), Ok(1));
    }

    #[test]
    fn mismatches_name_both_sides() {
        let me = Formats::this_build("new");
        let old = Formats::predating();
        let asked = Needs { version: Some(2), ..Needs::default() };
        let e = choose(&me, &old, &asked).expect_err("format 2 for a format-1 reader");
        assert!(e.to_string().contains("reads 1..1") && e.to_string().contains("format 2"), "{e}");
        let future = Formats { oldest: 7, newest: 8, ..me.clone() };
        assert!(choose(&me, &future, &Needs::default())
            .expect_err("no common")
            .to_string()
            .contains("no format in common"));
        let feature = Needs { incompat: 1 << 40, ..Needs::default() };
        let e = choose(&me, &me, &feature).expect_err("unknown feature");
        assert!(e.to_string().contains("0x10000000000"), "{e}");
        let kinds = Needs { kinds: vec![16, 999], ..Needs::default() };
        let e = choose(&me, &old, &kinds).expect_err("unknown kind");
        assert!(e.to_string().contains("kind#999"), "{e}");
    }

    #[test]
    fn this_build_does_not_claim_the_kinds_it_cannot_restore() {
        let f = Formats::this_build("test");
        assert!(crate::records::kind_name(crate::records::JOURNAL_STREAM).is_some());
        for k in crate::records::NOT_RESTORED {
            assert!(!f.kinds.contains(&k.0), "kind {} is advertised", k.0);
        }
        assert!(f.kinds.contains(&crate::records::MQ_NOTIFY.0));
    }
}
