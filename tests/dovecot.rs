//! A private Dovecot per test: the LAN mail server (LMTP) Mailcall may hand mail to, and the mail
//! reader (IMAP, doveadm) that shows whether what Mailcall stored reads like mail.
//!
//! Use (every helper panics with Dovecot's log when something is off):
//! ```ignore
//! let mut dovecot = Dovecot::start(DovecotOptions::new());        // users alice and bob
//! let out = dovecot.deliver(&msg, &["alice@lan.test", "bob"]);     // one LMTP transaction
//! assert_eq!(out.codes(), [("alice@lan.test".into(), 250), ("bob".into(), 250)]);
//! assert_eq!(dovecot.count("alice", "INBOX"), 1);                  // doveadm search
//! let mut imap = dovecot.imap("alice");                            // a logged-in IMAP client
//! dovecot.stop(); /* ... */ dovecot.start_again();                 // same ports, same mail
//! // Mailcall's own Maildir, read by a Dovecot user (Mailcall runs as root in the tests):
//! let dovecot = Dovecot::start(DovecotOptions::no_users().with_user_maildir("carol", &md));
//! /* ... mailcall-cli fetch --maildir <md> (or <md>/.Folder) ... */
//! dovecot.hand_over("carol");  // chown to carol's uid: see "Who owns the mail" below
//! assert_eq!(dovecot.mailboxes("carol"), ["Folder", "INBOX"]);
//! ```
//! For Mailcall's LMTP routes: `lmtp:127.0.0.1:PORT` with PORT = [`Dovecot::lmtp_port`], and
//! `lmtp:unix:PATH` with PATH = [`Dovecot::lmtp_socket`]; `<user>@<any domain>` reaches the user.
//! For `maildir:PATH` routes: [`DovecotOptions::with_user_maildir`] and [`Dovecot::hand_over`].
//!
//! Facts this relies on (Dovecot 2.3.19.1, Debian 12 `dovecot-core`/`-imapd`/`-lmtpd`, as root,
//! measured here):
//! - `dovecot -c CONF -F` runs an instance from CONF alone (no `!include`, so nothing of
//!   `/etc/dovecot` is read; strace shows doveadm only `stat`s `/etc/dovecot/dovecot.conf`).
//!   `base_dir` (sockets, `master.pid`, the login chroot), `state_dir` and the log live in the
//!   test's dir; `instance_name` tells instances apart in `ps`. From spawn to "LMTP, IMAP and
//!   the LMTP socket all answer": 10-25 ms. `SIGTERM` to the master: it stops its children,
//!   sleeps a deliberate 1 s for its log process, and exits (stop ≈ 1.0-1.1 s). An IMAP session
//!   process with a connected client outlives the master by 10 s (then `* BYE Server shutting
//!   down.`), and after a `SIGKILL` of the master it (and log, stats) keep running while the
//!   client stays: so [`Dovecot::stop`] and [`Dovecot::kill`] also kill, by PID, the master's
//!   children noted just before signalling it. A session open at [`Dovecot::stop`]: LMTP reads
//!   `421 4.3.2 <host> Shutting down`, IMAP a closed connection. The same config starts again on
//!   the same ports with the same mail (also after [`Dovecot::kill`]).
//! - Mail is never accessed as root: uid 0 in a passwd-file is "invalid UID '0'"; `mail_uid =
//!   root` with `first_valid_uid = first_valid_gid = 0` still fails with "Couldn't drop
//!   privileges: Mail access not allowed for root" (LMTP answers `451 4.3.0 <rcpt> Temporary
//!   internal error`). So each user has a non-root uid/gid in the passwd-file: by default
//!   `nobody:nogroup` (65534, above the default `first_valid_uid = 500`). The internal and login
//!   users are the package's `dovecot` and `dovenull` (`default_internal_user`,
//!   `default_login_user`). The master itself must run as root (it setuids to them).
//! - Users come from one passwd-file (passdb `scheme=PLAIN`, userdb) with `username_format=%n`:
//!   `alice`, `alice@any.domain` and `alice+tag@x` (the default `recipient_delimiter`) are all
//!   alice, over LMTP, IMAP LOGIN and doveadm `-u`. A user's own Maildir is
//!   `<dir>/mail/<user>/Maildir` (`mail_location = maildir:~/Maildir`), made by Dovecot at the
//!   first delivery; an explicit one is the passwd-file extra field `userdb_mail=maildir:PATH`
//!   (home then is `<dir>/home/<user>`). Dovecot creates a missing Maildir only where the user's
//!   uid may write the parent, so under a root-owned test dir create it and [`Dovecot::hand_over`].
//! - LMTP (RFC 2033): `LHLO` → `250-<host>`, `8BITMIME`, `CHUNKING`, `ENHANCEDSTATUSCODES`,
//!   `PIPELINING`. `RCPT` of a known user → `250 2.1.5 OK`; of an unknown one →
//!   `550 5.1.1 <nobody@lan.test> User doesn't exist: nobody@lan.test`. After the final dot, one
//!   reply per accepted recipient, in RCPT order: `250 2.0.0 <alice@lan.test> <session id>
//!   Saved` (the second recipient's id ends in `:R2`). All RCPTs refused → `DATA` would get
//!   `503 5.5.0 No valid recipients` (the client sends RSET instead). A message to two users
//!   of one uid is stored once and hard-linked into both Maildirs (one inode, link count 2).
//!   Dovecot adds `Return-Path:` and `Received: from <lhlo> ([ip]) by <host> with LMTP id ...`,
//!   and `Delivered-To: <the RCPT address as sent, no brackets>` only when the transaction has
//!   one recipient. A Maildir it cannot write (root-owned 0700): `451 4.3.0 <rcpt> Temporary
//!   internal error`; one whose parent it cannot write: `451 4.2.0 <rcpt> Internal error`.
//! - Maildir reading: files in `new/` without `:2,` (Mailcall's `<secs>.M<µs>P<pid>Q<n>.<host>`)
//!   are mail with flags `\Recent` only — not `\Seen` — in doveadm and IMAP. doveadm and
//!   `EXAMINE` (read-only) move nothing and keep `\Recent`; the first `SELECT` renames each file
//!   to `cur/<name>:2,` and takes `\Recent` (the next session sees no flags at all); files that
//!   arrive in `new/` later are new again (`\Recent`, next UIDs). Dovecot writes its
//!   `dovecot-uidlist`, `dovecot.index*`, `dovecot-uidvalidity*` into the Maildir's root and each
//!   folder, nothing into `new/`/`cur/`/`tmp/` but the renames. Mailcall's files (CRLF line ends,
//!   `Return-Path:` and `Received:` added, no `Delivered-To:`) read fine: IMAP `BODY[]` is the
//!   file's bytes and `RFC822.SIZE` its size.
//! - Maildir++ folders: `<Maildir>/.Example-org/{cur,new,tmp}` is the folder `Example-org`;
//!   `LIST "" "*"` → `* LIST (\HasNoChildren) "." Example-org` (separator `.`: the default of
//!   the Maildir++ layout); `\Marked` while it holds `\Recent` mail. A `maildirfolder` file is
//!   NOT needed for Dovecot to list, STATUS or SELECT a folder (Mailcall's `maildir:` routes
//!   write one, as the Maildir++ spec asks; a plain `maildir` setting pointed at a folder writes
//!   none), and Dovecot adds none to a folder someone else made; it creates one in folders it creates itself
//!   (IMAP `CREATE`, which the Maildir++ spec asks of every writer that makes a folder) and,
//!   quirk, in the Maildir root when it creates INBOX itself. A folder whose Maildir root is a
//!   bare dir (no `cur/new/tmp`: what a `maildir` setting of `<root>/.F` leaves when it is the
//!   first thing written) reads too; INBOX is then empty and LMTP creates the root's `cur/new/tmp`.
//!   A dot in a folder's directory name is hierarchy: `.Lists.rust` is `Lists.rust` under a
//!   `\Noselect` `Lists` (so a folder per domain must not be `.example.org`); non-ASCII names
//!   would be modified UTF-7 on disk. Subscriptions: LIST shows a folder without any, LSUB (and
//!   `LIST (SUBSCRIBED)`) only subscribed ones — none at first, not even INBOX; mail programs
//!   that show only subscribed folders need it in the root's `subscriptions` file. Dovecot
//!   writes that as `V\t2\n\n<name>\n`, also reads the old one-name-per-line form (and keeps
//!   appending in it): `doveadm mailbox subscribe` ([`Dovecot::subscribe`]) is the safe way.
//! - doveadm (`doveadm -c CONF -f json ...`) runs the mail storage in its own process as the
//!   user's uid, but looks users up through the running instance's `auth-userdb` socket: with
//!   the instance stopped it exits 75 ("connect(.../auth-userdb) failed: Connection refused").
//!   `search`/`fetch` print `[]` and exit 68 for a missing mailbox, 67 for an unknown user, 75
//!   when the Maildir is not readable by the user's uid.
//!
//! Who owns the mail: the e2e tests run Mailcall as root, and it makes its Maildir 0700 and
//! files 0600, so Dovecot (as the user's uid) cannot read what it wrote (IMAP SELECT: `NO
//! [SERVERBUG]`, log: "Permission denied ... missing +x perm ... dir owned by 0:0 mode=0700").
//! On a real machine Mailcall runs as the mail's owner. The tests stand in for that with
//! [`Dovecot::hand_over`]: chown the user's Maildir to the user's uid/gid after every Mailcall
//! run that wrote into it and before Dovecot reads it. Mailcall (root) then keeps writing into
//! the handed-over dirs; its new files need the next hand-over. (What this does not test: Mailcall
//! and Dovecot as two different non-root users sharing one Maildir — it would need group modes.)

