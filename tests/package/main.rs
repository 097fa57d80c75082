//! The Linux package, for real: the .deb that `scripts/package.sh` builds is installed into this
//! machine with apt, checked the way a user and a distribution would meet it (files, owners,
//! capabilities, Depends, desktop file, user unit, completions, man pages), used by a normal
//! user (an ETRN fetch on port 25 with the installed CLI, then the daemon started by the
//! package's unit under a real `systemd --user`, logging to a journald), then purged — and
//! nothing it brought may be left.
//!
//! It changes the machine's installed packages, so it runs only when asked (as root):
//!
//! ```sh
//! bash scripts/package.sh --debug
//! MAILCALL_DEB=$(cat "$CARGO_TARGET_DIR/package/deb-path") \
//!     cargo test -p mailcall-e2e --test package -- --ignored
//! ```
//!
//! `scripts/test.sh` does both after the tray app's tests. A failed check still purges the
//! package (a guard), and every process the test starts is stopped by its PID.

#![allow(clippy::unwrap_used)]

mod session;
mod user_manager;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailcall_e2e::process::{run_with_timeout, Finished};
use mailcall_e2e::{IspOptions, Maildir, Message, PostfixIsp};

use session::{Session, User};
use user_manager::UserManager;

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
#[ignore = "installs the .deb into this machine: run with MAILCALL_DEB=PATH as root and -- --ignored (scripts/test.sh does)"]
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
    assert_eq!(
        dpkg_status(),
        "",
        "{PACKAGE} is already known to dpkg on this machine; the test installs and purges it itself: `dpkg --purge {PACKAGE}` first"
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
    check_archive(&entries);
    // Directories the package brings that did not exist before: they must go with it.
    let new_dirs: Vec<PathBuf> = entries
        .iter()
        .filter(|e| e.is_dir() && !e.path.exists())
        .map(|e| e.path.clone())
        .collect();

    let mut installed = Installed::install(&deb);
    check_installed_files(&entries);
    check_capabilities();
    check_depends();
    check_desktop_file();
    check_unit_file();
    check_completions();
    check_man_pages();
    check_version();

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
        fetch_on_port_25_as_the_user(&mut session, &isp, &maildir);
        daemon_under_systemd_user(&mut session, &isp, &maildir);
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
    check_nothing_left(&entries, &new_dirs);
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
#[ignore = "reads the .rpm that scripts/package.sh built: run with MAILCALL_RPM=PATH MAILCALL_DEB=PATH and -- --ignored"]
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

/// Every entry is root's; the binaries are executable, nothing is writable by group or others.
fn check_archive(entries: &[Entry]) {
    assert!(!entries.is_empty(), "dpkg-deb -c listed nothing");
    for e in entries {
        // Tauri's bundler writes numeric ids (0/0); other tars show names.
        assert!(
            e.owner == "0/0" || e.owner == "root/root",
            "{} is not owned by root: {e:?}",
            e.path.display()
        );
        let group_other_write =
            e.mode.len() >= 10 && (e.mode.as_bytes()[5] == b'w' || e.mode.as_bytes()[8] == b'w');
        assert!(
            !group_other_write || e.mode.starts_with('l'),
            "{} is writable by group or others: {e:?}",
            e.path.display()
        );
    }
    let paths: BTreeSet<&Path> = entries.iter().map(|e| e.path.as_path()).collect();
    for want in BINARIES.iter().chain([UNIT, DESKTOP].iter()).chain(
        [
            "/usr/share/bash-completion/completions/mailcall-cli",
            "/usr/share/zsh/vendor-completions/_mailcall-cli",
            "/usr/share/fish/vendor_completions.d/mailcall-cli.fish",
            "/usr/share/man/man1/mailcall-cli.1.gz",
            "/usr/share/man/man1/mailcall-cli-daemon.1.gz",
        ]
        .iter(),
    ) {
        assert!(
            paths.contains(Path::new(want)),
            "the package lacks {want}; it holds:\n{}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    for bin in BINARIES {
        let e = entries.iter().find(|e| e.path == Path::new(bin)).unwrap();
        assert_eq!(e.mode, "-rwxr-xr-x", "{bin} should be 0755: {e:?}");
    }
    // The tray app's icons are there in the sizes the bundle config names.
    assert!(
        entries
            .iter()
            .any(|e| e.path.starts_with("/usr/share/icons/hicolor")
                && e.path.ends_with("mailcall.png")),
        "no hicolor icon mailcall.png in the package"
    );
}

/// dpkg knows the package as installed, in this version, and every file is on disk.
fn check_installed_files(entries: &[Entry]) {
    assert_eq!(dpkg_status(), "install ok installed");
    let version = run_ok("dpkg-query", &["-W", "-f=${Version}", PACKAGE]);
    assert_eq!(version.stdout.trim(), VERSION, "the package's version");
    let known = run_ok("dpkg", &["-L", PACKAGE]);
    let known: BTreeSet<&str> = known.stdout.lines().collect();
    for e in entries {
        assert!(
            std::fs::symlink_metadata(&e.path).is_ok(),
            "{} is in the package but not on disk after the install",
            e.path.display()
        );
        let p = e.path.display().to_string();
        assert!(
            known.contains(p.as_str()),
            "dpkg -L {PACKAGE} does not list {p}"
        );
    }
}

/// The post-install step gave both binaries cap_net_bind_service (and nothing more).
fn check_capabilities() {
    for bin in BINARIES {
        let out = run_ok("getcap", &[bin]);
        let caps = out.stdout.trim().strip_prefix(bin).unwrap_or("").trim();
        assert_eq!(
            caps,
            "cap_net_bind_service=ep",
            "getcap {bin} (the postinst's setcap; package libcap2-bin)\n{}",
            shown(&format!("getcap {bin}"), &out)
        );
    }
}

/// Every shared library the binaries link (ELF NEEDED) comes from a package that the
/// package's Depends bring in (transitively), and the tray library loaded at run time is in
/// Depends itself: on a machine without the build packages, the app must still start.
fn check_depends() {
    let closure = run_ok(
        "apt-cache",
        &[
            "depends",
            "--recurse",
            "--installed",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
            PACKAGE,
        ],
    );
    let closure: BTreeSet<String> = closure
        .stdout
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(|l| l.trim().split(':').next().unwrap_or("").to_string())
        .collect();
    let depends = run_ok("dpkg-query", &["-W", "-f=${Depends}", PACKAGE]);
    assert!(
        depends.stdout.contains(TRAY_LIBRARY_PACKAGE),
        "Depends must name {TRAY_LIBRARY_PACKAGE} (the tray library is loaded at run time): {}",
        depends.stdout
    );
    for bin in BINARIES {
        let elf = run_ok("readelf", &["-d", bin]);
        let resolved = run_ok("ldd", &[bin]);
        for line in elf.stdout.lines().filter(|l| l.contains("(NEEDED)")) {
            let Some(lib) = line.split('[').nth(1).and_then(|s| s.split(']').next()) else {
                continue;
            };
            let path = resolved
                .stdout
                .lines()
                .find_map(|l| {
                    let l = l.trim();
                    match l.split_once(" => ") {
                        Some((name, rest)) => {
                            (name == lib).then(|| rest.split(" (").next().unwrap_or("").to_string())
                        }
                        // The dynamic loader: `/lib64/ld-linux-x86-64.so.2 (0x...)`.
                        None => {
                            let path = l.split(" (").next().unwrap_or("");
                            (path.rsplit('/').next() == Some(lib)).then(|| path.to_string())
                        }
                    }
                })
                .unwrap_or_else(|| {
                    panic!("ldd {bin} does not resolve {lib}:\n{}", resolved.stdout)
                });
            let owner = owning_package(&path)
                .unwrap_or_else(|| panic!("no package owns {path} ({lib}, needed by {bin})"));
            assert!(
                closure.contains(&owner),
                "{bin} needs {lib} from package {owner}, which the Depends of {PACKAGE} ({}) do not bring in",
                depends.stdout.trim()
            );
        }
    }
}

/// The package that owns `path` (dpkg -S), trying the /usr-merged spelling too.
fn owning_package(path: &str) -> Option<String> {
    let canonical = std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string());
    let mut candidates = vec![path.to_string(), canonical.clone()];
    for p in [path, canonical.as_str()] {
        if let Some(rest) = p.strip_prefix("/usr") {
            candidates.push(rest.to_string());
        } else {
            candidates.push(format!("/usr{p}"));
        }
    }
    candidates.iter().find_map(|c| {
        let out = run("dpkg", &["-S", c]);
        if !out.status.is_some_and(|s| s.success()) {
            return None;
        }
        let line = out.stdout.lines().next()?;
        let pkg = line.split(": ").next()?.split(',').next()?.trim();
        Some(pkg.split(':').next()?.to_string())
    })
}

/// desktop-file-validate accepts the desktop file without a word, and what it names exists.
fn check_desktop_file() {
    let out = run("desktop-file-validate", &[DESKTOP]);
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.trim().is_empty(),
        "{}",
        shown(&format!("desktop-file-validate {DESKTOP}"), &out)
    );
    let text = std::fs::read_to_string(DESKTOP).unwrap();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{DESKTOP} has no {key}=:\n{text}"))
            .to_string()
    };
    let exec = value("Exec");
    let program = exec.split_whitespace().next().unwrap_or("");
    assert!(
        Path::new(program).is_absolute() && Path::new(program).exists()
            || Path::new("/usr/bin").join(program).exists(),
        "Exec={exec} does not name an installed program"
    );
    let icon = value("Icon");
    let found = ["32x32", "128x128", "256x256"].iter().any(|size| {
        Path::new(&format!("/usr/share/icons/hicolor/{size}/apps/{icon}.png")).exists()
    });
    assert!(
        found,
        "Icon={icon} is not in /usr/share/icons/hicolor/*/apps"
    );
}

