//! A throwaway system user per test (`useradd`/`userdel`, package `passwd`), for what must run as
//! someone other than root the way it does on a user's machine: a daemon as the user and a
//! root script (pppd's ip-up.d) dropping to that user. Also the user's `/run/user/UID`, which
//! systemd-logind would make at login and which this machine has no session for.
//!
//! Needs root. The user is made with `--system` (no subuid range, no mail spool, no home
//! created) and removed again when the guard drops, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::process::run_checked;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A system user that exists for one test; dropping it runs `userdel` (which also removes its
/// group). Drop it after every process running as the user is gone.
#[derive(Debug)]
pub struct TestUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TestUser {
    /// Creates `mce<pid>x<n>` with home `home` (not created: the caller owns that directory, see
    /// [`TestUser::set_home`] to change it) and no login shell.
    pub fn create(home: &Path) -> Self {
        let name = format!(
            "mce{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        run_checked(
            Command::new("useradd")
                .args(["--system", "--no-create-home", "--user-group"])
                .args(["--shell", "/usr/sbin/nologin", "--home-dir"])
                .arg(home)
                .arg(&name),
            None,
        )
        .unwrap_or_else(|e| panic!("creating the test user {name} failed (root needed): {e}"));
        // From here on the guard exists: a failure below still removes the user.
        let mut user = TestUser {
            name,
            uid: 0,
            gid: 0,
        };
        user.uid = user.id("-u");
        user.gid = user.id("-g");
        assert_ne!(user.uid, 0, "the test user must not be root");
        user
    }

    fn id(&self, flag: &str) -> u32 {
        let out = run_checked(Command::new("id").arg(flag).arg(&self.name), None)
            .unwrap_or_else(|e| panic!("{e}"));
        out.stdout
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("`id {flag} {}` said {:?}", self.name, out.stdout))
    }

    /// The user's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The id of the user's own group.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Sets the user's home in the password database (what `runuser`, `su` and `getpwnam` see).
    pub fn set_home(&self, home: &Path) {
        run_checked(
            Command::new("usermod")
                .arg("--home")
                .arg(home)
                .arg(&self.name),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `chown -R USER:GROUP path`.
    pub fn chown(&self, path: &Path) {
        run_checked(
            Command::new("chown")
                .arg("-R")
                .arg(format!("{}:{}", self.uid, self.gid))
                .arg(path),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Makes `/run/user/UID` (where a login session's runtime directory is) a symlink to `dir`;
    /// the link is removed when the returned guard drops.
    pub fn link_run_user(&self, dir: &Path) -> RunUserLink {
        let link = PathBuf::from(format!("/run/user/{}", self.uid));
        std::fs::create_dir_all("/run/user").expect("creating /run/user");
        assert!(
            std::fs::symlink_metadata(&link).is_err(),
            "{} exists already: another session of uid {} is around",
            link.display(),
            self.uid
        );
        std::os::unix::fs::symlink(dir, &link)
            .unwrap_or_else(|e| panic!("linking {} to {}: {e}", link.display(), dir.display()));
        RunUserLink { link }
    }

    /// The ids of the live processes running as the user (from /proc: real uid; zombies,
    /// which wait for their parent only, left out).
    pub fn processes(&self) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        let field = |status: &str, name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                    return false;
                };
                field(&status, "Uid:") == Some(self.uid.to_string())
                    && field(&status, "State:").as_deref() != Some("Z")
            })
            .collect()
    }

    /// Kills (SIGKILL, by PID) every process still running as the user — the user exists only
    /// for this test, so they are all the test's — and waits until they are gone.
    pub fn kill_processes(&self) {
        let pids = self.processes();
        for pid in &pids {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let gone = crate::poll_until(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(20),
            || self.processes().is_empty().then_some(()),
        );
        if gone.is_none() {
            eprintln!(
                "processes of {} still alive: {:?}",
                self.name,
                self.processes()
            );
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if !self.processes().is_empty() {
            eprintln!(
                "{} still runs processes {:?}: killing them",
                self.name,
                self.processes()
            );
            self.kill_processes();
        }
        let done = crate::process::run_with_timeout(
            Command::new("userdel").arg(&self.name),
            None,
            std::time::Duration::from_secs(30),
        );
        match done {
            Ok(f) if f.status.is_some_and(|s| s.success()) => {}
            Ok(f) => eprintln!(
                "userdel {} failed ({:?}): {}{}",
                self.name, f.status, f.stdout, f.stderr
            ),
            Err(e) => eprintln!("cannot run userdel {}: {e}", self.name),
        }
    }
}

/// `/run/user/UID` pointing at a test's runtime directory; removed on drop.
#[derive(Debug)]
pub struct RunUserLink {
    link: PathBuf,
}

impl RunUserLink {
    /// The link's path (`/run/user/UID`).
    pub fn path(&self) -> &Path {
        &self.link
    }
}

impl Drop for RunUserLink {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.link) {
            eprintln!("cannot remove {}: {e}", self.link.display());
        }
    }
}
