//! Atomic file writes: the one file helper that every layer uses (checkpoints, parameters,
//! settings, reports), kept at the bottom of the module order beside [`crate::error`], and the
//! comparison of saved settings with the settings of a run that loads them.
//! [`crate::io`] re-exports the writes.

use crate::error::{DsbError, Result};
use std::path::{Path, PathBuf};

/// A temporary path beside `path`, in the same directory so that a rename is atomic. It ends with
/// the original file name, so writers that choose a format by extension still see it.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".tmp-{}.{name}", std::process::id()))
}

/// The fields in which two settings objects differ, at any depth, as
/// `a.b: A here, B in the file` (with `here` and `there` naming the two sides). Fields missing
/// on one side count as `null`.
pub fn json_differences(
    given: &serde_json::Value,
    saved: &serde_json::Value,
    here: &str,
    there: &str,
) -> Vec<String> {
    fn walk(
        path: &str,
        v: &serde_json::Value,
        w: &serde_json::Value,
        sides: (&str, &str),
        out: &mut Vec<String>,
    ) {
        let null = serde_json::Value::Null;
        match (v.as_object(), w.as_object()) {
            (Some(a), Some(b)) => {
                for (k, x) in a {
                    let key = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&key, x, b.get(k).unwrap_or(&null), sides, out);
                }
            }
            _ if v != w => out.push(format!("{path}: {v} {}, {w} {}", sides.0, sides.1)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", given, saved, (here, there), &mut out);
    out
}

/// Writes a file through `write` into a temporary file beside `path`, then renames it over
/// `path`: a crash leaves either the old file or the new one, never half of one.
pub fn atomic_write_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| DsbError::io(dir, e))?;
    }
    let tmp = temp_path(path);
    let result =
        write(&tmp).and_then(|_| std::fs::rename(&tmp, path).map_err(|e| DsbError::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| DsbError::io(tmp, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/out.txt");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