pub mod imap;
pub mod lmtp;

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::{run_with_timeout, ChildGuard, Finished};
use crate::smtp::Message;

pub use imap::{ImapClient, ListEntry, MailboxStatus, MessageFlags, Selected};
pub use lmtp::{LmtpClient, LmtpDelivery};

/// How long a start may take before the test fails (measured: ~50 ms).
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the master may take to exit after SIGTERM (measured: ~1 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one doveadm run may take.
const DOVEADM_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the log shown in failure messages.
const LOG_LINES: usize = 60;

/// One mail user of the test instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotUser {
    /// Login name (LMTP recipients `name@any.domain` map to it).
    pub name: String,
    /// IMAP password (PLAIN in the passwd-file).
    pub password: String,
    /// The uid mail is accessed as (never 0).
    pub uid: u32,
    /// The gid mail is accessed as (never 0).
    pub gid: u32,
    /// An explicit Maildir (`userdb_mail=maildir:PATH`); `None` = `<dir>/mail/<name>/Maildir`.
    pub maildir: Option<PathBuf>,
}

/// How the test instance is set up: its users, and whether to log debug output.
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// The users, in passwd-file order.
    pub users: Vec<DovecotUser>,
    /// `mail_debug` and `auth_debug` into the log.
    pub debug: bool,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl DovecotOptions {
    /// Users `alice` and `bob`, each with an own (not yet created) Maildir.
    pub fn new() -> Self {
        Self::no_users().with_user("alice").with_user("bob")
    }

    /// No users at all (add them with `with_user*`).
    pub fn no_users() -> Self {
        Self {
            users: Vec::new(),
            debug: false,
        }
    }

    /// Adds `name` with password [`password_for`]`(name)`, uid/gid `nobody:nogroup` and its own
    /// Maildir under the instance's dir.
    pub fn with_user(mut self, name: &str) -> Self {
        let (uid, gid) = nobody_ids();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)),
            "Dovecot test user names are [A-Za-z0-9_-]+, not {name:?}"
        );
        self.users.retain(|u| u.name != name);
        self.users.push(DovecotUser {
            name: name.to_string(),
            password: password_for(name),
            uid,
            gid,
            maildir: None,
        });
        self
    }

    /// Adds `name` whose mail location is the Maildir at `maildir`, e.g. the one Mailcall
    /// writes; a Maildir++ folder `.F` under it is the IMAP folder `F`. It need not exist yet,
    /// but Dovecot (as `nobody`) can only create it where it may write the parent: create it
    /// and call [`Dovecot::hand_over`] if Dovecot should deliver into it first.
    pub fn with_user_maildir(self, name: &str, maildir: &Path) -> Self {
        let shown = maildir.display().to_string();
        assert!(
            maildir.is_absolute() && !shown.contains([':', ' ', '\n']),
            "a Dovecot passwd-file field cannot hold {shown:?} (absolute, no ':' or spaces)"
        );
        let mut options = self.with_user(name);
        if let Some(u) = options.users.iter_mut().find(|u| u.name == name) {
            u.maildir = Some(maildir.to_path_buf());
        }
        options
    }

    /// Sets `name`'s uid and gid: non-zero, the uid at least 500 (`first_valid_uid`); they need
    /// no /etc/passwd entry (60001:60001 worked). Users of different uids get separate copies of
    /// a message delivered to both, not hard links.
    pub fn with_ids(mut self, name: &str, uid: u32, gid: u32) -> Self {
        assert!(
            uid >= 500 && gid != 0,
            "Dovecot refuses uid {uid}/gid {gid}"
        );
        let user = self
            .users
            .iter_mut()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("no user {name:?}: add it with with_user first"));
        user.uid = uid;
        user.gid = gid;
        self
    }

    /// Logs `mail_debug`/`auth_debug` output into the instance's log.
    pub fn with_debug(mut self) -> Self {
        self.debug = true;
        self
    }
}

