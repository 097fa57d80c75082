//! The Linux package, for real: the .deb that `scripts/package.sh` builds is installed with apt,
//! checked the way a user and a distribution would meet it (files, owners, capabilities, Depends,
//! desktop file, user unit, completions, man pages), used by a normal user (an ETRN fetch on port
//! 25 with the installed CLI, then the daemon started by the package's unit under a real
//! `systemd --user`, logging to a journald), then purged — and nothing it brought may be left.
//!
//! It installs and purges a package, so it runs only in the throwaway Debian root that
//! `tests/package/run.sh` makes (its own network and PID namespaces; this machine's packages,
//! and a mailcall the user installed, are never touched). `scripts/test.sh --only package` builds
//! the packages and runs it there; by hand, as root:
//!
//! ```sh
//! bash scripts/package.sh --debug
//! sh tests/package/run.sh "$(cat "$CARGO_TARGET_DIR/package/deb-path")" \
//!     "$(cat "$CARGO_TARGET_DIR/package/rpm-path")" TEST-BINARY   # cargo test --test package --no-run
//! ```
//!
//! A failed check still purges the package (a guard), and every process the test starts is
//! stopped by its PID.

#![allow(clippy::unwrap_used)]

mod checks;
mod session;
mod usage;
mod user_manager;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailcall_e2e::process::{run_with_timeout, Finished};
use mailcall_e2e::{IspOptions, Maildir, PostfixIsp};

use session::{Session, User};

/// The package's name.
const PACKAGE: &str = "mailcall";
/// The version it must carry: the workspace's.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The binaries that get `cap_net_bind_service`.
const BINARIES: [&str; 2] = ["/usr/bin/mailcall", "/usr/bin/mailcall-cli"];
/// The installed CLI.
const CLI: &str = "/usr/bin/mailcall-cli";
/// The systemd user unit.
const UNIT: &str = "/usr/lib/systemd/user/mailcall.service";
/// The desktop file Tauri's bundler writes (named after productName).
const DESKTOP: &str = "/usr/share/applications/Mailcall.desktop";
/// What `systemctl --global enable mailcall` makes; the postrm must remove it.
const GLOBAL_LINK: &str = "/etc/systemd/user/default.target.wants/mailcall.service";
/// Where the user's listener is (see the ISP's setup in the test for why not 127.0.0.1).
const LISTEN_HOST: &str = "127.0.0.2";
/// The tray is loaded at run time (dlopen), so no ELF NEEDED entry shows it: Depends must.
const TRAY_LIBRARY_PACKAGE: &str = "libayatana-appindicator3-1";

/// The file `tests/package/run.sh` writes into its throwaway root: the test installs and purges
/// a package only where this exists.
const THROWAWAY_ROOT_MARK: &str = "/etc/mailcall-package-test-root";

