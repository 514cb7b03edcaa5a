//! Checks done before any training: output paths (format, directory, writability) and the
//! memory a run will need against the memory the machine has.

use anyhow::bail;
use std::path::{Path, PathBuf};

/// The extension of `path`, lower-cased.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
}

/// Creates and removes a probe file in `dir`, so that a path there that cannot be written fails
/// now rather than after the work whose result it should hold.
fn probe_writable(flag: &str, path: &Path, dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(format!(".dsb-write-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => bail!(
            "{flag} {}: cannot write in directory {} ({e})",
            path.display(),
            dir.display()
        ),
    }
}

/// The directory a file path lives in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks an output file given to `flag`: its extension is one of `extensions` (any when empty;
/// `formats` describes them in the message), it is not a directory, its directory exists and
/// can be written.
pub fn output_file(
    flag: &str,
    path: &Path,
    extensions: &[&str],
    formats: &str,
) -> anyhow::Result<()> {
    if path.is_dir() {
        bail!(
            "{flag} {}: is a directory; give a file name (e.g. {})",
            path.display(),
            path.join(format!("out.{}", extensions.first().unwrap_or(&"csv")))
                .display()
        );
    }
    if !extensions.is_empty() && !extension(path).is_some_and(|e| extensions.contains(&e.as_str()))
    {
        bail!(
            "{flag} {}: unknown output format; use a {formats} extension",
            path.display()
        );
    }
    let dir = parent_dir(path);
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{flag} {}: {} is not a directory",
            path.display(),
            dir.display()
        );
    }
    if !dir.is_dir() {
        bail!(
            "{flag} {}: directory {} does not exist; create it first",
            path.display(),
            dir.display()
        );
    }
    probe_writable(flag, path, &dir)
}

/// Checks an output directory given to `flag`: if it exists it is a directory that can be
/// written; if not, its nearest existing ancestor is one (it will be created there).
pub fn output_dir(flag: &str, path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        if !path.is_dir() {
            bail!(
                "{flag} {}: exists and is not a directory; give a directory",
                path.display()
            );
        }
        return probe_writable(flag, path, path);
    }
    let mut dir = parent_dir(path);
    while !dir.exists() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => {
                dir = PathBuf::from(".");
                break;
            }
        }
    }
    if !dir.is_dir() {
        bail!(
            "{flag} {}: {} is not a directory",
            path.display(),
            dir.display()
        );
    }
    probe_writable(flag, path, &dir)
}

/// Bytes of memory available to a new allocation: `MemAvailable` of /proc/meminfo, or `None`
/// where it cannot be read (the size guard is then skipped).
pub fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// Refuses a run whose estimated memory `bytes` (what it is made of: `what`) is above the
/// memory available, naming the flags that shrink it.
pub fn memory(bytes: f64, what: &str, flags: &str) -> anyhow::Result<()> {
    if let Some(avail) = available_memory()
        && bytes > avail
    {
        bail!(
            "this run needs about {} of memory ({what}), more than the {} available; lower {flags}",
            human_bytes(bytes),
            human_bytes(avail)
        );
    }
    Ok(())
}

/// `bytes` as a short human-readable size.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i + 1 == UNITS.len() && v >= 1000.0 {
        return format!("{bytes:.1e} B");
    }
    format!("{v:.1} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(512.0), "512.0 B");
        assert_eq!(human_bytes(2.5e9), "2.5 GB");
        assert_eq!(human_bytes(1e30), "1.0e30 B");
    }

    #[test]
    fn output_checks_catch_bad_paths_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("a.csv");
        output_file("--out", &ok, &["csv"], ".csv").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let e = output_file("--out", &dir.path().join("a.xyz"), &["csv"], ".csv").unwrap_err();
        assert!(e.to_string().contains("unknown output format"));
        let e = output_file("--out", dir.path(), &[], "").unwrap_err();
        assert!(e.to_string().contains("is a directory"));
        let e = output_file("--out", &dir.path().join("no/a.csv"), &["csv"], ".csv").unwrap_err();
        assert!(e.to_string().contains("does not exist"));
        output_dir("--out", &dir.path().join("x/y")).unwrap();
        let e = output_dir("--out", &ok.with_extension("")).map(|_| ());
        assert!(e.is_ok());
        std::fs::write(&ok, b"").unwrap();
        let e = output_dir("--out", &ok).unwrap_err();
        assert!(e.to_string().contains("not a directory"));
    }
}