/// The password every test user gets: `<name>-password`.
pub fn password_for(name: &str) -> String {
    format!("{name}-password")
}

/// One message as doveadm sees it (`doveadm fetch 'uid flags hdr.*'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DovecotMessage {
    /// IMAP UID.
    pub uid: u32,
    /// Flags, e.g. `\Recent`, `\Seen` (empty: none).
    pub flags: Vec<String>,
    /// The Message-ID header (empty when missing).
    pub message_id: String,
    /// The Delivered-To header (empty when missing).
    pub delivered_to: String,
    /// The Subject header (empty when missing).
    pub subject: String,
}

/// A child process of the master, noted so it can be killed if it outlives the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Noted {
    pub(crate) pid: u32,
    /// Field 22 of /proc/PID/stat: tells the same process from a later one with a reused PID.
    start_time: u64,
}

/// A running private Dovecot; dropping it stops the master (SIGTERM, then its children and the
/// master are killed by PID if they linger).
pub struct Dovecot {
    // Field order is drop order: the master goes (in Drop) before the dir.
    master: Option<ChildGuard>,
    users: Vec<DovecotUser>,
    debug: bool,
    root: PathBuf,
    lmtp_port: u16,
    imap_port: u16,
    starts: u32,
    dir: Option<tempfile::TempDir>,
}