/// Runs a command to completion (120 s at most) with a clean, predictable environment.
fn run(program: &str, args: &[&str]) -> Finished {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("LANG", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
    run_with_timeout(&mut cmd, None, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// `program args` must exit 0; panics with its output otherwise.
fn run_ok(program: &str, args: &[&str]) -> Finished {
    let out = run(program, args);
    assert!(
        out.status.is_some_and(|s| s.success()),
        "`{program} {}` failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    out
}

/// Shows a finished command in assertion messages.
fn shown(what: &str, out: &Finished) -> String {
    format!(
        "$ {what}\n  -> {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status, out.stdout, out.stderr
    )
}

/// One entry of the package's data archive (`dpkg-deb -c`).
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    mode: String,
    owner: String,
}

impl Entry {
    fn is_dir(&self) -> bool {
        self.mode.starts_with('d')
    }
}

/// What the .deb holds, as `dpkg-deb -c` lists it (`./usr/` becomes `/usr`).
fn listing(deb: &Path) -> Vec<Entry> {
    let out = run_ok("dpkg-deb", &["-c", &deb.display().to_string()]);
    out.stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let mode = fields.next()?.to_string();
            let owner = fields.next()?.to_string();
            let name = fields.nth(3)?; // size, date, time, then the name
                                       // `./usr/bin/x` or `usr/bin/x`, depending on the tool that wrote the tar.
            let name = name.trim_start_matches('.').trim_matches('/');
            (!name.is_empty()).then(|| Entry {
                path: Path::new("/").join(name),
                mode,
                owner,
            })
        })
        .collect()
}

/// dpkg's state of the package (`install ok installed`, or empty when dpkg does not know it).
fn dpkg_status() -> String {
    let out = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    if out.status.is_some_and(|s| s.success()) {
        out.stdout.trim().to_string()
    } else {
        String::new()
    }
}

/// The package installed on this machine; purged on drop unless [`Installed::purge`] ran, so a
/// failed check never leaves it behind.
struct Installed {
    purged: bool,
}

impl Installed {
    /// `apt-get install ./x.deb` (apt resolves the Depends, as a user's install would).
    fn install(deb: &Path) -> Self {
        let out = run(
            "apt-get",
            &[
                "-o",
                "DPkg::Lock::Timeout=600",
                "install",
                "-y",
                "--no-install-recommends",
                &deb.display().to_string(),
            ],
        );
        // From here on the package may be (half) installed: the guard cleans up.
        let installed = Installed { purged: false };
        assert!(
            out.status.is_some_and(|s| s.success()),
            "{}",
            shown(&format!("apt-get install {}", deb.display()), &out)
        );
        installed
    }

    /// Purges the package (`dpkg --purge` through apt-get, which waits for dpkg's lock).
    fn purge(&mut self) -> Finished {
        self.purged = true;
        run(
            "apt-get",
            &["-o", "DPkg::Lock::Timeout=600", "purge", "-y", PACKAGE],
        )
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.purged {
            let out = self.purge();
            eprintln!(
                "the package test failed: purged {PACKAGE} again\n{}",
                shown("apt-get purge mailcall", &out)
            );
        }
    }
}

#[test]
#[ignore = "installs the .deb: run in the throwaway root of tests/package/run.sh (scripts/test.sh --only package)"]
fn the_deb_installs_serves_a_normal_user_under_systemd_and_purges_without_a_trace() {
    let deb = PathBuf::from(std::env::var_os("MAILCALL_DEB").expect(
        "set MAILCALL_DEB to the .deb to test (scripts/package.sh writes its path to $CARGO_TARGET_DIR/package/deb-path)",
    ));
    assert!(
        deb.is_file(),
        "MAILCALL_DEB={} is not a file",
        deb.display()
    );
    assert!(
        mailcall_e2e::is_root(),
        "the package test installs and purges a package: run it as root"
    );
    assert!(
        Path::new(THROWAWAY_ROOT_MARK).exists(),
        "the package test installs and purges a package, so it runs only in the throwaway root \
         of tests/package/run.sh (no {THROWAWAY_ROOT_MARK} here): `bash scripts/test.sh --only package`"
    );
    assert_eq!(
        dpkg_status(),
        "",
        "{PACKAGE} is already known to dpkg in the throwaway root: the test installs and purges it itself"
    );
    assert!(
        std::fs::symlink_metadata(GLOBAL_LINK).is_err(),
        "{GLOBAL_LINK} exists before the install: remove it first"
    );
    for addr in ["127.0.0.2:25", "0.0.0.0:25"] {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            panic!("{addr} cannot be bound even as root ({e}): the package test needs port 25 free (something listens there?)");
        }
    }

    let entries = listing(&deb);
    checks::check_archive(&entries);
    // Directories the package brings that did not exist before: they must go with it.
    let new_dirs: Vec<PathBuf> = entries
        .iter()
        .filter(|e| e.is_dir() && !e.path.exists())
        .map(|e| e.path.clone())
        .collect();

    let mut installed = Installed::install(&deb);
    checks::check_installed_files(&entries);
    checks::check_capabilities();
    checks::check_depends();
    checks::check_desktop_file();
    checks::check_unit_file();
    checks::check_completions();
    checks::check_man_pages();
    checks::check_version();

    {
        let user = User::nobody();
        let mut session = Session::new(user);
        // The listener is at 127.0.0.2:25, not 127.0.0.1:25: Postfix refuses to deliver to port
        // 25 of an address it counts as its own (`inet_interfaces`, 127.0.0.1 for the test
        // ISP) — "mail for 127.0.0.1 loops back to myself", before connecting — and it accepts
        // no address in `inet_interfaces` that no interface carries. 127.0.0.2 is loopback too
        // (127.0.0.0/8 is local on Linux), and not the ISP's.
        let isp = PostfixIsp::start(
            IspOptions::new(&["package.test"], 25).with_listener_host(LISTEN_HOST),
        );
        let maildir = Maildir::new(session.home().join("Maildir"));
        usage::fetch_on_port_25_as_the_user(&mut session, &isp, &maildir);
        usage::daemon_under_systemd_user(&mut session, &isp, &maildir);
    }

    // An administrator's `systemctl --global enable` is outside dpkg's file list: postrm's job.
    let wants_dir = Path::new(GLOBAL_LINK).parent().unwrap();
    let wants_dir_existed = wants_dir.exists();
    run_ok("systemctl", &["--global", "enable", "mailcall.service"]);
    assert!(
        std::fs::symlink_metadata(GLOBAL_LINK).is_ok(),
        "`systemctl --global enable mailcall.service` made no {GLOBAL_LINK}"
    );

    let out = installed.purge();
    assert!(
        out.status.is_some_and(|s| s.success()),
        "{}",
        shown("apt-get purge mailcall", &out)
    );
    checks::check_nothing_left(&entries, &new_dirs);
    // `systemctl --global enable` made the .wants directory (systemctl's disable leaves it too):
    // the test's own doing, undone when it is empty.
    if !wants_dir_existed {
        if let Ok(mut entries) = std::fs::read_dir(wants_dir) {
            let left = entries.next().map(|e| e.map(|e| e.path()));
            assert!(
                left.is_none(),
                "{} holds {left:?} after the purge",
                wants_dir.display()
            );
            std::fs::remove_dir(wants_dir).unwrap();
        }
    }
}

