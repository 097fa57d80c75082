//! Port 25 as an unprivileged user: the bind fails, and the message names both fixes
//! (`setcap cap_net_bind_service=+ep` and `net.ipv4.ip_unprivileged_port_start`).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use mailcall_e2e::cli::cli_binary;
use mailcall_e2e::process::run_with_timeout;
use mailcall_e2e::{is_root, test_dir, CliOutput};

fn unprivileged_port_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

#[test]
fn listener_on_port_25_as_nobody_explains_setcap_and_sysctl() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run the CLI as `nobody` with setpriv");
        return;
    }
    if unprivileged_port_start().is_some_and(|p| p <= 25) {
        eprintln!("SKIPPED: net.ipv4.ip_unprivileged_port_start <= 25 here: anyone may bind 25");
        return;
    }
    // Port 25 must be free, or the failure would be "in use" instead of "permission denied".
    match std::net::TcpListener::bind("127.0.0.1:25") {
        Ok(l) => drop(l),
        Err(e) => {
            eprintln!("SKIPPED: cannot bind 127.0.0.1:25 even as root ({e}); something holds it");
            return;
        }
    }

    // Everything nobody needs is in one 0755 dir: a copy of the binary, a 0644 config, and a
    // world-writable HOME (the CLI may want its data dir).
    let dir = test_dir("port25");
    let bin = dir.path().join("mailcall-cli");
    std::fs::copy(cli_binary(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("config.toml");
    // No account: the listener is bound once the accounts are read (their keyring entries say
    // whether ETRN needs it; ODMR does not), and a Mailcall without accounts listens — so the
    // daemon gets to the bind without a keyring (nobody has none here).
    std::fs::write(&config, "hostname = \"client.test\"\n").unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();

    let args = [
        "--config",
        &config.display().to_string(),
        "daemon",
        "--listen",
        "127.0.0.1:25",
        "--maildir",
        &home.join("Maildir").display().to_string(),
    ]
    .map(|s| s.to_string());
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .args(&args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .current_dir(&home);
    let done = run_with_timeout(&mut cmd, None, Duration::from_secs(60)).unwrap();
    let out = CliOutput {
        command: format!("setpriv --reuid=nobody ... mailcall-cli {}", args.join(" ")),
        status: done.status,
        stdout: done.stdout,
        stderr: done.stderr,
        elapsed: done.elapsed,
    };
    out.assert_code(2)
        .assert_mentions("setcap")
        .assert_mentions("ip_unprivileged_port_start");
}

/// `args` for `mailcall-cli` run as `nobody` from `bin`, with a private HOME under `dir`.
fn as_nobody(bin: &std::path::Path, home: &std::path::Path, args: &[String]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(bin)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .current_dir(home);
    cmd
}

/// Issue 21 item 9: the package grants `cap_net_bind_service` to the binaries for every local
/// user; under it Mailcall binds 25 (and 587), and refuses any other port below 1024 with a
/// message that says why — the capability serves nothing else.
#[test]
fn under_cap_net_bind_service_port_25_binds_and_port_110_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to setcap a copy and run it as `nobody` with setpriv");
        return;
    }
    if unprivileged_port_start().is_some_and(|p| p <= 110) {
        eprintln!("SKIPPED: net.ipv4.ip_unprivileged_port_start <= 110 here: anyone may bind it");
        return;
    }
    match std::net::TcpListener::bind("127.0.0.1:25") {
        Ok(l) => drop(l),
        Err(e) => {
            eprintln!("SKIPPED: cannot bind 127.0.0.1:25 even as root ({e}); something holds it");
            return;
        }
    }
    let dir = test_dir("port25cap");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("mailcall-cli");
    std::fs::copy(cli_binary(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let setcap = Command::new("setcap")
        .args(["cap_net_bind_service=+ep"])
        .arg(&bin)
        .output()
        .unwrap();
    assert!(setcap.status.success(), "setcap: {setcap:?}");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "hostname = \"client.test\"\nsubmit-listen = \"off\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    let args = |port: u16| {
        [
            "--config",
            &config.display().to_string(),
            "daemon",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--maildir",
            &home.join("Maildir").display().to_string(),
        ]
        .map(|s| s.to_string())
    };

    // Port 110 (POP3) is below 1024 but not Mailcall's: refused, saying why and what to use.
    let done = run_with_timeout(
        &mut as_nobody(&bin, &home, &args(110)),
        None,
        Duration::from_secs(60),
    )
    .unwrap();
    let out = CliOutput {
        command: "setpriv --reuid=nobody ... mailcall-cli daemon --listen 127.0.0.1:110".into(),
        status: done.status,
        stdout: done.stdout,
        stderr: done.stderr,
        elapsed: done.elapsed,
    };
    out.assert_code(2)
        .assert_mentions("cap_net_bind_service")
        .assert_mentions("only ports 25 and 587");
    assert!(
        std::net::TcpStream::connect("127.0.0.1:110").is_err(),
        "nothing listens on 110\n{out}"
    );

    // Port 25 under the same capability: the daemon listens and greets.
    let child = as_nobody(&bin, &home, &args(25))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut daemon = mailcall_e2e::process::ChildGuard::new("mailcall-cli daemon", child);
    let greeting =
        mailcall_e2e::poll_until(Duration::from_secs(30), Duration::from_millis(100), || {
            use std::io::{BufRead, BufReader};
            let stream = std::net::TcpStream::connect("127.0.0.1:25").ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line).ok()?;
            Some(line)
        });
    assert!(
        daemon.exited().is_none(),
        "the daemon under the capability stopped"
    );
    let greeting = greeting.expect("the daemon never listened on 127.0.0.1:25");
    assert!(greeting.starts_with("220 "), "{greeting}");
    drop(daemon);
}
