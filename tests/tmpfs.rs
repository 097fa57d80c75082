//! A size-limited tmpfs the test mounts (root only) to run a Maildir out of space; unmounted on
//! drop. Plus a filler file to take up all but a chosen amount of its space.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run_checked;

/// A mounted tmpfs; dropping it unmounts it (lazily if still busy) and removes the mount point.
pub struct Tmpfs {
    mount_point: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_kib` KiB, mode 0755, on a fresh temp dir.
    pub fn mount(size_kib: u64) -> Self {
        let dir = crate::test_dir("tmpfs");
        let mount_point = dir.path().join("fs");
        std::fs::create_dir(&mount_point).expect("creating the mount point");
        if let Err(e) = run_checked(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size_kib}k,mode=0755"))
                .arg("mailcall-e2e")
                .arg(&mount_point),
            None,
        ) {
            panic!("mounting a tmpfs needs root (and mount in this container): {e}");
        }
        Self {
            mount_point,
            _dir: dir,
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// Bytes still free for files, from `stat -f` (free blocks for unprivileged users × size).
    pub fn available(&self) -> u64 {
        let out = run_checked(
            Command::new("stat")
                .args(["-f", "-c", "%a %S"])
                .arg(&self.mount_point),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let mut parts = out.stdout.split_whitespace().map(|p| p.parse::<u64>());
        match (parts.next(), parts.next()) {
            (Some(Ok(blocks)), Some(Ok(size))) => blocks * size,
            _ => panic!("cannot read `stat -f` output: {:?}", out.stdout),
        }
    }

    /// Writes a file `name` that leaves about `leave` bytes free; returns its path.
    pub fn fill_leaving(&self, name: &str, leave: u64) -> PathBuf {
        let path = self.mount_point.join(name);
        let size = self.available().saturating_sub(leave);
        std::fs::write(&path, vec![b'f'; size as usize])
            .unwrap_or_else(|e| panic!("writing the filler {}: {e}", path.display()));
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let done = Command::new("umount").arg(&self.mount_point).status();
        if !matches!(done, Ok(s) if s.success()) {
            // Something still holds a file there (a process being killed): detach it now,
            // the kernel frees it when the last user goes.
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
    }
}