/// `systemd-analyze verify --user` accepts the unit: its syntax, ExecStart's binary and the
/// man pages its Documentation= names (it runs `man` for them).
fn check_unit_file() {
    let runtime = mailcall_e2e::test_dir("package-verify");
    let mut cmd = Command::new("systemd-analyze");
    cmd.args(["verify", "--user", UNIT])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("HOME", runtime.path());
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(60)).unwrap();
    assert!(
        out.status.is_some_and(|s| s.success())
            && out.stdout.trim().is_empty()
            && out.stderr.trim().is_empty(),
        "{}",
        shown(&format!("systemd-analyze verify --user {UNIT}"), &out)
    );
    let text = std::fs::read_to_string(UNIT).unwrap();
    for want in [
        "ExecStart=/usr/bin/mailcall-cli daemon",
        "Restart=on-failure",
        "WantedBy=default.target",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "{UNIT} lacks `{want}`:\n{text}"
        );
    }
    // NoNewPrivileges would drop the file capability the daemon needs for port 25.
    assert!(
        !text.contains("NoNewPrivileges=yes"),
        "{UNIT} sets NoNewPrivileges"
    );
}

/// bash completes subcommands and options from the installed script; zsh's and fish's scripts
/// are the generated ones for this command.
fn check_completions() {
    let script = r#"source /usr/share/bash-completion/completions/mailcall-cli
f=$(complete -p mailcall-cli | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
[ -n "$f" ] || { echo "no completion function registered for mailcall-cli" >&2; exit 1; }
complete_line() {
    COMP_LINE=$1
    COMP_POINT=${#COMP_LINE}
    read -r -a COMP_WORDS <<<"$COMP_LINE"
    case "$COMP_LINE" in *" ") COMP_WORDS+=("") ;; esac
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    "$f" mailcall-cli "${COMP_WORDS[$COMP_CWORD]}" "${COMP_WORDS[$((COMP_CWORD - 1))]}"
    echo "$1 => ${COMPREPLY[*]}"
}
complete_line "mailcall-cli fe"
complete_line "mailcall-cli daemon --log"
"#;
    let out = run_ok("bash", &["-c", script]);
    assert!(
        out.stdout.contains("mailcall-cli fe => fetch"),
        "bash completion of `mailcall-cli fe`\n{}",
        shown("bash completion", &out)
    );
    assert!(
        out.stdout
            .contains("mailcall-cli daemon --log => --log-file"),
        "bash completion of `mailcall-cli daemon --log`\n{}",
        shown("bash completion", &out)
    );
    // The generated scripts name the hidden `generate` command nowhere: it is for packaging.
    assert!(!out.stdout.contains("generate"), "{}", out.stdout);
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_mailcall-cli").unwrap();
    assert!(
        zsh.starts_with("#compdef mailcall-cli"),
        "zsh completion header: {}",
        &zsh[..zsh.len().min(80)]
    );
    let fish =
        std::fs::read_to_string("/usr/share/fish/vendor_completions.d/mailcall-cli.fish").unwrap();
    assert!(
        fish.contains("complete -c mailcall-cli"),
        "fish completion content"
    );
    assert!(
        fish.contains("log-file"),
        "fish completion lacks daemon --log-file"
    );
}

/// man finds the pages, and the daemon's page documents --log-file.
fn check_man_pages() {
    for page in ["mailcall-cli", "mailcall-cli-daemon", "mailcall-cli-fetch"] {
        let out = run_ok("man", &["-w", page]);
        assert_eq!(
            out.stdout.trim(),
            format!("/usr/share/man/man1/{page}.1.gz"),
            "man -w {page}"
        );
    }
    let mut cmd = Command::new("man");
    cmd.args(["-P", "cat", "mailcall-cli-daemon"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("MANWIDTH", "100");
    let out = run_with_timeout(&mut cmd, None, Duration::from_secs(60)).unwrap();
    assert!(
        out.status.is_some_and(|s| s.success()) && out.stdout.contains("--log-file"),
        "{}",
        shown("man -P cat mailcall-cli-daemon", &out)
    );
}

/// The installed CLI says the workspace's version.
fn check_version() {
    let out = run_ok(CLI, &["--version"]);
    assert_eq!(out.stdout.trim(), format!("mailcall-cli {VERSION}"));
}

/// `mailcall-cli` from /usr/bin, run by `nobody`, listens on port 25 (the capability) and
/// fetches a held message with ETRN from a Postfix ISP that delivers to port 25.
fn fetch_on_port_25_as_the_user(session: &mut Session, isp: &PostfixIsp, maildir: &Maildir) {
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .is_some_and(|p| p <= 25)
    {
        eprintln!("note: net.ipv4.ip_unprivileged_port_start <= 25 here: port 25 would work without the capability too");
    }
    session.start_bus();
    session.start_keyring();
    let cli = |args: &[&str]| -> Finished {
        let out = session.run(CLI, args);
        assert!(
            out.status.is_some_and(|s| s.success()),
            "{}\nISP maillog:\n{}",
            shown(
                &format!(
                    "(as {}) mailcall-cli {}",
                    session.user().name,
                    args.join(" ")
                ),
                &out
            ),
            isp.log()
        );
        out
    };
    let maildir_path = maildir.path().display().to_string();
    cli(&["config", "set", "hostname", "client.test"]);
    let listen = format!("{LISTEN_HOST}:25");
    cli(&["config", "set", "listen", &listen]);
    cli(&["config", "set", "maildir", &maildir_path]);
    // The daemon later fetches when asked, not by itself (a deterministic test).
    cli(&["config", "set", "fetch-at-start", "false"]);
    let port = isp.port().to_string();
    cli(&[
        "account",
        "set",
        "isp",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "none",
        "--domain",
        "package.test",
    ]);

    let first = Message::numbered("package.test", 1);
    isp.queue_all(std::slice::from_ref(&first));
    isp.wait_deferred(1, Duration::from_secs(30));
    let out = cli(&["fetch", "--idle-timeout", "3", "--max-wait", "60"]);
    assert!(
        out.stdout.contains(&format!("listening on {listen}")),
        "the fetch should listen on port 25\n{}",
        shown("mailcall-cli fetch", &out)
    );
    assert_eq!(
        maildir.message_ids(),
        vec![first.message_id.clone()],
        "the held message must be in the Maildir\n{}\nISP maillog:\n{}",
        shown("mailcall-cli fetch", &out),
        isp.log()
    );
    isp.wait_queue_empty(Duration::from_secs(10));
    session.stop_bus();
}

/// The package's unit under a real user manager: `systemctl --user enable --now mailcall`
/// starts the daemon as the user on port 25, a fetch through it brings the next held message,
/// SIGHUP (reload) and a crash (Restart=on-failure) behave, and the journal holds its lines
/// with syslog priorities and nothing else (no timestamps, colours or `<N>` prefixes).
fn daemon_under_systemd_user(session: &mut Session, isp: &PostfixIsp, maildir: &Maildir) {
    let manager = match UserManager::start(session) {
        Ok(m) => m,
        Err(why) => panic!("systemd --user cannot run here: {why}"),
    };
    // The test's keyring, on the bus the manager's dbus.socket made.
    let bus = session.runtime_dir().join("bus");
    let bus_up =
        mailcall_e2e::poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
            bus.exists().then_some(())
        });
    assert!(
        bus_up.is_some(),
        "the user manager made no {} (dbus.socket, package dbus-user-session)\njournal:\n{}",
        bus.display(),
        manager.journal_text()
    );
    session.start_keyring();

    let second = Message::numbered("package.test", 2);
    isp.queue_all(std::slice::from_ref(&second));
    isp.wait_deferred(1, Duration::from_secs(30));

    let enable = manager.systemctl(&["enable", "--now", "mailcall.service"]);
    assert!(
        enable.status.is_some_and(|s| s.success()),
        "{}\njournal:\n{}",
        shown("systemctl --user enable --now mailcall.service", &enable),
        manager.journal_text()
    );
    let link = session
        .home()
        .join(".config/systemd/user/default.target.wants/mailcall.service");
    assert!(
        std::fs::read_link(&link).is_ok_and(|t| t == Path::new(UNIT)),
        "enable made no link {} -> {UNIT}",
        link.display()
    );
    let running = wait_until_running(session, &manager);
    let first_pid = manager.property("mailcall.service", "MainPID");
    assert!(
        running.contains(&format!("listening on: {LISTEN_HOST}:25")),
        "{running}"
    );

    let out = session.run(CLI, &["fetch", "--via-running"]);
    assert!(
        out.status.is_some_and(|s| s.success())
            && out.stdout.contains("asked the running Mailcall"),
        "{}\njournal:\n{}\nISP maillog:\n{}",
        shown("mailcall-cli fetch --via-running", &out),
        manager.journal_text(),
        isp.log()
    );
    let mut want = vec![
        Message::numbered("package.test", 1).message_id,
        second.message_id.clone(),
    ];
    want.sort();
    assert_eq!(
        maildir.message_ids(),
        want,
        "the daemon should have stored the second message\njournal:\n{}",
        manager.journal_text()
    );

    // ExecReload: SIGHUP reads the accounts again.
    let reload = manager.systemctl(&["reload", "mailcall.service"]);
    assert!(
        reload.status.is_some_and(|s| s.success()),
        "{}",
        shown("systemctl --user reload", &reload)
    );
    wait_for_journal(&manager, "SIGHUP: reloaded the accounts");

    // Restart=on-failure: a crash (SIGKILL) brings it back after RestartSec.
    let kill = manager.systemctl(&["kill", "--signal=KILL", "mailcall.service"]);
    assert!(
        kill.status.is_some_and(|s| s.success()),
        "{}",
        shown("systemctl --user kill", &kill)
    );
    let restarted =
        mailcall_e2e::poll_until(Duration::from_secs(40), Duration::from_millis(200), || {
            let pid = manager.property("mailcall.service", "MainPID");
            let state = manager.property("mailcall.service", "ActiveState");
            (state == "active" && pid != "0" && pid != first_pid).then_some(pid)
        });
    assert!(
        restarted.is_some(),
        "after SIGKILL the unit did not come back (Restart=on-failure): {}\njournal:\n{}",
        manager.systemctl(&["status", "mailcall.service"]).stdout,
        manager.journal_text()
    );
    assert_eq!(manager.property("mailcall.service", "NRestarts"), "1");
    wait_until_running(session, &manager);

    check_journal(session, &manager);

    let disable = manager.systemctl(&["disable", "--now", "mailcall.service"]);
    assert!(
        disable.status.is_some_and(|s| s.success()),
        "{}",
        shown("systemctl --user disable --now", &disable)
    );
    assert_eq!(
        manager.property("mailcall.service", "ActiveState"),
        "inactive"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "disable left {}",
        link.display()
    );
    drop(manager);
    session.stop_bus();
}

/// Polls `mailcall-cli status` until it reports the running daemon; returns its output.
fn wait_until_running(session: &Session, manager: &UserManager) -> String {
    let mut last = String::new();
    let up = mailcall_e2e::poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let out = session.run(CLI, &["status"]);
        last = out.stdout.clone() + &out.stderr;
        out.stdout.contains("running: yes").then_some(out.stdout)
    });
    up.unwrap_or_else(|| {
        panic!(
            "the daemon started by the unit does not answer `mailcall-cli status` within 30 s: {last}\n{}\njournal:\n{}",
            manager.systemctl(&["status", "mailcall.service"]).stdout,
            manager.journal_text()
        )
    })
}

