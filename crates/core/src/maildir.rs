//! Durable Maildir delivery: write in `tmp/`, fsync, move into `new/`, fsync the directory.
//!
//! The order is what makes a `250` safe to send: once `Delivery::commit` returns, the file's data
//! and its directory entry in `new/` are on disk. Any failure before that removes the `tmp/` file,
//! so nothing half-written is ever visible in `new/` and the sender keeps (and retries) the mail.
//!
//! A commit never replaces a file: a name is only sure to be unique in `tmp/` (`O_EXCL`), and a
//! plain `rename` into `new/` would silently overwrite a message acknowledged earlier that has
//! the same name (a clock set back after a reboot, the same pid again). On Linux the move is
//! `renameat2(RENAME_NOREPLACE)`, which fails instead, in one directory operation; elsewhere (and
//! on Linux file systems without that flag, such as NFS) it is `link`, which fails the same way,
//! then `unlink` of the `tmp/` name once `new/` is synced. Either way the delivery then takes a
//! fresh name. Where the file system has no hard links either (FAT, some network file systems)
//! the file is renamed only once no entry of that name is found.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fsutil::{create_private_dir, sync_dir};

/// How many names `begin` tries when a name is already taken (another writer in the same µs).
const NAME_ATTEMPTS: u32 = 16;
/// The Maildir rule: a `tmp/` file untouched this long is abandoned, whoever wrote it.
const STALE_AGE: Duration = Duration::from_secs(36 * 60 * 60);
/// Entries of `tmp/` looked at per cleanup, so a directory flooded with junk cannot stall a start.
const CLEAN_LIMIT: usize = 100_000;

/// A Maildir (`tmp/`, `new/`, `cur/`) that messages are delivered into.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
    /// The host part of unique names, already sanitised (`/` → `\057`, `:` → `\072`).
    host: String,
    /// Per-Maildir delivery counter (the `Q` part of unique names); shared by clones so two
    /// sessions writing into the same Maildir never race for a name. `O_EXCL` covers the rest.
    counter: Arc<AtomicU64>,
    /// `new/`'s fsync, shared by deliveries committing at the same moment.
    new_sync: Arc<DirSync>,
    /// Set while the last delivery here failed on disk (and at first, until one succeeds):
    /// deliveries then make their `tmp/` file at `begin`, so a broken Maildir is answered
    /// before the message is sent (`451` to DATA) instead of after it.
    failing: Arc<AtomicBool>,
}

/// Group commit for `new/`: an entry linked (or renamed) into it is durable once any fsync of
/// the directory that *started after* the link has finished. Deliveries committing together (an ISP delivers over
/// many connections at once) then share one directory fsync instead of queueing one each.
#[derive(Debug, Default)]
struct DirSync {
    /// Renames into the directory completed so far (counted after each rename returns).
    renamed: AtomicU64,
    /// How many of those the last finished fsync covers.
    synced: std::sync::Mutex<u64>,
    /// Directory fsyncs done (for tests and diagnostics).
    fsyncs: AtomicU64,
}

impl DirSync {
    /// Blocks until the rename this caller just completed is covered by a finished fsync of `dir`.
    fn after_rename(&self, dir: &Path) -> io::Result<()> {
        let mine = self.renamed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= mine {
            // Someone's fsync started after our rename and has finished: ours is durable.
            return Ok(());
        }
        // Every rename counted so far has returned, so the fsync below covers all of them.
        let covers = self.renamed.load(Ordering::SeqCst);
        sync_dir(dir)?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        *synced = covers;
        Ok(())
    }
}

