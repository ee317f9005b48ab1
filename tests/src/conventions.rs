//! Checks of the code base's own conventions, run with the unit layer (`tests/run unit`).
//!
//! System calls: every public function of `seamless-sys` with an `unsafe` block says in its
//! documentation which man page documents what it wraps (`Man page: ...(2)`).
//!
//! Errors: an error's message never repeats its source's text (`#[error("...: {source}")]`
//! or `"{0}"` over a `#[source]`/`#[from]` field), since the operator's command prints the
//! whole chain (`seamless_sys::chain`, anyhow's `{:#}`) and the cause would appear twice.

#[cfg(test)]
mod tests {
    use crate::paths::repo_root;
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name();
            if p.is_dir() && name != "target" && name != "fuzz" {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Every `#[error]` message of the production crates, with the attribute lines that follow
    /// it up to the next message.
    fn error_attributes() -> Vec<(String, String, Vec<String>)> {
        let mut files = Vec::new();
        for d in ["init", "checkpoint"] {
            rust_files(&repo_root().join(d), &mut files);
        }
        let mut out = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if let Some(msg) = l.trim().strip_prefix("#[error(") {
                    let after: Vec<String> = lines[i + 1..]
                        .iter()
                        .take_while(|x| !x.trim().starts_with("#[error(") && !x.trim().starts_with("///"))
                        .take(12)
                        .map(|x| x.trim().to_string())
                        .collect();
                    out.push((format!("{}:{}", f.display(), i + 1), msg.to_string(), after));
                }
            }
        }
        out
    }

    #[test]
    fn no_error_message_embeds_its_source() {
        let all = error_attributes();
        assert!(all.len() > 50, "found only {} error messages: is the scan looking in the right place?", all.len());
        let mut bad = Vec::new();
        for (at, msg, after) in &all {
            if msg.starts_with("transparent") {
                continue;
            }
            let has_source =
                after.iter().any(|l| l.contains("#[source]") || l.contains("#[from]") || l.starts_with("source:"));
            let tuple_source = after.first().is_some_and(|l| l.contains("(#[source]") || l.contains("(#[from]"));
            if msg.contains("{source}")
                || (tuple_source && msg.contains("{0}"))
                || (has_source && msg.contains("{err}"))
            {
                bad.push(format!("{at}: #[error({msg}"));
            }
        }
        assert!(
            bad.is_empty(),
            "error messages that print their source (it is printed by the chain):\n{}",
            bad.join("\n")
        );
    }

    /// The public functions of a file: (line, name, documentation, body).
    fn pub_fns(text: &str) -> Vec<(usize, String, String, String)> {
        let lines: Vec<&str> = text.lines().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i];
            let name = l.strip_prefix("pub fn ").or_else(|| l.strip_prefix("pub unsafe fn "));
            if let Some(name) = name {
                let name: String = name.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                let doc: Vec<&str> = lines[..i]
                    .iter()
                    .rev()
                    .take_while(|x| x.starts_with("///") || x.starts_with("#["))
                    .copied()
                    .collect();
                let end = (i + 1..lines.len()).find(|&k| lines[k] == "}").unwrap_or(lines.len() - 1);
                out.push((i + 1, name, doc.join("\n"), lines[i..=end].join("\n")));
                i = end;
            }
            i += 1;
        }
        out
    }

    #[test]
    fn every_system_call_wrapper_names_its_man_page() {
        let mut files = Vec::new();
        rust_files(&repo_root().join("init/sys/src"), &mut files);
        let mut bad = Vec::new();
        let mut wrappers = 0;
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            for (line, name, doc, body) in pub_fns(&text) {
                if !body.contains("unsafe") {
                    continue;
                }
                wrappers += 1;
                if !doc.contains("Man page: ") {
                    bad.push(format!("{}:{line}: {name}", f.display()));
                }
            }
        }
        assert!(wrappers > 50, "found only {wrappers} wrappers: is the scan looking in the right place?");
        assert!(
            bad.is_empty(),
            "wrappers that do not name their man page (`/// Man page: `x(2)`.`):\n{}",
            bad.join("\n")
        );
    }
}