impl Dovecot {
    /// Writes the config and passwd-file, creates the users' dirs, and starts the instance on
    /// free loopback ports; panics with the log when it does not answer within 15 s.
    pub fn start(options: DovecotOptions) -> Self {
        assert!(
            crate::is_root(),
            "the Dovecot harness must run as root: the master setuids to dovecot, dovenull and \
             the mail users"
        );
        let dir = crate::test_dir("dovecot");
        let root = dir.path().to_path_buf();
        let lmtp_port = crate::free_port();
        // Two free ports in a row may be the same one: draw until they differ (bounded).
        let imap_port = (0..100)
            .map(|_| crate::free_port())
            .find(|p| *p != lmtp_port)
            .expect("a second free loopback port");
        let mut dovecot = Self {
            master: None,
            users: options.users,
            debug: options.debug,
            root,
            lmtp_port,
            imap_port,
            starts: 0,
            dir: Some(dir),
        };
        if let Err(e) = dovecot.write_files() {
            panic!("setting up the test Dovecot failed: {e}");
        }
        dovecot.start_again();
        dovecot
    }

    /// Starts the stopped instance again: same config, ports and mail. Panics if it runs.
    pub fn start_again(&mut self) {
        assert!(self.master.is_none(), "Dovecot is already running");
        if let Err(e) = self.spawn_and_wait() {
            panic!("starting the test Dovecot failed: {e}\n{}", self.log());
        }
    }

    /// Stops the instance like an admin would (SIGTERM to the master, which ends its children
    /// and exits after ~1 s), then kills by PID any child that outlives it (an IMAP session
    /// would linger 10 s). Afterwards nothing answers on the LMTP/IMAP ports or the socket.
    /// Idempotent.
    pub fn stop(&mut self) {
        if let Err(e) = self.halt("TERM") {
            panic!("stopping the test Dovecot: {e}\n{}", self.log());
        }
    }

    /// Kills the master and every child by PID at once (a crash: no goodbyes, nothing flushed).
    /// Idempotent.
    pub fn kill(&mut self) {
        if let Err(e) = self.halt("KILL") {
            panic!("killing the test Dovecot: {e}\n{}", self.log());
        }
    }

    /// Whether the master is running.
    pub fn is_running(&mut self) -> bool {
        match self.master.as_mut() {
            Some(m) => m.exited().is_none(),
            None => false,
        }
    }

    /// The master's PID while it runs.
    pub fn master_pid(&self) -> Option<u32> {
        self.master.as_ref().map(ChildGuard::pid)
    }

    /// The LMTP port on 127.0.0.1.
    pub fn lmtp_port(&self) -> u16 {
        self.lmtp_port
    }

    /// The LMTP unix socket (mode 0666).
    pub fn lmtp_socket(&self) -> PathBuf {
        self.root.join("lmtp.sock")
    }

    /// The IMAP port on 127.0.0.1 (plaintext, LOGIN allowed; no IMAPS).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The instance's dir (dovecot.conf, passwd, run/, state/, mail/, home/, dovecot.log).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The generated config file (for `doveadm -c`, `doveconf -c`).
    pub fn config_path(&self) -> PathBuf {
        self.root.join("dovecot.conf")
    }