impl Maildir {
    /// Opens the Maildir at `root`, creating it and its subdirectories (mode 0700) if missing.
    ///
    /// A Maildir++ folder (`~/Maildir/.Example-org`: a name starting with `.` inside a Maildir,
    /// or inside a directory that does not exist yet) is made as the Maildir++ spec asks of
    /// whoever creates a folder: the Maildir around it gets its `cur/new/tmp` too, and the
    /// folder a `maildirfolder` file. A hidden directory elsewhere (`~/.maildir`) is a plain
    /// Maildir. A dot inside the folder's name is hierarchy to readers (`.example.org` is
    /// `org` under `example` in Dovecot).
    pub fn create(root: &Path) -> io::Result<Self> {
        let folder_of = root
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.') && n.len() > 1)
            .then(|| root.parent())
            .flatten()
            .filter(|parent| !parent.exists() || is_maildir(parent));
        if let Some(parent) = folder_of {
            for sub in ["tmp", "new", "cur"] {
                create_private_dir(&parent.join(sub))?;
            }
        }
        create_private_dir(root)?;
        for sub in ["tmp", "new", "cur"] {
            create_private_dir(&root.join(sub))?;
        }
        if folder_of.is_some() {
            let marker = root.join("maildirfolder");
            if !marker.exists() {
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create(true).truncate(false);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                options.open(&marker)?;
            }
        }
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Maildir {
            root: root.to_path_buf(),
            host: sanitize_host(&host),
            counter: Arc::new(AtomicU64::new(0)),
            new_sync: Arc::default(),
            failing: Arc::new(AtomicBool::new(true)),
        })
    }

    /// The Maildir's top directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a delivery under a new unique name.
    ///
    /// While deliveries here succeed, its file in `tmp/` is made with the first bytes that go
    /// to disk, in the same trip to the blocking pool (for most messages, the commit's): one
    /// trip per message instead of two. After a failure (and for the first delivery), the file
    /// is made here, so a Maildir that cannot take mail fails the delivery before the message
    /// is sent.
    pub async fn begin(&self) -> io::Result<Delivery> {
        let id = unique_id(&self.counter);
        let name = format!("{id}.{}", self.host);
        let mut delivery = Delivery {
            file: None,
            finished: false,
            pending: Vec::new(),
            tmp_path: None,
            tmp_dir: self.root.join("tmp"),
            new_dir: self.root.join("new"),
            new_sync: self.new_sync.clone(),
            counter: self.counter.clone(),
            host: self.host.clone(),
            failing: self.failing.clone(),
            name,
            id,
            size: 0,
        };
        if self.failing.load(Ordering::Relaxed) {
            let tmp = delivery.take_file()?;
            let name = delivery.name.clone();
            let (file, path, name) = blocking(move || tmp.open(&name)).await?;
            delivery.file = Some(file);
            delivery.tmp_path = Some(path);
            delivery.name = name;
        }
        Ok(delivery)
    }

    /// Removes abandoned files from `tmp/`, as a Maildir writer should at start; returns how many.
    ///
    /// A file goes if it was last modified over 36 hours ago (anyone's), or if it is ours — this
    /// host's name in its file name — and the process that wrote it (the `P<pid>` part) is gone:
    /// a crash or `kill -9` mid-delivery. Such a message never got its 250, so the sender still
    /// has it. Files of live writers (including this process) are left alone. The process check
    /// needs `/proc` (Linux); without it only the age rule applies. (Only Linux's own: under
    /// Wine a Windows program sees Linux's `/proc` too, but its pids are Wine's, not Linux's.)
    pub fn clean_stale_tmp(&self) -> io::Result<usize> {
        let proc_available = cfg!(target_os = "linux") && Path::new("/proc/self").exists();
        self.clean_stale_tmp_with(SystemTime::now(), |pid| {
            !proc_available || pid == std::process::id() || pid_alive(pid)
        })
    }

    /// `clean_stale_tmp` with the clock and the liveness check given, for tests.
    fn clean_stale_tmp_with(
        &self,
        now: SystemTime,
        alive: impl Fn(u32) -> bool,
    ) -> io::Result<usize> {
        let tmp = self.root.join("tmp");
        let mut removed = 0;
        for entry in std::fs::read_dir(&tmp)?.take(CLEAN_LIMIT) {
            let entry = entry?;
            let Ok(meta) = entry.metadata() else {
                continue; // gone meanwhile
            };
            if !meta.is_file() {
                continue;
            }
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_AGE);
            let name = entry.file_name();
            let orphan = writer_pid(&name.to_string_lossy(), &self.host).is_some_and(|p| !alive(p));
            if !(old || orphan) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e,
                        "cannot remove a stale file from the Maildir's tmp/");
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, dir = %tmp.display(), "removed stale files from tmp/");
        }
        Ok(removed)
    }
}

/// `<secs>.M<µs>P<pid>Q<n>`: the unique part of a Maildir name, without the host; `counter` is
/// the Maildir's delivery counter.
fn unique_id(counter: &AtomicU64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    format!(
        "{}.M{}P{}Q{}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        n
    )
}

/// How a file got into `new/`, which says whether its `tmp/` name is still there to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// Hard-linked: the `tmp/` name remains until the commit unlinks it.
    Linked,
    /// Renamed (`RENAME_NOREPLACE`, or no hard links on this file system): the `tmp/` name is
    /// gone.
    Renamed,
}

/// How a commit moves its file into `new/`, best first; each falls back to the next where the
/// file system refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// `renameat2(RENAME_NOREPLACE)` (Linux): one atomic step that never replaces.
    #[cfg(target_os = "linux")]
    RenameNoReplace,
    /// `link`, then `unlink` of the `tmp/` name after the fsync of `new/`.
    Link,
    /// No hard links here: `rename` once the name is found unused.
    CheckedRename,
}

impl Way {
    #[cfg(target_os = "linux")]
    const FIRST: Way = Way::RenameNoReplace;
    #[cfg(not(target_os = "linux"))]
    const FIRST: Way = Way::Link;
}

