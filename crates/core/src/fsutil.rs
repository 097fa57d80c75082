//! Small file-system helpers every part shares: private directories, the one atomic writer
//! (temporary file, fsync, rename, fsync of the directory) for config, state and key files, and
//! a removal that survives a power cut (taking back a copy of a message that was not accepted),
//! and the one lock around every read-modify-write of a settings file.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// How a full path starts here, for the "not a full path" errors: "give it starting with ...".
#[cfg(windows)]
pub const FULL_PATH_START: &str = r"a drive, like C:\";
/// How a full path starts here, for the "not a full path" errors: "give it starting with ...".
#[cfg(not(windows))]
pub const FULL_PATH_START: &str = "/";

/// Where the hints' example CA file is (a made-up path in this platform's form).
#[cfg(windows)]
pub const EXAMPLE_DIR: &str = r"C:\path\to";
/// Where the hints' example CA file is (a made-up path in this platform's form).
#[cfg(not(windows))]
pub const EXAMPLE_DIR: &str = "/path/to";

/// A test's text with full paths written the Unix way (a `/` at the start, after `:` or after a
/// space): as it is on Unix; on Windows with each such path on drive C: (`maildir:C:/m`).
#[cfg(test)]
pub(crate) fn abs(unix: &str) -> String {
    if !cfg!(windows) {
        return unix.to_owned();
    }
    let mut out = String::with_capacity(unix.len() + 8);
    let mut before = None;
    for c in unix.chars() {
        if c == '/' && matches!(before, None | Some(':') | Some(' ')) {
            out.push_str("C:");
        }
        out.push(c);
        before = Some(c);
    }
    out
}

/// [`abs`] undone: a path shown by the code under test, as the test wrote it.
#[cfg(test)]
pub(crate) fn unabs(shown: &str) -> String {
    if cfg!(windows) {
        shown.replace("C:/", "/")
    } else {
        shown.to_owned()
    }
}

/// A program that ends at once, for a test that needs the pid of a process that is gone.
#[cfg(test)]
pub(crate) fn short_lived() -> std::process::Command {
    if cfg!(windows) {
        let mut c = std::process::Command::new("cmd");
        c.args(["/c", "rem"]);
        c
    } else {
        std::process::Command::new("true")
    }
}

/// Creates `path` and its parents with mode 0700 (owner only) where they are missing.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// fsyncs a directory, so entries renamed into it survive a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for fsync there; NTFS journals the rename itself.
        let _ = dir;
        Ok(())
    }
}

/// Removes the file `path` and fsyncs its directory, so the removal is on disk when this returns:
/// a message taken back after a failed commit must not come back after a crash, beside the copy
/// the sender's retry makes. A file already gone counts as removed (the directory is synced
/// still).
pub fn remove_durably(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Whether `a` and `b` name the same file (symlinks and `..` resolved); paths that do not
/// exist (yet) are compared as written.
pub fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Replaces `path` with `bytes`, all or nothing: a temporary file beside it (mode `mode`) is
/// written and fsynced, renamed over `path`, and the directory fsynced. A crash at any point
/// leaves either the old file or the new one, never a torn one. Missing parent directories are
/// created (0700).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    // A name nobody else uses, created with O_EXCL: two writers never share a temporary file.
    let mut builder = tempfile::Builder::new();
    let prefix = format!(".{name}.");
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(&dir)?;
    tmp.as_file_mut().write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On failure the temporary file is removed when `tmp` drops.
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(&dir)
}

/// Holds the one lock on a settings file (the config, the account file) for a
/// read-modify-write: another thread of this process waits on a condition variable, another
/// process on `flock(2)` of `.NAME.lock` beside the file. Released when dropped.
#[derive(Debug)]
pub struct FileLock {
    key: PathBuf,
    _file: std::fs::File,
}

fn held() -> &'static (
    std::sync::Mutex<std::collections::HashSet<PathBuf>>,
    std::sync::Condvar,
) {
    static HELD: std::sync::OnceLock<(
        std::sync::Mutex<std::collections::HashSet<PathBuf>>,
        std::sync::Condvar,
    )> = std::sync::OnceLock::new();
    HELD.get_or_init(Default::default)
}

impl FileLock {
    /// Waits until this process and every other one have let go of `path`'s lock, then takes
    /// it. The lock file's directory is created (0700) when missing.
    pub fn take(path: &Path) -> io::Result<FileLock> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        create_private_dir(&dir)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let lock_path = dir.join(format!(".{name}.lock"));
        let key = std::path::absolute(&lock_path).unwrap_or_else(|_| lock_path.clone());
        {
            let (set, freed) = held();
            let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
            while set.contains(&key) {
                set = freed.wait(set).unwrap_or_else(|p| p.into_inner());
            }
            set.insert(key.clone());
        }
        let locked = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.create(true).truncate(false).write(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let file = options.open(&lock_path)?;
            // flock(2) on Unix, LockFileEx on Windows; released when the file is closed.
            file.lock()?;
            Ok(file)
        })();
        match locked {
            Ok(file) => Ok(FileLock { key, _file: file }),
            Err(e) => {
                release(&key);
                Err(e)
            }
        }
    }
}

fn release(key: &Path) {
    let (set, freed) = held();
    set.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    freed.notify_all();
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // The flock goes with the file (dropped after this); the in-process hold goes now.
        release(&self.key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_with_their_mode_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.toml");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.toml"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        // A write that cannot happen leaves the old file.
        let blocked = dir.path().join("file-not-dir");
        std::fs::write(&blocked, "x").unwrap();
        assert!(write_atomic(&blocked.join("f"), b"y", 0o600).is_err());
    }

    #[test]
    fn durable_removal_says_when_it_cannot_remove() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("copy");
        std::fs::write(&file, "x").unwrap();
        remove_durably(&file).unwrap();
        assert!(!file.exists());
        // Gone already: nothing to take back, not an error.
        remove_durably(&file).unwrap();
        // A directory where the file was: the error is returned, not swallowed.
        std::fs::create_dir(&file).unwrap();
        assert!(remove_durably(&file).is_err());
        // Its directory gone: the fsync cannot happen, and says so (Windows has no fsync of a
        // directory: a removal is durable there once it returns).
        #[cfg(unix)]
        assert!(remove_durably(&dir.path().join("gone/copy")).is_err());
    }
}