    /// The user `name`; panics for an unknown one.
    pub fn user(&self, name: &str) -> &DovecotUser {
        self.users
            .iter()
            .find(|u| u.name == name)
            .unwrap_or_else(|| panic!("the test Dovecot has no user {name:?}"))
    }

    /// The users, in passwd-file order.
    pub fn users(&self) -> &[DovecotUser] {
        &self.users
    }

    /// `name`'s Maildir (INBOX; Maildir++ folders are `.Name` dirs in it).
    pub fn maildir(&self, name: &str) -> PathBuf {
        let user = self.user(name);
        user.maildir
            .clone()
            .unwrap_or_else(|| self.home(user).join("Maildir"))
    }

    fn home(&self, user: &DovecotUser) -> PathBuf {
        match user.maildir {
            None => self.root.join("mail").join(&user.name),
            Some(_) => self.root.join("home").join(&user.name),
        }
    }

    /// Gives `name`'s Maildir, recursively, to its uid/gid, as if Mailcall had written it as that
    /// user (see the module docs); returns how many entries changed owner. Each dir above it must
    /// be traversable by others, or this panics naming the one that is not.
    pub fn hand_over(&self, name: &str) -> usize {
        let user = self.user(name).clone();
        let maildir = self.maildir(name);
        for dir in maildir.ancestors().skip(1) {
            if let Ok(meta) = fs::metadata(dir) {
                assert!(
                    meta.permissions().mode() & 0o001 != 0,
                    "{} is not traversable by others (mode {:o}): uid {} cannot reach {}",
                    dir.display(),
                    meta.permissions().mode() & 0o777,
                    user.uid,
                    maildir.display()
                );
            }
        }
        chown_tree(&maildir, user.uid, user.gid)
            .unwrap_or_else(|e| panic!("handing {} over to {name}: {e}", maildir.display()))
    }

    /// A connected, logged-in IMAP client for `name`; panics with the log if that fails.
    pub fn imap(&self, name: &str) -> ImapClient {
        let user = self.user(name);
        let result = ImapClient::connect(self.imap_port).and_then(|mut c| {
            c.login(&user.name, &user.password)?;
            Ok(c)
        });
        result.unwrap_or_else(|e| panic!("IMAP as {name}: {e}\n{}", self.log()))
    }

    /// A connected LMTP client over TCP, after `LHLO client.test`.
    pub fn lmtp(&self) -> LmtpClient {
        let result = LmtpClient::connect_tcp(self.lmtp_port).and_then(|mut c| {
            c.lhlo("client.test")?;
            Ok(c)
        });
        result.unwrap_or_else(|e| panic!("LMTP over TCP: {e}\n{}", self.log()))
    }

    /// A connected LMTP client over the unix socket, after `LHLO client.test`.
    pub fn lmtp_unix(&self) -> LmtpClient {
        let result = LmtpClient::connect_unix(&self.lmtp_socket()).and_then(|mut c| {
            c.lhlo("client.test")?;
            Ok(c)
        });
        result.unwrap_or_else(|e| panic!("LMTP over the unix socket: {e}\n{}", self.log()))
    }

    /// Hands `msg` to Dovecot over LMTP (TCP, one session) for `recipients`; returns every reply.
    /// Refused recipients are part of the result; a broken session panics.
    pub fn deliver(&self, msg: &Message, recipients: &[&str]) -> LmtpDelivery {
        let mut client = self.lmtp();
        let delivery = client
            .deliver(&msg.from, recipients, &msg.data())
            .unwrap_or_else(|e| panic!("LMTP delivery failed: {e}\n{}", self.log()));
        client.quit();
        delivery
    }

