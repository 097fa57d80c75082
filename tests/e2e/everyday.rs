//! What a user meets every day, against a real Postfix ISP (STARTTLS with its own CA, AUTH) and
//! gnome-keyring: `account edit` changes only what it is given (the password stays in the
//! keyring), every `to fix:` line works when typed as written into a shell, `reply-timeout`
//! bounds the wait for a server that never answers, `config unset` brings a default back, and
//! `history --config X` reads X's data directory.

use std::path::PathBuf;
use std::time::Duration;

use mailcall_e2e::process::run_with_timeout;
use mailcall_e2e::{Cli, FakeIsp, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp, Script};

use crate::{fix_line, listener_port, typed};

const USER: &str = "alice";
const PASSWORD: &str = "kept-in-the-keyring";

/// The config at the platform's default path, so commands typed without `--config` read it.
fn default_config(env: &KeyringEnv) -> PathBuf {
    env.config_home().join("mailcall/config.toml")
}

/// The TLS + AUTH ISP for `domains`, delivering to 127.0.0.1:`lp`.
fn tls_isp(domains: &[&str], lp: u16) -> PostfixIsp {
    PostfixIsp::start(
        IspOptions::new(domains, lp)
            .with_tls()
            .with_auth(USER, PASSWORD),
    )
}

/// Queues `n` fresh messages for `domain` (numbered from `from`) at an ISP that holds `held`
/// messages the test queued before and did not fetch, and waits until all `held + n` are
/// deferred (the count comes from what the test queued, never from the queue in motion).
fn queue(isp: &PostfixIsp, held: usize, domain: &str, from: usize, n: usize) -> Vec<Message> {
    let mail: Vec<Message> = (from..from + n)
        .map(|i| Message::numbered(domain, i))
        .collect();
    isp.queue_all(&mail);
    isp.wait_deferred(held + n, Duration::from_secs(20));
    mail
}

/// `account set isp` with STARTTLS, AUTH (the right password) and the ISP's CA.
fn set_isp_account(cli: &Cli, isp: &PostfixIsp, domains: &[&str]) {
    let port = isp.port().to_string();
    let ca = isp.ca_file().display().to_string();
    let mut args = vec![
        "account",
        "set",
        "isp",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "starttls",
        "--user",
        USER,
        "--password-stdin",
        "--ca-file",
        &ca,
        "--helo",
        "client.test",
        "--link-timeout",
        "90",
    ];
    for d in domains {
        args.extend(["--domain", d]);
    }
    cli.run_with_stdin(&args, Some(&format!("{PASSWORD}\n")))
        .assert_success();
}

/// `account show isp`, line by line.
fn show(cli: &Cli) -> Vec<String> {
    let out = cli.run(&["account", "show", "isp"]);
    out.assert_success();
    out.stdout.lines().map(str::to_string).collect()
}

/// `before` with the line starting `key: ` replaced by `key: value`.
fn with(before: &[String], key: &str, value: &str) -> Vec<String> {
    let prefix = format!("{key}: ");
    let mut found = false;
    let after = before
        .iter()
        .map(|l| {
            if l.starts_with(&prefix) {
                found = true;
                format!("{prefix}{value}")
            } else {
                l.clone()
            }
        })
        .collect();
    assert!(found, "no {key} line in {before:#?}");
    after
}

/// The account's secret JSON in the keyring.
fn keyring_json(env: &KeyringEnv) -> serde_json::Value {
    let text = env
        .keyring_secret("mailcall", "isp")
        .expect("the account is in the keyring");
    serde_json::from_str(&text).expect("the keyring entry is the account as JSON")
}

/// Writes the account's keyring entry directly (what another Mailcall version could have left).
fn store_keyring_json(env: &KeyringEnv, value: &serde_json::Value) {
    let mut cmd = env.command("secret-tool");
    cmd.args([
        "store",
        "--label",
        "keyring:isp@mailcall",
        "service",
        "mailcall",
        "username",
        "isp",
    ]);
    let done = run_with_timeout(
        &mut cmd,
        Some(value.to_string().as_bytes()),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        done.status.is_some_and(|s| s.success()),
        "secret-tool store: {done:?}"
    );
}