/// Waits until the daemon's journal has a line containing `needle`.
fn wait_for_journal(manager: &UserManager, needle: &str) {
    let found =
        mailcall_e2e::poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
            daemon_entries(manager)
                .iter()
                .any(|e| text(e, "MESSAGE").contains(needle))
                .then_some(())
        });
    assert!(
        found.is_some(),
        "no journal line with {needle:?}\njournal:\n{}",
        manager.journal_text()
    );
}

fn text(e: &serde_json::Value, key: &str) -> String {
    e.get(key)
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string()
}

/// The journal entries the daemon wrote (its stream: identifier mailcall-cli).
fn daemon_entries(manager: &UserManager) -> Vec<serde_json::Value> {
    manager
        .journal()
        .into_iter()
        .filter(|e| text(e, "SYSLOG_IDENTIFIER") == "mailcall-cli")
        .collect()
}

/// The daemon's lines reached journald as entries of the user unit with the right priorities,
/// and carry only the message.
fn check_journal(session: &Session, manager: &UserManager) {
    let entries = daemon_entries(manager);
    let all = manager.journal_text();
    assert!(
        !entries.is_empty(),
        "no journal entries from mailcall-cli\njournal:\n{all}"
    );
    let uid = session.user().uid.to_string();
    for e in &entries {
        let message = text(e, "MESSAGE");
        assert_eq!(text(e, "_UID"), uid, "an entry not from the user: {e}");
        assert_eq!(
            text(e, "_SYSTEMD_USER_UNIT"),
            "mailcall.service",
            "the entry is not attributed to the user unit: {e}"
        );
        let bare = !message.starts_with('<')
            && !message.contains('\u{1b}')
            && !message.starts_with(|c: char| c.is_ascii_digit())
            && !["ERROR", "WARN", "INFO", "DEBUG"]
                .iter()
                .any(|l| message.split_whitespace().next() == Some(l));
        assert!(
            bare,
            "a journal line with a prefix, timestamp or colour: {message:?}"
        );
    }
    let priority_of = |needle: &str| {
        entries
            .iter()
            .find(|e| text(e, "MESSAGE").contains(needle))
            .map(|e| text(e, "PRIORITY"))
            .unwrap_or_else(|| panic!("no journal line with {needle:?}\njournal:\n{all}"))
    };
    // info → 6 (the daemon's start line and its fetch).
    assert_eq!(priority_of("mailcall daemon running"), "6");
    assert_eq!(priority_of("fetch finished"), "6");
    assert_eq!(priority_of("SIGHUP: reloaded the accounts"), "6");
}

/// After the purge: dpkg forgot the package, its files and new directories are gone (the
/// capabilities with the binaries), and so is the `--global enable` link.
fn check_nothing_left(entries: &[Entry], new_dirs: &[PathBuf]) {
    assert_eq!(
        dpkg_status(),
        "",
        "dpkg still knows {PACKAGE} after --purge"
    );
    let left: Vec<String> = entries
        .iter()
        .filter(|e| !e.is_dir() && std::fs::symlink_metadata(&e.path).is_ok())
        .map(|e| e.path.display().to_string())
        .collect();
    assert!(
        left.is_empty(),
        "files of the package left after the purge: {left:?}"
    );
    let dirs: Vec<String> = new_dirs
        .iter()
        .filter(|d| d.exists())
        .map(|d| d.display().to_string())
        .collect();
    assert!(
        dirs.is_empty(),
        "directories the package made are left: {dirs:?}"
    );
    assert!(
        std::fs::symlink_metadata(GLOBAL_LINK).is_err(),
        "the postrm left {GLOBAL_LINK}"
    );
    for bin in BINARIES {
        assert!(!Path::new(bin).exists(), "{bin} is still there");
    }
}