    /// Runs `doveadm -c CONF ARGS` to completion (any exit status).
    pub fn doveadm(&self, args: &[&str]) -> Finished {
        let mut cmd = Command::new("doveadm");
        cmd.arg("-c").arg(self.config_path()).args(args);
        run_with_timeout(&mut cmd, None, DOVEADM_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot run doveadm: {e}"))
    }

    /// `doveadm -f json ARGS`, parsed; an error (with doveadm's stderr) on a non-zero exit.
    pub fn doveadm_json(&self, args: &[&str]) -> Result<Vec<serde_json::Value>, String> {
        let mut all = vec!["-f", "json"];
        all.extend_from_slice(args);
        let done = self.doveadm(&all);
        let shown = format!(
            "doveadm -c {} {}",
            self.config_path().display(),
            all.join(" ")
        );
        let hint = if done.stderr.contains("Permission denied") {
            "\n(a Maildir Mailcall wrote as root? call Dovecot::hand_over(user) first)"
        } else if done.stderr.contains("auth-userdb") {
            "\n(doveadm needs the instance running: Dovecot::start_again)"
        } else {
            ""
        };
        match done.status {
            Some(s) if s.success() => {}
            status => {
                let status = status.map_or("killed at the deadline".to_string(), |s| s.to_string());
                return Err(format!(
                    "{shown} failed ({status}):\nstdout: {}\nstderr: {}{hint}",
                    done.stdout.trim(),
                    done.stderr.trim()
                ));
            }
        }
        let text = done.stdout.trim();
        if text.is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(text).map_err(|e| format!("{shown}: output is not JSON ({e}): {text}"))
    }

    /// How many messages `mailbox` of `user` holds (`doveadm search ... ALL`); panics on errors.
    pub fn count(&self, user: &str, mailbox: &str) -> usize {
        self.json_or_panic(&["search", "-u", user, "mailbox", mailbox, "ALL"])
            .len()
    }

    /// Every message in `mailbox` of `user`, by UID: flags, Message-ID, Delivered-To, Subject.
    pub fn messages(&self, user: &str, mailbox: &str) -> Vec<DovecotMessage> {
        let rows = self.json_or_panic(&[
            "fetch",
            "-u",
            user,
            "uid flags hdr.message-id hdr.delivered-to hdr.subject",
            "mailbox",
            mailbox,
            "ALL",
        ]);
        let text = |row: &serde_json::Value, key: &str| {
            row.get(key)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let mut messages: Vec<DovecotMessage> = rows
            .iter()
            .map(|row| DovecotMessage {
                uid: text(row, "uid").parse().unwrap_or_else(|_| {
                    panic!("doveadm fetch gave a row without a numeric uid: {row}")
                }),
                flags: text(row, "flags")
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
                message_id: text(row, "hdr.message-id"),
                delivered_to: text(row, "hdr.delivered-to"),
                subject: text(row, "hdr.subject"),
            })
            .collect();
        messages.sort_by_key(|m| m.uid);
        messages
    }

    /// The sorted Message-IDs in `mailbox` of `user` (duplicates kept).
    pub fn message_ids(&self, user: &str, mailbox: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .messages(user, mailbox)
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        ids.sort();
        ids
    }

    /// The sorted mailbox names of `user` (`doveadm mailbox list`: all, subscribed or not).
    pub fn mailboxes(&self, user: &str) -> Vec<String> {
        self.mailbox_names(&["mailbox", "list", "-u", user])
    }

    /// The sorted subscribed mailbox names of `user` (`doveadm mailbox list -s`).
    pub fn subscribed(&self, user: &str) -> Vec<String> {
        self.mailbox_names(&["mailbox", "list", "-s", "-u", user])
    }

    /// Subscribes `user` to `mailbox` (`doveadm mailbox subscribe`).
    pub fn subscribe(&self, user: &str, mailbox: &str) {
        let done = self.doveadm(&["mailbox", "subscribe", "-u", user, mailbox]);
        assert!(
            done.status.is_some_and(|s| s.success()),
            "doveadm mailbox subscribe -u {user} {mailbox} failed:\n{}{}",
            done.stdout,
            done.stderr
        );
    }

    /// Waits until `mailbox` of `user` holds exactly `n` messages; panics with the log if not.
    pub fn wait_count(&self, user: &str, mailbox: &str, n: usize, timeout: Duration) {
        let mut last = None;
        let done = crate::poll_until(timeout, Duration::from_millis(50), || {
            let now = self
                .doveadm_json(&["search", "-u", user, "mailbox", mailbox, "ALL"])
                .map(|rows| rows.len());
            let ok = now == Ok(n);
            last = Some(now);
            ok.then_some(())
        });
        if done.is_none() {
            panic!(
                "expected {n} message(s) in {user}'s {mailbox} within {timeout:?}, last: {last:?}\n{}",
                self.log()
            );
        }
    }

    /// The last 60 lines of dovecot.log and the master's own output, for failure messages (the
    /// whole files stay readable with `MAILCALL_E2E_KEEP=1`).
    pub fn log(&self) -> String {
        let path = self.root.join("dovecot.log");
        let text = crate::read_for_diagnostics(&path);
        let lines: Vec<&str> = text.lines().collect();
        let log = if lines.len() <= LOG_LINES {
            text.clone()
        } else {
            format!(
                "[first {} lines of {} cut]\n{}",
                lines.len() - LOG_LINES,
                path.display(),
                lines[lines.len() - LOG_LINES..].join("\n")
            )
        };
        let master = crate::read_for_diagnostics(&self.root.join("master.out"));
        format!("dovecot.log:\n{log}\nmaster stdout/stderr:\n{master}")
    }

    fn json_or_panic(&self, args: &[&str]) -> Vec<serde_json::Value> {
        self.doveadm_json(args)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log()))
    }