#[test]
fn account_edit_changes_only_what_it_is_given() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = tls_isp(&["alpha.test", "beta.test"], lp);
    let cli = Cli::new(&env);
    let maildir = Maildir::new(env.root().join("Maildir"));
    cli.write_config(&format!(
        "hostname = \"client.test\"\nlisten = \"127.0.0.1:{lp}\"\nmaildir = \"{}\"\nidle-timeout = 3\nmax-wait = 60\n",
        maildir.path().display()
    ));
    set_isp_account(&cli, &isp, &["alpha.test"]);
    let base = show(&cli);
    assert!(base.contains(&"password: set".to_string()), "{base:#?}");
    let edit = |args: &[&str]| {
        let mut all = vec!["account", "edit", "isp"];
        all.extend(args);
        cli.run(&all)
    };

    // One domain more: only the domain list changes; the password stays in the keyring.
    edit(&["--add-domain", "beta.test"]).assert_success();
    let mut expected = base.clone();
    expected.push("domain: beta.test".into());
    expected.sort();
    let mut now = show(&cli);
    now.sort();
    assert_eq!(now, expected);
    assert_eq!(keyring_json(&env)["password"], PASSWORD);
    // AUTH with the kept password: both domains' mail arrives.
    let mut mail = queue(&isp, 0, "alpha.test", 0, 2);
    mail.extend(queue(&isp, 2, "beta.test", 100, 2));
    let out = crate::fetch(&cli, lp, maildir.path(), &[]);
    out.assert_success();
    assert_eq!(maildir.new_messages().len(), mail.len(), "{out}");

    // Each flag changes its line only.
    edit(&["--remove-domain", "alpha.test"]).assert_success();
    let one_domain = with(&base, "domain", "beta.test");
    assert_eq!(show(&cli), one_domain);
    edit(&["--remove-domain", "gamma.test"])
        .assert_code(2)
        .assert_mentions("has no such domain");
    assert_eq!(show(&cli), one_domain, "a refused edit changes nothing");
    edit(&["--port", "10025"]).assert_success();
    assert_eq!(show(&cli), with(&one_domain, "port", "10025"));
    edit(&["--port", &isp.port().to_string()]).assert_success();
    edit(&["--security", "tls"]).assert_success();
    assert_eq!(
        show(&cli),
        with(&one_domain, "security", "tls"),
        "a port that is not the old mode's default stays"
    );
    edit(&["--security", "starttls"]).assert_success();
    edit(&["--helo", "other.test"]).assert_success();
    assert_eq!(show(&cli), with(&one_domain, "helo", "other.test"));
    edit(&["--no-helo"]).assert_success();
    assert_eq!(show(&cli), with(&one_domain, "helo", "-"));
    edit(&["--helo", "client.test", "--no-link-timeout"]).assert_success();
    assert_eq!(show(&cli), with(&one_domain, "link-timeout", "60"));
    edit(&["--link-timeout", "90"]).assert_success();
    assert_eq!(show(&cli), one_domain);

    // What the rules refuse changes nothing: a password in clear, a new user without one.
    edit(&["--security", "none"])
        .assert_code(2)
        .assert_mentions("--security")
        .assert_mentions("never sent unencrypted");
    edit(&["--user", "bob"])
        .assert_code(2)
        .assert_mentions("--password-stdin");
    assert_eq!(show(&cli), one_domain);
    assert_eq!(keyring_json(&env)["password"], PASSWORD);
    cli.run(&["account", "edit", "nosuch", "--port", "25"])
        .assert_code(2)
        .assert_mentions("there is no account \"nosuch\"");

    // A new password replaces the old one; `--no-user` removes both user and password.
    cli.run_with_stdin(
        &["account", "edit", "isp", "--password-stdin"],
        Some("another-one\n"),
    )
    .assert_success();
    assert_eq!(show(&cli), one_domain);
    assert_eq!(keyring_json(&env)["password"], "another-one");
    edit(&["--no-user"]).assert_success();
    let no_user = with(&with(&one_domain, "user", "-"), "password", "none");
    assert_eq!(show(&cli), no_user);
    assert!(keyring_json(&env)["password"].is_null());

    // Back to AUTH (user and password at once), then a fetch proves it.
    cli.run_with_stdin(
        &["account", "edit", "isp", "--user", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    )
    .assert_success();
    assert_eq!(show(&cli), one_domain);
    let more = queue(&isp, 0, "beta.test", 200, 1);
    let out = crate::fetch(&cli, lp, maildir.path(), &[]);
    out.assert_success();
    assert_eq!(
        maildir.new_messages().len(),
        mail.len() + more.len(),
        "{out}\nISP maillog:\n{}",
        isp.log()
    );
}

