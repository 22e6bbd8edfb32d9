//! The embedded store's file (`store.path`): one line per change, appended
//! and flushed to disk before the change is answered, read back at start
//! and rewritten (compacted) from what is still in force.
//!
//! | line | what |
//! |---|---|
//! | `s <until> <id>` / `u <until> <before> <sub>` | a revocation ([`Revocation::encode`]) |
//! | `p <slug> <profile>` (`-`: the default) | a profile choice |
//! | `q <window> <slug> <run_secs> <cpu_secs>` | a workspace's use so far in a quota period |
//! | `a <json>` | an audit record |
//!
//! Unknown lines are skipped (a newer roost's, read by an older one).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::super::{Revocation, StoreError, Usage};

/// One line of the file.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Revoked(Revocation),
    Profile { slug: String, profile: Option<String> },
    Usage { window: u64, slug: String, used: Usage },
    Audit(String),
}

impl Line {
    pub fn encode(&self) -> String {
        match self {
            Line::Revoked(r) => r.encode(),
            Line::Profile { slug, profile } => format!("p {slug} {}", profile.as_deref().unwrap_or("-")),
            Line::Usage { window, slug, used } => format!("q {window} {slug} {} {}", used.run_secs, used.cpu_secs),
            Line::Audit(json) => format!("a {json}"),
        }
    }

    pub fn decode(line: &str) -> Option<Line> {
        let (kind, rest) = line.split_once(' ')?;
        let word = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
        match kind {
            "s" | "u" => Revocation::decode(line).map(Line::Revoked),
            "p" => {
                let (slug, profile) = rest.split_once(' ')?;
                (word(slug) && word(profile)).then(|| Line::Profile {
                    slug: slug.to_string(),
                    profile: (profile != "-").then(|| profile.to_string()),
                })
            }
            "q" => {
                let mut parts = rest.split(' ');
                let window = parts.next()?.parse().ok()?;
                let slug = parts.next().filter(|s| word(s))?.to_string();
                let run_secs = parts.next()?.parse().ok()?;
                let cpu_secs = parts.next()?.parse().ok()?;
                parts.next().is_none().then_some(Line::Usage {
                    window,
                    slug,
                    used: Usage { run_secs, cpu_secs },
                })
            }
            "a" if !rest.contains('\n') => Some(Line::Audit(rest.to_string())),
            _ => None,
        }
    }
}

fn file_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::File {
        path: path.display().to_string(),
        source,
    }
}

/// Every line of the file at `path` (none when it does not exist yet).
pub fn read(path: &Path) -> Result<Vec<Line>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().filter_map(Line::decode).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(file_error(path)(e)),
    }
}

/// Replaces the file with `lines`, atomically (a temporary file renamed).
pub fn rewrite(path: &Path, lines: &[Line]) -> Result<(), StoreError> {
    let mut text = String::new();
    for line in lines {
        text.push_str(&line.encode());
        text.push('\n');
    }
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(file_error(path))
}

/// Appends `lines` and flushes them to disk, off the async threads.
pub async fn append(path: PathBuf, lines: Vec<Line>) -> Result<(), StoreError> {
    let mut text = String::new();
    for line in &lines {
        text.push_str(&line.encode());
        text.push('\n');
    }
    let shown = path.display().to_string();
    let write = move || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().append(true).create(true).open(&path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    };
    let result = match tokio::task::spawn_blocking(write).await {
        Ok(result) => result,
        Err(e) => Err(std::io::Error::other(e)),
    };
    result.map_err(|source| StoreError::File { path: shown, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_reads_back_and_nonsense_is_skipped() {
        for line in [
            Line::Revoked(Revocation::Session {
                id: "abc".into(),
                until: 9,
            }),
            Line::Profile {
                slug: "alice-0123".into(),
                profile: Some("python".into()),
            },
            Line::Profile {
                slug: "alice-0123".into(),
                profile: None,
            },
            Line::Usage {
                window: 1_700_000_000,
                slug: "bob-99".into(),
                used: Usage {
                    run_secs: 30.5,
                    cpu_secs: 0.25,
                },
            },
            Line::Audit(r#"{"action":"stop","why":"a b"}"#.into()),
        ] {
            assert_eq!(Line::decode(&line.encode()), Some(line));
        }
        for bad in [
            "",
            "p",
            "p slug",
            "p a b c",
            "q 1 s 2",
            "q x s 1 2",
            "q 1 s 1 2 3",
            "z 1",
        ] {
            assert_eq!(Line::decode(bad), None, "{bad:?}");
        }
    }
}