#[test]
#[ignore = "reads the .rpm that scripts/package.sh built: run with MAILCALL_RPM=PATH MAILCALL_DEB=PATH and -- --ignored (tests/package/run.sh does)"]
fn the_rpm_holds_what_the_deb_holds_in_fedoras_places() {
    let (Some(rpm), Some(deb)) = (
        std::env::var_os("MAILCALL_RPM"),
        std::env::var_os("MAILCALL_DEB"),
    ) else {
        eprintln!("SKIPPED: set MAILCALL_RPM and MAILCALL_DEB (scripts/package.sh writes their paths to $CARGO_TARGET_DIR/package/)");
        return;
    };
    let rpm = rpm.to_string_lossy().into_owned();
    let query = |args: &[&str]| {
        let mut all = vec!["-qp"];
        all.extend_from_slice(args);
        all.push(&rpm);
        run_ok("rpm", &all).stdout
    };
    let version = query(&["--queryformat", "%{NAME} %{VERSION}"]);
    assert_eq!(version, format!("{PACKAGE} {VERSION}"));
    // The same files as the .deb, zsh's completion in Fedora's directory.
    let deb_files: BTreeSet<String> = listing(Path::new(&deb))
        .iter()
        .filter(|e| !e.is_dir())
        .map(|e| {
            e.path
                .display()
                .to_string()
                .replace("/zsh/vendor-completions/", "/zsh/site-functions/")
        })
        .collect();
    let rpm_files: BTreeSet<String> = query(&["-l"]).lines().map(str::to_string).collect();
    assert_eq!(
        rpm_files, deb_files,
        "the .rpm's files differ from the .deb's"
    );
    let requires = query(&["-R"]);
    for want in ["libcap", "libayatana-appindicator-gtk3"] {
        assert!(
            requires.lines().any(|l| l.trim() == want),
            "the .rpm does not require {want}:\n{requires}"
        );
    }
    let scripts = query(&["--scripts"]);
    assert!(
        scripts.contains("postinstall scriptlet")
            && scripts.contains("setcap cap_net_bind_service=+ep"),
        "the .rpm's %post does not grant the capability:\n{scripts}"
    );
    assert!(
        scripts.contains("postuninstall scriptlet") && scripts.contains("mailcall.service"),
        "the .rpm's %postun does not clean up the unit links:\n{scripts}"
    );
}
