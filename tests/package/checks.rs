//! What the package test checks without running anything as the user: the archive, the
//! installed files and their capabilities, Depends against the linked libraries, the desktop
//! file, the unit, completions, man pages, the version — and, after the purge, that nothing is
//! left.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mailcall_e2e::process::run_with_timeout;

use crate::{
    dpkg_status, run, run_ok, shown, Entry, BINARIES, CLI, DESKTOP, GLOBAL_LINK, PACKAGE,
    TRAY_LIBRARY_PACKAGE, UNIT, VERSION,
};

/// Every entry is root's; the binaries are executable, nothing is writable by group or others.
pub fn check_archive(entries: &[Entry]) {
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
pub fn check_installed_files(entries: &[Entry]) {
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
pub fn check_capabilities() {
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
pub fn check_depends() {
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
pub fn check_desktop_file() {
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
pub fn check_unit_file() {
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
pub fn check_completions() {
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
pub fn check_man_pages() {
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
pub fn check_version() {
    let out = run_ok(CLI, &["--version"]);
    assert_eq!(out.stdout.trim(), format!("mailcall-cli {VERSION}"));
}

/// After the purge: dpkg forgot the package, its files and new directories are gone (the
/// capabilities with the binaries), and so is the `--global enable` link.
pub fn check_nothing_left(entries: &[Entry], new_dirs: &[PathBuf]) {
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