#[test]
fn every_hint_in_an_error_works_when_typed_as_written() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = tls_isp(&["alpha.test"], lp);
    let cli = Cli::with_config(&env, default_config(&env));
    let maildir = Maildir::new(env.root().join("Maildir"));
    cli.write_config(&format!(
        "hostname = \"client.test\"\nlisten = \"127.0.0.1:{lp}\"\nmaildir = \"{}\"\nidle-timeout = 3\nmax-wait = 60\n",
        maildir.path().display()
    ));
    set_isp_account(&cli, &isp, &["alpha.test"]);
    let mail = queue(&isp, 0, "alpha.test", 0, 2);
    let fetch = || typed(&env, "mailcall-cli fetch", &[]);

    // 1. A password that would go out in clear. The CLI refuses to save such an account; an
    //    entry written by another program (or an older Mailcall) can still hold one.
    let mut entry = keyring_json(&env);
    entry["security"] = "none".into();
    store_keyring_json(&env, &entry);
    let out = fetch();
    out.assert_code(1);
    let fix = fix_line(&out);
    assert_eq!(
        fix, "mailcall-cli account edit isp --security starttls",
        "{out}"
    );
    typed(&env, &fix, &[]).assert_success();

    // 2. The ISP's own CA not trusted: the hint names --ca-file; the path is the user's. A saved
    //    password never follows a change of CA file unasked (issue 21 §7): the hint pipes it in.
    typed(&env, "mailcall-cli account edit isp --no-ca-file", &[])
        .assert_code(2)
        .assert_mentions("password was saved for");
    typed(
        &env,
        "printf '%s\\n' \"$PASSWORD\" | mailcall-cli account edit isp --no-ca-file --password-stdin",
        &[("PASSWORD", PASSWORD)],
    )
    .assert_success();
    let out = fetch();
    out.assert_code(1).assert_mentions("certificate");
    let fix = fix_line(&out);
    assert_eq!(
        fix,
        "printf '%s\\n' \"$PASSWORD\" | mailcall-cli account edit isp --ca-file /path/to/isp-ca.pem --password-stdin",
        "{out}"
    );
    let ca = isp.ca_file().display().to_string();
    typed(
        &env,
        &fix.replace("/path/to/isp-ca.pem", &ca),
        &[("PASSWORD", PASSWORD)],
    )
    .assert_success();

    // 3. A wrong password: the hint pipes $PASSWORD in.
    cli.run_with_stdin(
        &["account", "edit", "isp", "--password-stdin"],
        Some("wrong\n"),
    )
    .assert_success();
    let out = fetch();
    out.assert_code(1).assert_mentions("535");
    let fix = fix_line(&out);
    assert_eq!(
        fix, "printf '%s\\n' \"$PASSWORD\" | mailcall-cli account edit isp --password-stdin",
        "{out}"
    );
    typed(&env, &fix, &[("PASSWORD", PASSWORD)]).assert_success();
    let out = fetch();
    out.assert_success();
    assert_eq!(maildir.new_messages().len(), mail.len(), "{out}");

    // 4. The listen port taken by another program: the hint sets `listen`; the port is ours.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    typed(
        &env,
        &format!("mailcall-cli config set listen 127.0.0.1:{taken}"),
        &[],
    )
    .assert_success();
    let out = fetch();
    out.assert_code(2).assert_mentions("in use");
    let fix = fix_line(&out);
    assert_eq!(fix, "mailcall-cli config set listen 0.0.0.0:2525", "{out}");
    typed(&env, &fix.replace("2525", &lp.to_string()), &[]).assert_success();
    let more = queue(&isp, 0, "alpha.test", 10, 1);
    let out = fetch();
    out.assert_success();
    assert_eq!(
        maildir.new_messages().len(),
        mail.len() + more.len(),
        "{out}"
    );
    drop(holder);

    // 5. Bad values for `config set`: the message says what is allowed, and that works.
    let out = typed(&env, "mailcall-cli config set reply-timeout 0", &[]);
    out.assert_code(2)
        .assert_mentions("reply-timeout: 0 is out of range: use from 1 to 3600");
    typed(&env, "mailcall-cli config set reply-timeout 3600", &[]).assert_success();
    let out = typed(&env, "mailcall-cli config set listen nonsense", &[]);
    out.assert_code(2)
        .assert_mentions("e.g. 0.0.0.0:25 or 127.0.0.1:2525");
    typed(&env, "mailcall-cli config set listen 127.0.0.1:2525", &[]).assert_success();
    let out = typed(&env, "mailcall-cli config set colour red", &[]);
    out.assert_code(2)
        .assert_mentions("the settings are listen, maildir");
    typed(&env, "mailcall-cli config keys", &[])
        .assert_success()
        .assert_mentions("reply-timeout")
        .assert_mentions("data-dir");
}