    fn mailbox_names(&self, args: &[&str]) -> Vec<String> {
        let mut names: Vec<String> = self
            .json_or_panic(args)
            .iter()
            .filter_map(|row| {
                row.get("mailbox")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
            .collect();
        names.sort();
        names
    }

    fn write_files(&self) -> Result<(), String> {
        for sub in ["run", "state", "mail", "home"] {
            fs::create_dir_all(self.root.join(sub)).map_err(|e| format!("creating {sub}/: {e}"))?;
        }
        let mut passwd = String::new();
        for user in &self.users {
            let home = self.home(user);
            fs::create_dir_all(&home).map_err(|e| format!("creating {}: {e}", home.display()))?;
            chown_tree(&home, user.uid, user.gid)
                .map_err(|e| format!("chown {}: {e}", home.display()))?;
            let extra = match &user.maildir {
                Some(path) => format!("userdb_mail=maildir:{}", path.display()),
                None => String::new(),
            };
            passwd.push_str(&format!(
                "{}:{{PLAIN}}{}:{}:{}::{}::{extra}\n",
                user.name,
                user.password,
                user.uid,
                user.gid,
                home.display()
            ));
        }
        // The auth process runs as the dovecot user and reads this file.
        let passwd_path = self.root.join("passwd");
        fs::write(&passwd_path, passwd).map_err(|e| format!("writing passwd: {e}"))?;
        fs::set_permissions(&passwd_path, fs::Permissions::from_mode(0o644))
            .map_err(|e| format!("chmod passwd: {e}"))?;
        fs::write(self.config_path(), self.config())
            .map_err(|e| format!("writing dovecot.conf: {e}"))
    }

    fn config(&self) -> String {
        let root = self.root.display();
        let debug = if self.debug {
            "mail_debug = yes\nauth_debug = yes\nauth_verbose = yes\n"
        } else {
            ""
        };
        format!(
            "# A private Dovecot for one test, written by mailcall-e2e (tests/dovecot.rs).
# Self-contained: no !include, nothing from /etc/dovecot.
protocols = imap lmtp
instance_name = mailcall-e2e-{lmtp}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
debug_log_path = {root}/dovecot.log
{debug}listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Mail is never accessed as root: each user has its own non-root uid/gid in the passwd-file.
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
  unix_listener {root}/lmtp.sock {{
    mode = 0666
  }}
}}
",
            lmtp = self.lmtp_port,
            imap = self.imap_port,
        )
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        for (what, port) in [("LMTP", self.lmtp_port), ("IMAP", self.imap_port)] {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Err(format!(
                    "something else already answers on 127.0.0.1:{port}, Dovecot's {what} port"
                ));
            }
        }
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("master.out"))
            .map_err(|e| format!("opening master.out: {e}"))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cloning master.out: {e}"))?;
        let started = Instant::now();
        let child = Command::new("dovecot")
            .arg("-c")
            .arg(self.config_path())
            .arg("-F")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| {
                format!("cannot run dovecot (install dovecot-core: tests/setup.sh): {e}")
            })?;
        self.master = Some(ChildGuard::new("dovecot master", child));
        self.starts += 1;
        let (lmtp, imap, socket) = (self.lmtp_port, self.imap_port, self.lmtp_socket());
        let mut exited = None;
        let ready = crate::poll_until(START_TIMEOUT, Duration::from_millis(10), || {
            if let Some(status) = self.master.as_mut().and_then(ChildGuard::exited) {
                exited = Some(status);
                return Some(false);
            }
            let up = std::net::TcpStream::connect(("127.0.0.1", lmtp)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", imap)).is_ok()
                && std::os::unix::net::UnixStream::connect(&socket).is_ok();
            up.then_some(true)
        });
        match (ready, exited) {
            (Some(true), _) => {
                if std::env::var_os("MAILCALL_E2E_TIMINGS").is_some() {
                    eprintln!("dovecot start #{} took {:?}", self.starts, started.elapsed());
                }
                Ok(())
            }
            (_, Some(status)) => {
                self.master = None;
                Err(format!("the dovecot master exited at start ({status})"))
            }
            _ => Err(format!(
                "LMTP 127.0.0.1:{lmtp}, IMAP 127.0.0.1:{imap} and {} not all answering {START_TIMEOUT:?} after start",
                socket.display()
            )),
        }
    }

    /// Signals the master, waits for it, kills its leftover children; `Err` when something
    /// still answers on the instance's ports or socket afterwards.
    fn halt(&mut self, signal: &str) -> Result<(), String> {
        let Some(mut master) = self.master.take() else {
            return Ok(());
        };
        let pid = master.pid();
        let children = children_of(pid);
        if master.exited().is_none() {
            let _ = Command::new("kill")
                .args([&format!("-{signal}"), &pid.to_string()])
                .status();
            let gone =
                crate::poll_until(STOP_TIMEOUT, Duration::from_millis(10), || master.exited());
            if gone.is_none() {
                eprintln!("dovecot master {pid} still alive {STOP_TIMEOUT:?} after SIG{signal}: killing it");
            }
        }
        // Reaps it (and SIGKILLs it first if it is still there).
        drop(master);
        for child in children {
            if same_process_alive(child) {
                let _ = Command::new("kill")
                    .args(["-KILL", &child.pid.to_string()])
                    .status();
            }
        }
        let (lmtp, imap, socket) = (self.lmtp_port, self.imap_port, self.lmtp_socket());
        let quiet = crate::poll_until(STOP_TIMEOUT, Duration::from_millis(10), || {
            let any = std::net::TcpStream::connect(("127.0.0.1", lmtp)).is_ok()
                || std::net::TcpStream::connect(("127.0.0.1", imap)).is_ok()
                || std::os::unix::net::UnixStream::connect(&socket).is_ok();
            (!any).then_some(())
        });
        quiet.ok_or_else(|| {
            format!(
                "{STOP_TIMEOUT:?} after the dovecot master {pid} ended, something still answers \
                 on 127.0.0.1:{lmtp}, 127.0.0.1:{imap} or {}",
                socket.display()
            )
        })
    }
}