/// Puts the (fsynced) file `tmp` into `new_dir` under `name`, or under a name from `fresh` when
/// one is taken — at most [`NAME_ATTEMPTS`] names — and never replaces an entry of `new_dir`.
/// Returns the final path and how it got there.
///
/// `renameat2(RENAME_NOREPLACE)` and `link` are atomic about it: they fail with `EEXIST` rather
/// than replace. A file system without the flag (`EINVAL`, e.g. NFS) gets `link`; one without
/// hard links (FAT/vfat answers `EPERM`, some network and FUSE ones `EOPNOTSUPP` or `ENOSYS`,
/// Windows on FAT `ERROR_INVALID_FUNCTION`) gets a `rename` once the name is found unused: a
/// check and an act, not one atomic step, but a Maildir writer never aims at a name it did not
/// make unique, so only another delivery taking the same name in that instant could slip in.
fn place(
    tmp: &Path,
    new_dir: &Path,
    name: &str,
    fresh: impl FnMut() -> String,
) -> io::Result<(PathBuf, Placed)> {
    place_from(Way::FIRST, tmp, new_dir, name, fresh)
}

/// [`place`], starting from `way`.
fn place_from(
    mut way: Way,
    tmp: &Path,
    new_dir: &Path,
    name: &str,
    mut fresh: impl FnMut() -> String,
) -> io::Result<(PathBuf, Placed)> {
    let mut candidate = name.to_string();
    let mut last_err = None;
    for _ in 0..NAME_ATTEMPTS {
        let target = new_dir.join(&candidate);
        let result = loop {
            match way {
                #[cfg(target_os = "linux")]
                Way::RenameNoReplace => match rename_no_replace(tmp, &target) {
                    Err(e) if no_replace_unsupported(&e) => {
                        tracing::debug!(dir = %new_dir.display(), error = %e,
                            "no RENAME_NOREPLACE here: linking into new/ instead");
                        way = Way::Link;
                    }
                    other => break other,
                },
                Way::Link => match std::fs::hard_link(tmp, &target) {
                    Err(e) if links_unsupported(&e) => {
                        tracing::debug!(dir = %new_dir.display(), error = %e,
                            "no hard links here: renaming into new/ after checking the name is free");
                        way = Way::CheckedRename;
                    }
                    other => break other,
                },
                Way::CheckedRename => break rename_unless_taken(tmp, &target),
            }
        };
        match result {
            Ok(()) => {
                let how = if way == Way::Link {
                    Placed::Linked
                } else {
                    Placed::Renamed
                };
                return Ok((target, how));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::warn!(path = %target.display(),
                    "a file of this name is already in new/: the message takes another name");
                last_err = Some(e);
                candidate = fresh();
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no unused name in new/")))
}

/// `renameat2(tmp, target, RENAME_NOREPLACE)`: `AlreadyExists` if `target` exists.
#[cfg(target_os = "linux")]
fn rename_no_replace(tmp: &Path, target: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, tmp, CWD, target, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

/// Whether `renameat2` failed because the file system (or kernel) lacks `RENAME_NOREPLACE`.
#[cfg(target_os = "linux")]
fn no_replace_unsupported(e: &io::Error) -> bool {
    // EINVAL (the flag is unknown to this file system), ENOSYS (no renameat2), EOPNOTSUPP.
    matches!(e.raw_os_error(), Some(22 | 38 | 95))
}

/// `rename(tmp, target)` unless `target` exists (then `AlreadyExists`): the commit where there
/// are no hard links.
fn rename_unless_taken(tmp: &Path, target: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", target.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::rename(tmp, target),
        Err(e) => Err(e),
    }
}

/// Whether `link` failed because the file system has no hard links (not because of the name).
fn links_unsupported(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::PermissionDenied
    ) {
        // EPERM (vfat) reads as PermissionDenied, as does EACCES; the rename tried instead
        // fails the same way where the directory itself is not writable.
        return true;
    }
    // EOPNOTSUPP is not a kind of its own; ERROR_INVALID_FUNCTION and ERROR_NOT_SUPPORTED on
    // Windows may not be either.
    #[cfg(target_os = "linux")]
    const RAW: &[i32] = &[95];
    #[cfg(windows)]
    const RAW: &[i32] = &[1, 50];
    #[cfg(not(any(target_os = "linux", windows)))]
    const RAW: &[i32] = &[];
    e.raw_os_error().is_some_and(|code| RAW.contains(&code))
}

/// The writer's pid in a Maildir name of ours (`<secs>.M<µs>P<pid>Q<n>.<host>`); `None` for
/// names of other hosts or other writers' formats.
fn writer_pid(name: &str, host: &str) -> Option<u32> {
    let (secs, rest) = name.split_once('.')?;
    let (unique, name_host) = rest.split_once('.')?;
    if name_host != host || secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (_, after_p) = unique.strip_prefix('M')?.split_once('P')?;
    let (pid, _) = after_p.split_once('Q')?;
    pid.parse().ok()
}

/// Whether `dir` holds a Maildir's `cur/`, `new/` and `tmp/`.
fn is_maildir(dir: &Path) -> bool {
    ["cur", "new", "tmp"].iter().all(|s| dir.join(s).is_dir())
}

/// Whether a process with this pid exists (Linux `/proc`).
fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Maildir convention: the host part must not contain `/` (a path) or `:` (the info separator).
fn sanitize_host(host: &str) -> String {
    let host = if host.is_empty() { "localhost" } else { host };
    host.replace('/', "\\057").replace(':', "\\072")
}

/// Makes the delivery's file in `tmp/` under `name`, or under a name from `fresh` when one is
/// taken there (`O_EXCL`: never a shared file) — at most [`NAME_ATTEMPTS`] names. Returns the
/// file, its path and the name it got.
fn create_tmp(
    tmp_dir: &Path,
    name: &str,
    mut fresh: impl FnMut() -> String,
) -> io::Result<(std::fs::File, PathBuf, String)> {
    let mut candidate = name.to_string();
    let mut last_err = None;
    for _ in 0..NAME_ATTEMPTS {
        let path = tmp_dir.join(&candidate);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(file) => return Ok((file, path, candidate)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last_err = Some(e);
                candidate = fresh();
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no unused name in tmp/")))
}

/// Runs file system calls on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// One message being written; dropped without `commit`, its `tmp/` file (if made) is removed.
///
/// Bytes are gathered in memory up to [`WRITE_BUFFER`] before they go to the file, and the file
/// itself is made in the first trip that writes, so a typical message costs one trip to the
/// blocking pool (create + write + fsync + link + fsync) instead of one per step — on a busy
/// 2-core machine those thread hand-offs were most of the CPU time.
#[derive(Debug)]
pub struct Delivery {
    /// The `tmp/` file, once made (`tmp_path` is then set too).
    file: Option<std::fs::File>,
    /// Committed or aborted: no more writes.
    finished: bool,
    /// Bytes not written to `file` yet (at most about `WRITE_BUFFER` plus one `write`).
    pending: Vec<u8>,
    /// `Some` while the `tmp/` file exists and is ours to remove.
    tmp_path: Option<PathBuf>,
    tmp_dir: PathBuf,
    new_dir: PathBuf,
    new_sync: Arc<DirSync>,
    /// The Maildir's counter and host, for a fresh name should `name` be taken.
    counter: Arc<AtomicU64>,
    host: String,
    /// The Maildir's flag: set on a failure on disk, cleared by a commit.
    failing: Arc<AtomicBool>,
    name: String,
    id: String,
    size: u64,
}

/// How many bytes a delivery holds in memory before writing them to its file.
const WRITE_BUFFER: usize = 64 * 1024;

/// A delivery's file as a trip to the blocking pool takes it: open, or still to be made in
/// `tmp_dir` under `name` (or a fresh name from `counter` and `host`).
enum TmpFile {
    Open(std::fs::File, PathBuf),
    ToMake {
        tmp_dir: PathBuf,
        name: String,
        counter: Arc<AtomicU64>,
        host: String,
    },
}

impl TmpFile {
    /// The open file, its path and name, making it first if need be. On the blocking pool.
    fn open(self, name: &str) -> io::Result<(std::fs::File, PathBuf, String)> {
        match self {
            TmpFile::Open(file, path) => Ok((file, path, name.to_string())),
            TmpFile::ToMake {
                tmp_dir,
                name,
                counter,
                host,
            } => create_tmp(&tmp_dir, &name, || {
                format!("{}.{host}", unique_id(&counter))
            }),
        }
    }
}

impl Delivery {
    /// Appends bytes to the message (written to the file in chunks of about 64 KiB).
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.finished {
            return Err(io::Error::other("delivery already finished"));
        }
        self.pending.extend_from_slice(buf);
        self.size += buf.len() as u64;
        if self.pending.len() >= WRITE_BUFFER {
            self.write_pending().await?;
        }
        Ok(())
    }

    /// Takes the file for a trip to the blocking pool (made there if it is not yet).
    fn take_file(&mut self) -> io::Result<TmpFile> {
        if self.finished {
            return Err(io::Error::other("delivery already finished"));
        }
        Ok(match (self.file.take(), self.tmp_path.clone()) {
            (Some(file), Some(path)) => TmpFile::Open(file, path),
            _ => TmpFile::ToMake {
                tmp_dir: self.tmp_dir.clone(),
                name: self.name.clone(),
                counter: self.counter.clone(),
                host: self.host.clone(),
            },
        })
    }

    async fn write_pending(&mut self) -> io::Result<()> {
        let file = self.take_file()?;
        let data = std::mem::take(&mut self.pending);
        let name = self.name.clone();
        // On a write error the file is closed and removed here, whether made in this trip or
        // before (Drop then finds nothing left of a tmp_path still set).
        let (file, path, name, mut data) = blocking(move || {
            let (mut file, path, name) = file.open(&name)?;
            if let Err(e) = file.write_all(&data) {
                drop(file);
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
            Ok((file, path, name, data))
        })
        .await
        .inspect_err(|_| {
            self.finished = true;
            self.failing.store(true, Ordering::Relaxed);
        })?;
        data.clear();
        self.pending = data;
        self.file = Some(file);
        self.tmp_path = Some(path);
        self.name = name;
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The unique id of this delivery (the Maildir name without the host), for `queued as`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Makes the `tmp/` file if it is not yet, writes what is left, fsyncs the file, links it
    /// into `new/` (under a fresh name if its own is taken there: nothing in `new/` is ever
    /// replaced), fsyncs `new/`, unlinks the `tmp/` name; returns the final path.
    ///
    /// On error nothing is left in `tmp/` or `new/`: the caller answers 4xx and the sender retries.
    pub async fn commit(mut self) -> io::Result<PathBuf> {
        let file = self.take_file()?;
        self.finished = true;
        let data = std::mem::take(&mut self.pending);
        let (name, new_dir) = (self.name.clone(), self.new_dir.clone());
        let (counter, host) = (self.counter.clone(), self.host.clone());
        let new_sync = self.new_sync.clone();
        // One trip for all steps; on an error it removes the tmp/ file itself.
        let outcome = tokio::task::spawn_blocking(move || -> io::Result<PathBuf> {
            let (mut file, tmp_path, name) = file.open(&name)?;
            // Until it is placed in new/, the tmp/ file goes on any error.
            let remove_tmp = |e: io::Error| {
                let _ = std::fs::remove_file(&tmp_path);
                e
            };
            file.write_all(&data)
                .and_then(|()| file.sync_all())
                .map_err(remove_tmp)?;
            drop(file);
            let fresh = || format!("{}.{host}", unique_id(&counter));
            let (new, how) = place(&tmp_path, &new_dir, &name, fresh).map_err(remove_tmp)?;
            if let Err(e) = new_sync.after_rename(&new_dir) {
                // Not durable: take it back so a 4xx and the sender's retry cannot duplicate it.
                if let Err(rm) = std::fs::remove_file(&new) {
                    tracing::error!(path = %new.display(), error = %rm,
                        "cannot take back a message whose commit failed: the sender's retry may \
                         store it twice");
                }
                if how == Placed::Linked {
                    let _ = std::fs::remove_file(&tmp_path);
                }
                return Err(e);
            }
            // Only now: until new/ is synced, the tmp/ name is the one known to be on disk.
            if how == Placed::Linked {
                if let Err(e) = std::fs::remove_file(&tmp_path) {
                    tracing::warn!(path = %tmp_path.display(), error = %e,
                        "the message is safe in new/, but its name in tmp/ could not be removed");
                }
            }
            Ok(new)
        })
        .await;
        match outcome {
            Ok(result) => {
                // Placed in new/ or removed: nothing left in tmp/ for Drop.
                self.tmp_path = None;
                self.failing.store(result.is_err(), Ordering::Relaxed);
                result
            }
            // The trip was lost (a panic): Drop removes a tmp/ file made before it; one made
            // in it is left to the stale-file cleanup of the next start.
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                Err(io::Error::other(e))
            }
        }
    }

    /// Removes the `tmp/` file, if it was made.
    pub async fn abort(mut self) {
        self.finished = true;
        self.file.take();
        if let Some(path) = self.tmp_path.take() {
            let _ = tokio::fs::remove_file(&path).await;
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // A dropped session (peer gone, task cancelled) must not leave a stray file in tmp/.
        // unlink is quick enough to run inline, even on an async thread.
        self.file.take();
        if let Some(path) = self.tmp_path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[tokio::test]
    async fn create_makes_private_subdirectories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("Mail");
        let md = Maildir::create(&root).unwrap();
        assert_eq!(md.root(), root);
        for sub in ["tmp", "new", "cur"] {
            let meta = std::fs::metadata(root.join(sub)).unwrap();
            assert!(meta.is_dir());
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{sub}");
            }
        }
        // Opening an existing Maildir is fine.
        Maildir::create(&root).unwrap();
    }

    #[test]
    fn maildir_plus_plus_folders_get_their_maildir_and_marker() {
        let dir = tempfile::tempdir().unwrap();
        // The Maildir does not exist yet: it is made around the folder.
        let folder = dir.path().join("Maildir/.Example-org");
        Maildir::create(&folder).unwrap();
        for sub in ["cur", "new", "tmp"] {
            assert!(dir.path().join("Maildir").join(sub).is_dir(), "{sub}");
            assert!(folder.join(sub).is_dir(), "{sub}");
        }
        assert!(folder.join("maildirfolder").is_file());
        // A second folder in the existing Maildir; opening again keeps everything.
        let lists = dir.path().join("Maildir/.Lists");
        Maildir::create(&lists).unwrap();
        Maildir::create(&folder).unwrap();
        assert!(lists.join("maildirfolder").is_file());
        // A hidden directory that is not in a Maildir is a plain Maildir: no marker, and the
        // directory around it is left alone.
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        Maildir::create(&home.join(".maildir")).unwrap();
        assert!(!home.join(".maildir/maildirfolder").exists());
        assert!(!home.join("cur").exists());
        assert!(!dir.path().join("Maildir/maildirfolder").exists());
    }

    #[tokio::test]
    async fn commit_puts_exactly_one_file_in_new() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        let mut d = md.begin().await.unwrap();
        d.write(b"Subject: hi\r\n\r\n").await.unwrap();
        d.write(b"body\r\n").await.unwrap();
        assert_eq!(d.size(), 21);
        let path = d.commit().await.unwrap();
        assert_eq!(entries(&dir.path().join("new")), vec![path.clone()]);
        assert!(entries(&dir.path().join("tmp")).is_empty());
        assert!(entries(&dir.path().join("cur")).is_empty());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"Subject: hi\r\n\r\nbody\r\n"
        );
    }

    #[tokio::test]
    async fn abort_and_drop_remove_the_tmp_file() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        // Past the write buffer, so the tmp/ file exists when the delivery is given up.
        let partial = vec![b'x'; WRITE_BUFFER + 1];
        let mut d = md.begin().await.unwrap();
        d.write(&partial).await.unwrap();
        assert_eq!(entries(&dir.path().join("tmp")).len(), 1);
        d.abort().await;
        assert!(entries(&dir.path().join("tmp")).is_empty());

        let mut d = md.begin().await.unwrap();
        d.write(&partial).await.unwrap();
        assert_eq!(entries(&dir.path().join("tmp")).len(), 1);
        drop(d);
        assert!(entries(&dir.path().join("tmp")).is_empty());
        assert!(entries(&dir.path().join("new")).is_empty());
    }

    #[tokio::test]
    async fn a_large_message_is_written_as_it_comes_and_committed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        let mut d = md.begin().await.unwrap();
        let mut sent = Vec::new();
        for i in 0..5u8 {
            let chunk = vec![b'a' + i; WRITE_BUFFER / 2 + 7];
            d.write(&chunk).await.unwrap();
            sent.extend_from_slice(&chunk);
        }
        assert_eq!(entries(&dir.path().join("tmp")).len(), 1);
        let path = d.commit().await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), sent);
        assert!(entries(&dir.path().join("tmp")).is_empty());
    }

    /// A Maildir that has taken a message (so the next deliveries make their files lazily).
    async fn in_good_health(md: &Maildir) -> PathBuf {
        let mut d = md.begin().await.unwrap();
        d.write(b"Subject: first\r\n\r\n").await.unwrap();
        d.commit().await.unwrap()
    }

    #[tokio::test]
    async fn a_tmp_name_in_use_is_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        in_good_health(&md).await;
        let mut d = md.begin().await.unwrap();
        // Another writer holds the very name in tmp/ (the same pid again after a reboot).
        let theirs = dir.path().join("tmp").join(&d.name);
        std::fs::write(&theirs, b"not ours").unwrap();
        d.write(b"Subject: ours\r\n\r\n").await.unwrap();
        let path = d.commit().await.unwrap();
        assert_eq!(std::fs::read(&theirs).unwrap(), b"not ours");
        assert_eq!(std::fs::read(&path).unwrap(), b"Subject: ours\r\n\r\n");
        assert_eq!(entries(&dir.path().join("tmp")), vec![theirs]);
    }

    #[tokio::test]
    async fn files_are_made_in_the_commit_while_all_is_well_and_at_begin_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, new) = (dir.path().join("tmp"), dir.path().join("new"));
        let md = Maildir::create(dir.path()).unwrap();
        // The first delivery makes its file at begin: a broken Maildir shows before any data.
        let d = md.begin().await.unwrap();
        assert_eq!(entries(&tmp).len(), 1);
        d.commit().await.unwrap();
        // All is well: a small message touches the disk only in its commit's one trip.
        let mut d = md.begin().await.unwrap();
        d.write(b"Subject: lazy\r\n\r\n").await.unwrap();
        assert!(entries(&tmp).is_empty());
        d.commit().await.unwrap();
        assert_eq!(entries(&new).len(), 2);

        // tmp/ removed behind our back: the commit is the first to find out, and fails whole.
        let mut d = md.begin().await.unwrap();
        d.write(b"Subject: lost?\r\n\r\n").await.unwrap();
        std::fs::remove_dir(&tmp).unwrap();
        let err = d.commit().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert_eq!(entries(&new).len(), 2);
        // From then on, begin itself fails (the listener answers DATA with 451, no 354)…
        let err = md.begin().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
        // …until the Maildir is whole again and a message has gone through.
        std::fs::create_dir(&tmp).unwrap();
        let d = md.begin().await.unwrap();
        assert_eq!(entries(&tmp).len(), 1, "made at begin while still failing");
        d.commit().await.unwrap();
        let d = md.begin().await.unwrap();
        assert!(
            entries(&tmp).is_empty(),
            "lazy again once a commit succeeded"
        );
        d.commit().await.unwrap();
        assert_eq!(entries(&new).len(), 4);
    }

    #[tokio::test]
    async fn names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        let other = Maildir::create(dir.path()).unwrap();
        let mut paths = std::collections::HashSet::new();
        for i in 0..50 {
            let m = if i % 2 == 0 { &md } else { &other };
            let d = m.begin().await.unwrap();
            paths.insert(d.commit().await.unwrap());
        }
        assert_eq!(paths.len(), 50);
        assert_eq!(entries(&dir.path().join("new")).len(), 50);
    }

    #[tokio::test]
    async fn commit_never_replaces_a_file_already_in_new() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        let mut d = md.begin().await.unwrap();
        d.write(b"Subject: second\r\n\r\n").await.unwrap();
        // Another writer (a clock set back after a reboot, the same pid again) already put a
        // message in new/ under the very name this delivery would take.
        let taken = dir.path().join("new").join(&d.name);
        std::fs::write(&taken, b"Subject: first\r\n\r\n").unwrap();
        let path = d.commit().await.unwrap();
        assert_ne!(path, taken, "the commit took the name in use");
        assert_eq!(std::fs::read(&taken).unwrap(), b"Subject: first\r\n\r\n");
        assert_eq!(std::fs::read(&path).unwrap(), b"Subject: second\r\n\r\n");
        assert_eq!(entries(&dir.path().join("new")).len(), 2);
        assert!(entries(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn placing_takes_fresh_names_until_one_is_free_and_gives_up_in_bounds() {
        #[cfg(target_os = "linux")]
        let ways = [Way::RenameNoReplace, Way::Link];
        #[cfg(not(target_os = "linux"))]
        let ways = [Way::Link];
        for way in ways {
            let dir = tempfile::tempdir().unwrap();
            let (tmp, new) = (dir.path().join("tmp"), dir.path().join("new"));
            std::fs::create_dir_all(&tmp).unwrap();
            std::fs::create_dir_all(&new).unwrap();
            let file = tmp.join("m");
            std::fs::write(&file, b"mine").unwrap();
            for taken in ["a", "b"] {
                std::fs::write(new.join(taken), taken).unwrap();
            }
            let mut names = ["b", "c"].into_iter().map(String::from);
            let (path, how) = place_from(way, &file, &new, "a", || names.next().unwrap()).unwrap();
            let expected = if way == Way::Link {
                Placed::Linked
            } else {
                Placed::Renamed
            };
            assert_eq!((path, how), (new.join("c"), expected), "{way:?}");
            assert_eq!(std::fs::read(new.join("a")).unwrap(), b"a");
            assert_eq!(std::fs::read(new.join("b")).unwrap(), b"b");
            assert_eq!(std::fs::read(new.join("c")).unwrap(), b"mine");
            // A link leaves the tmp/ name for the commit to remove, after new/ is synced; a
            // rename has moved it.
            assert_eq!(file.exists(), way == Way::Link, "{way:?}");

            // Every name taken: an error after NAME_ATTEMPTS tries, and nothing replaced.
            let file = tmp.join("m2");
            std::fs::write(&file, b"mine too").unwrap();
            let mut tries = 0;
            let err = place_from(way, &file, &new, "a", || {
                tries += 1;
                "b".into()
            })
            .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{way:?}");
            assert_eq!(tries, NAME_ATTEMPTS);
            assert_eq!(std::fs::read(new.join("a")).unwrap(), b"a");
            assert_eq!(std::fs::read(new.join("b")).unwrap(), b"b");
            assert!(file.exists(), "{way:?}: the file not placed stays in tmp/");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_system_without_rename_noreplace_gets_links() {
        for (code, unsupported) in [(22, true), (38, true), (95, true), (17, false), (2, false)] {
            let e = io::Error::from_raw_os_error(code);
            assert_eq!(no_replace_unsupported(&e), unsupported, "{e}");
        }
    }

    #[test]
    fn without_hard_links_a_rename_never_replaces_either() {
        let dir = tempfile::tempdir().unwrap();
        let (file, target) = (dir.path().join("m"), dir.path().join("t"));
        std::fs::write(&file, b"mine").unwrap();
        std::fs::write(&target, b"theirs").unwrap();
        let err = rename_unless_taken(&file, &target).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
        std::fs::remove_file(&target).unwrap();
        rename_unless_taken(&file, &target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"mine");
        assert!(!file.exists());
    }

    #[test]
    fn only_a_file_system_without_links_makes_the_commit_rename() {
        assert!(links_unsupported(&io::Error::from(
            io::ErrorKind::Unsupported
        )));
        assert!(links_unsupported(&io::Error::from(
            io::ErrorKind::PermissionDenied
        )));
        assert!(!links_unsupported(&io::Error::from(
            io::ErrorKind::AlreadyExists
        )));
        assert!(!links_unsupported(&io::Error::from(
            io::ErrorKind::NotFound
        )));
        #[cfg(target_os = "linux")]
        {
            // EPERM from vfat, EOPNOTSUPP from some network file systems; not EEXIST or EMLINK.
            for (code, no_links) in [(1, true), (95, true), (17, false), (31, false)] {
                let e = io::Error::from_raw_os_error(code);
                assert_eq!(links_unsupported(&e), no_links, "{e}");
            }
        }
    }

    /// A tmp/ file with the given name and modification time.
    fn tmp_file(md: &Maildir, name: &str, mtime: SystemTime) {
        let file = std::fs::File::create(md.root().join("tmp").join(name)).unwrap();
        file.set_modified(mtime).unwrap();
    }

    #[test]
    fn stale_tmp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        let now = SystemTime::now();
        let hours = |h: u64| now - Duration::from_secs(h * 3600);
        let host = md.host.clone();
        let names = [
            // Old, anyone's: goes.
            ("1.M1P1Q1.otherhost".to_string(), hours(37), false),
            // Recent, another host's, writer unknown: stays.
            ("2.M1P999Q1.otherhost".to_string(), hours(1), true),
            // Recent, ours, writer dead: goes.
            (format!("3.M1P999Q1.{host}"), hours(1), false),
            // Recent, ours, writer alive: stays.
            (format!("4.M1P1000Q1.{host}"), hours(1), true),
            // Old, ours, writer alive: goes (36 hours is the rule for all).
            (format!("5.M1P1000Q2.{host}"), hours(40), false),
            // Recent, not a Maildir name: stays.
            ("junk".to_string(), hours(1), true),
            (format!("x.M1P999Q1.{host}"), hours(1), true),
        ];
        for (name, mtime, _) in &names {
            tmp_file(&md, name, *mtime);
        }
        std::fs::create_dir(dir.path().join("tmp").join("subdir")).unwrap();
        let removed = md.clean_stale_tmp_with(now, |pid| pid == 1000).unwrap();
        assert_eq!(removed, 3);
        for (name, _, kept) in &names {
            assert_eq!(dir.path().join("tmp").join(name).exists(), *kept, "{name}");
        }
        assert!(dir.path().join("tmp/subdir").is_dir());
        assert_eq!(md.clean_stale_tmp_with(now, |pid| pid == 1000).unwrap(), 0);
    }

    #[tokio::test]
    async fn real_cleanup_keeps_live_deliveries_and_removes_dead_writers() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::create(dir.path()).unwrap();
        // In flight in this very process: must survive.
        let mut live = md.begin().await.unwrap();
        live.write(&vec![b'x'; WRITE_BUFFER + 1]).await.unwrap();
        // Left by a process that is gone: a child we started and waited for.
        let mut child = crate::fsutil::short_lived().spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let dead = format!("1700000000.M5P{dead_pid}Q1.{}", md.host);
        tmp_file(&md, &dead, SystemTime::now());
        if cfg!(target_os = "linux") {
            assert_eq!(md.clean_stale_tmp().unwrap(), 1);
            assert!(!dir.path().join("tmp").join(&dead).exists());
            assert_eq!(entries(&dir.path().join("tmp")).len(), 1);
        } else {
            // No /proc to tell who is gone: only the age rule (36 hours) removes it.
            assert_eq!(md.clean_stale_tmp().unwrap(), 0);
            assert_eq!(entries(&dir.path().join("tmp")).len(), 2);
        }
        live.commit().await.unwrap();
        assert_eq!(entries(&dir.path().join("new")).len(), 1);
    }

    #[test]
    fn writer_pid_reads_our_names_only() {
        assert_eq!(
            writer_pid("17.M5P42Q3.host.example", "host.example"),
            Some(42)
        );
        assert_eq!(writer_pid("17.M5P42Q3.other", "host.example"), None);
        assert_eq!(writer_pid("17.M5P42Q3", "host.example"), None);
        assert_eq!(writer_pid("17.M5Q3P42.host", "host"), None);
        assert_eq!(writer_pid("17.P42.host", "host"), None);
        assert_eq!(writer_pid("17.M5PxQ3.host", "host"), None);
        assert_eq!(writer_pid("", "host"), None);
    }

    #[test]
    fn group_commit_covers_every_rename_and_shares_fsyncs() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(DirSync::default());
        // Alone, every rename gets its own fsync.
        for _ in 0..3 {
            sync.after_rename(dir.path()).unwrap();
        }
        assert_eq!(sync.fsyncs.load(Ordering::Relaxed), 3);
        // Together, they are all covered, with at most one fsync each.
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (sync, path) = (sync.clone(), dir.path().to_path_buf());
                std::thread::spawn(move || sync.after_rename(&path))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        let renamed = sync.renamed.load(Ordering::SeqCst);
        assert_eq!(renamed, 19);
        assert_eq!(
            *sync.synced.lock().unwrap(),
            renamed,
            "a rename left uncovered"
        );
        assert!(sync.fsyncs.load(Ordering::Relaxed) <= renamed);
    }

    #[test]
    fn host_part_is_sanitised() {
        assert_eq!(sanitize_host("a/b:c"), "a\\057b\\072c");
        assert_eq!(sanitize_host(""), "localhost");
    }
}