#[test]
fn reply_timeout_bounds_the_wait_for_an_isp_that_never_answers() {
    let env = KeyringEnv::new();
    let silent = FakeIsp::start(Script::Silent);
    let cli = Cli::with_config(&env, default_config(&env));
    let lp = listener_port();
    cli.write_config(&format!(
        "hostname = \"client.test\"\nlisten = \"127.0.0.1:{lp}\"\nmaildir = \"{}\"\nidle-timeout = 3\nmax-wait = 120\n",
        env.root().join("Maildir").display()
    ));
    crate::set_plain_account(&cli, "isp", silent.port(), &["alpha.test"]);
    let mut measured = Vec::new();
    for secs in [2u64, 5] {
        typed(
            &env,
            &format!("mailcall-cli config set reply-timeout {secs}"),
            &[],
        )
        .assert_success();
        let out = typed(&env, "mailcall-cli fetch", &[]);
        out.assert_code(1).assert_mentions(&format!(
            "timed out after {secs}.0 s waiting for the greeting"
        ));
        // The default would be 60 s; the fetch ends after about reply-timeout.
        let wait = Duration::from_secs(secs);
        assert!(
            out.elapsed >= wait && out.elapsed < wait + Duration::from_secs(4),
            "reply-timeout {secs}: the fetch took {:?}\n{out}",
            out.elapsed
        );
        measured.push((secs, out.elapsed));
        let fix = fix_line(&out);
        assert_eq!(fix, "mailcall-cli config set reply-timeout 120", "{out}");
    }
    eprintln!("reply-timeout: (setting, fetch took) {measured:?}");
    assert_eq!(silent.connections(), 2);
    // The hint, typed as written, sets the key.
    typed(&env, "mailcall-cli config set reply-timeout 120", &[]).assert_success();
    typed(&env, "mailcall-cli config show", &[])
        .assert_success()
        .assert_mentions("reply-timeout = 120");
}