impl fmt::Debug for Dovecot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dovecot")
            .field("dir", &self.root)
            .field("lmtp_port", &self.lmtp_port)
            .field("imap_port", &self.imap_port)
            .field("master_pid", &self.master_pid())
            .finish()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // No panic in drop (it may run while a test is already panicking): say it instead.
        if let Err(e) = self.halt("TERM") {
            eprintln!("stopping the test Dovecot at the end of the test: {e}");
        }
        if let Some(dir) = self.dir.take() {
            crate::maybe_keep(dir, "Dovecot instance");
        }
    }
}

/// `nobody:nogroup` from /etc/passwd and /etc/group (Debian: 65534:65534).
fn nobody_ids() -> (u32, u32) {
    let id = |file: &str, name: &str, field: usize| -> Option<u32> {
        fs::read_to_string(file).ok()?.lines().find_map(|l| {
            let parts: Vec<&str> = l.split(':').collect();
            (parts.first() == Some(&name))
                .then(|| parts.get(field).and_then(|v| v.parse().ok()))
                .flatten()
        })
    };
    (
        id("/etc/passwd", "nobody", 2).unwrap_or(65534),
        id("/etc/group", "nogroup", 2).unwrap_or(65534),
    )
}

/// chown (lchown: symlinks are not followed) `path` and everything below it; entries changed.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<usize> {
    let mut changed = 0;
    let mut stack = vec![path.to_path_buf()];
    // Bounded: a test's Maildir holds a few thousand entries at most.
    for _ in 0..1_000_000 {
        let Some(p) = stack.pop() else {
            return Ok(changed);
        };
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
        changed += 1;
        if meta.is_dir() {
            for entry in fs::read_dir(&p)? {
                stack.push(entry?.path());
            }
        }
    }
    Err(std::io::Error::other("more than a million entries"))
}

/// The direct children of `pid` (Dovecot's services are all children of its master).
pub(crate) fn children_of(pid: u32) -> Vec<Noted> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let (ppid, start_time) = stat_of(child)?;
            (ppid == pid).then_some(Noted {
                pid: child,
                start_time,
            })
        })
        .collect()
}

/// (ppid, start time) of a live, non-zombie process.
fn stat_of(pid: u32) -> Option<(u32, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, starttime field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    Some((fields.get(1)?.parse().ok()?, fields.get(19)?.parse().ok()?))
}

pub(crate) fn same_process_alive(noted: Noted) -> bool {
    stat_of(noted.pid).is_some_and(|(_, start)| start == noted.start_time)
}