#[test]
fn config_unset_brings_back_the_default() {
    let env = KeyringEnv::without_secret_service();
    let cli = Cli::new(&env);
    let show = || {
        let out = cli.run(&["config", "show"]);
        out.assert_success();
        out.stdout
    };
    let defaults = show();
    for (key, value, shown) in [
        ("listen", "127.0.0.1:2525", "listen = \"127.0.0.1:2525\""),
        ("idle-timeout", "5", "idle-timeout = 5"),
        ("reply-timeout", "20s", "reply-timeout = 20"),
        ("max-wait", "90", "max-wait = 90"),
        (
            "interfaces",
            "ppp*,wlan0",
            "interfaces = [\n    \"ppp*\",\n    \"wlan0\",\n]",
        ),
        ("fetch-interval", "15m", "fetch-interval = 15"),
        ("starttls", "off", "starttls = false"),
        ("data-dir", "/srv/mailcall", "data-dir = \"/srv/mailcall\""),
    ] {
        cli.run(&["config", "set", key, value]).assert_success();
        let text = show();
        assert!(text.contains(shown), "after set {key}: {text}");
        let out = cli.run(&["config", "unset", key]);
        out.assert_success()
            .assert_mentions(&format!("{key} is back to its default"));
        assert_eq!(show(), defaults, "after unset {key}");
    }
    // The listener's certificate and key go together; set and unset one at a time all the same.
    cli.run(&["config", "set", "tls-cert", "/etc/ssl/c.pem"])
        .assert_success();
    cli.run(&["config", "show"])
        .assert_code(2)
        .assert_mentions("tls-cert and tls-key go together");
    cli.run(&["config", "set", "tls-key", "/etc/ssl/k.pem"])
        .assert_success();
    assert!(show().contains("tls-key = \"/etc/ssl/k.pem\""));
    cli.run(&["config", "unset", "tls-cert"]).assert_success();
    cli.run(&["config", "unset", "tls-key"]).assert_success();
    assert_eq!(show(), defaults, "after unset of the TLS pair");
    assert!(defaults.contains("listen = \"0.0.0.0:25\""), "{defaults}");
    assert!(defaults.contains("reply-timeout = 60"), "{defaults}");
    assert!(!cli.config_text().contains("reply-timeout = 20"));
    cli.run(&["config", "unset", "colour"])
        .assert_code(2)
        .assert_mentions("unknown setting \"colour\"");
}

#[test]
fn history_reads_the_data_dir_of_the_config_it_is_given() {
    let env = KeyringEnv::new();
    let fake = FakeIsp::start(Script::EtrnOk);
    let setup = |name: &str, domain: &str| {
        let cli = Cli::with_config(&env, env.root().join(format!("{name}.toml")));
        let lp = listener_port();
        cli.write_config(&format!(
            "hostname = \"client.test\"\nlisten = \"127.0.0.1:{lp}\"\ndata-dir = \"{}\"\nidle-timeout = 1\nmax-wait = 30\n",
            env.root().join(format!("{name}-data")).display()
        ));
        // Two accounts in one keyring: their names keep the configs apart.
        crate::set_plain_account(&cli, &format!("{name}-isp"), fake.port(), &[domain]);
        cli
    };
    let a = setup("a", "alpha.test");
    let b = setup("b", "beta.test");
    let history = |cli: &Cli| {
        let out = cli.run(&["history", "--json"]);
        out.assert_success();
        out.stdout
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let out = b.run(&["history"]);
    out.assert_success()
        .assert_mentions("no fetch sessions yet")
        .assert_mentions("b-data");
    a.run(&["fetch"]).assert_success();
    b.run(&["fetch"]).assert_success();
    b.run(&["fetch"]).assert_success();
    let domains = |records: &[serde_json::Value]| {
        records
            .iter()
            .map(|r| r["domains"][0]["domain"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(domains(&history(&a)), ["alpha.test"]);
    assert_eq!(domains(&history(&b)), ["beta.test", "beta.test"]);
    assert!(env.root().join("a-data/history.jsonl").is_file());
    assert!(
        !env.data_home().join("mailcall/history.jsonl").exists(),
        "nothing in the platform data dir"
    );
    // Also through MAILCALL_CONFIG, the other way to name a config.
    let out = mailcall_e2e::run_cli_with_env(
        &env,
        &Cli::with_config(&env, env.root().join("none.toml")),
        &["history"],
        None,
        &[],
    );
    out.assert_success()
        .assert_mentions("no fetch sessions yet");
    let mut cmd = env.command(mailcall_e2e::cli::cli_binary());
    cmd.arg("history")
        .env("MAILCALL_CONFIG", env.root().join("a.toml"));
    let done = run_with_timeout(&mut cmd, None, Duration::from_secs(30)).unwrap();
    assert!(done.stdout.contains("alpha.test"), "{done:?}");
    assert!(!done.stdout.contains("beta.test"), "{done:?}");
}
