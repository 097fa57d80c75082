//! Exit codes as the README documents them: `0` success, `1` the operation ran and failed, `2`
//! a problem with the usage, the config or the keyring (nothing was attempted) — a Maildir
//! that cannot be one, a listen address that is invalid or cannot be bound, a config file that
//! is not valid, an unknown account — and `3` from `status` when nothing runs. Each setup
//! problem's message says what to change; where it prints a `to fix:` command, that command
//! (with the example path or port replaced) fixes it.

use std::time::Duration;

use mailcall_e2e::{Cli, CliOutput, FakeIsp, IspOptions, KeyringEnv, PostfixIsp, Script};

use crate::{fix_line, listener_port, set_plain_account, typed};

/// A config listening on a free loopback port, a plain account at `isp_port` for `domains`.
fn setup(cli: &Cli, isp_port: u16, domains: &[&str]) -> u16 {
    let lp = listener_port();
    cli.write_config(&format!(
        "hostname = \"client.test\"\nlisten = \"127.0.0.1:{lp}\"\nmaildir = \"{}\"\nidle-timeout = 1\nmax-wait = 30\n",
        cli.config_path().with_file_name("Maildir").display()
    ));
    set_plain_account(cli, "isp", isp_port, domains);
    lp
}

/// Runs a `to fix:` line as typed, after checking it names this CLI's config file.
fn run_fix(env: &KeyringEnv, cli: &Cli, fix: &str) -> CliOutput {
    let program = format!("mailcall-cli --config {} ", cli.config_path().display());
    assert!(
        fix.starts_with(&program),
        "the hint names the config given: {fix}"
    );
    typed(env, fix, &[])
}

#[test]
fn a_maildir_that_cannot_be_one_is_exit_2_and_the_hint_fixes_it() {
    let env = KeyringEnv::new();
    let isp = FakeIsp::start(Script::EtrnOk);
    let cli = Cli::new(&env);
    setup(&cli, isp.port(), &["alpha.test"]);
    let file = env.root().join("not-a-dir");
    std::fs::write(&file, "a file where the Maildir should be\n").unwrap();
    let under_file = file.join("Maildir");
    for bad in [&file, &under_file] {
        let shown = bad.display().to_string();
        let out = cli.run(&["fetch", "--maildir", &shown]);
        out.assert_code(2)
            .assert_mentions(&format!("cannot use the Maildir {shown}"));
        cli.run(&["config", "set", "maildir", &shown])
            .assert_success();
        let out = cli.run(&["fetch"]);
        out.assert_code(2).assert_mentions("choose another Maildir");
        assert!(out.stdout.is_empty(), "nothing was attempted\n{out}");
        let out = cli.run(&["daemon"]);
        out.assert_code(2)
            .assert_mentions(&format!("cannot use the Maildir {shown}"));
        assert!(out.elapsed < Duration::from_secs(10), "{out}");
    }
    assert_eq!(isp.connections(), 0, "the ISP was never asked");
    let out = cli.run(&["fetch"]);
    let fix = fix_line(&out);
    assert!(
        fix.ends_with(" config set maildir /home/me/Maildir"),
        "{fix}"
    );
    let good = env.root().join("Maildir").display().to_string();
    run_fix(&env, &cli, &fix.replace("/home/me/Maildir", &good)).assert_success();
    cli.run(&["fetch"]).assert_success();
    assert!(env.root().join("Maildir/new").is_dir());
}

#[test]
fn a_listen_address_that_is_invalid_or_cannot_be_bound_is_exit_2() {
    let env = KeyringEnv::new();
    let isp = FakeIsp::start(Script::EtrnOk);
    let cli = Cli::new(&env);
    let lp = setup(&cli, isp.port(), &["alpha.test"]);
    let good = cli.config_text();

    // Invalid: on the command line, with `config set`, in the file.
    cli.run(&["fetch", "--listen", "nonsense"]).assert_code(2);
    cli.run(&["config", "set", "listen", "127.0.0.1:99999"])
        .assert_code(2)
        .assert_mentions("is not ADDR:PORT");
    cli.write_config(&good.replace(&format!("127.0.0.1:{lp}"), "localhost:25"));
    for args in [&["fetch"][..], &["daemon"], &["config", "show"]] {
        cli.run(args)
            .assert_code(2)
            .assert_mentions("is not valid")
            .assert_mentions("listen");
    }
    cli.write_config(&good);

    // Cannot be bound: in use by another program, or an address this machine does not have.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = format!("127.0.0.1:{}", holder.local_addr().unwrap().port());
    for addr in [taken.as_str(), "192.0.2.1:2525"] {
        for args in [&["fetch"][..], &["daemon"]] {
            let mut all = args.to_vec();
            all.extend(["--listen", addr]);
            let out = cli.run(&all);
            out.assert_code(2)
                .assert_mentions(&format!("cannot listen on {addr}"));
            let fix = fix_line(&out);
            assert!(fix.ends_with(" config set listen 0.0.0.0:2525"), "{fix}");
            assert!(out.elapsed < Duration::from_secs(10), "{out}");
        }
    }
    assert_eq!(isp.connections(), 0, "the ISP was never asked");
    // The hint typed as written (the port replaced by a free one) fixes it.
    let out = cli.run(&["fetch", "--listen", &taken]);
    let fix = fix_line(&out).replace("2525", &listener_port().to_string());
    run_fix(&env, &cli, &fix).assert_success();
    cli.run(&["fetch"]).assert_success();
    drop(holder);
}

#[test]
fn a_config_file_that_is_not_valid_is_exit_2_for_every_command() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    for (text, says) in [
        ("listen = [unclosed\n", "is not valid"),
        ("colour = \"red\"\n", "unknown field `colour`"),
        ("idle-timeout = 0\n", "idle-timeout: 0 is out of range"),
    ] {
        cli.write_config(text);
        for args in [
            &["fetch"][..],
            &["daemon"],
            &["config", "show"],
            &["config", "set", "max-wait", "60"],
            &["account", "list"],
            &["history"],
            &["pause"],
            &["status"],
        ] {
            let out = cli.run(args);
            out.assert_code(2)
                .assert_mentions(says)
                .assert_mentions(&cli.config_path().display().to_string());
        }
    }
}

#[test]
fn a_bad_value_in_the_config_file_is_repaired_by_the_command_its_message_gives() {
    let env = KeyringEnv::new();
    let isp = FakeIsp::start(Script::EtrnOk);
    let cli = Cli::new(&env);
    setup(&cli, isp.port(), &["alpha.test"]);
    let good = cli.config_text();
    // `account set` wrote the whole config, every key with its value.
    assert!(good.contains("reply-timeout = 60"), "{good}");
    cli.write_config(&good.replace("reply-timeout = 60", "reply-timeout = 0"));
    let out = cli.run(&["fetch"]);
    out.assert_code(2)
        .assert_mentions("reply-timeout: 0 is out of range: use from 1 to 3600");
    let fix = fix_line(&out);
    assert!(fix.ends_with(" config unset reply-timeout"), "{fix}");
    run_fix(&env, &cli, &fix).assert_success();
    assert!(
        cli.config_text().contains("reply-timeout = 60"),
        "{}",
        cli.config_text()
    );
    cli.run(&["fetch"]).assert_success();
    // `config set` of the broken key repairs the file as well; another key does not.
    cli.write_config(&good.replace("idle-timeout = 1", "idle-timeout = 0"));
    cli.run(&["config", "set", "max-wait", "20"])
        .assert_code(2)
        .assert_mentions("idle-timeout");
    cli.run(&["config", "set", "idle-timeout", "2"])
        .assert_success();
    cli.run(&["fetch"]).assert_success();
}

#[test]
fn an_unknown_account_is_exit_2() {
    let env = KeyringEnv::new();
    let isp = FakeIsp::start(Script::EtrnOk);
    let cli = Cli::new(&env);
    setup(&cli, isp.port(), &["alpha.test"]);
    for args in [
        &["fetch", "nosuch"][..],
        &["check", "nosuch"],
        &["account", "show", "nosuch"],
        &["account", "edit", "nosuch", "--port", "25"],
        &["account", "remove", "nosuch"],
    ] {
        cli.run(args)
            .assert_code(2)
            .assert_mentions("no account \"nosuch\"");
    }
    assert_eq!(isp.connections(), 0);
    // Bad usage is 2 as well.
    cli.run(&["fetch", "--no-such-flag"]).assert_code(2);
    cli.run(&["frobnicate"]).assert_code(2);
}

#[test]
fn an_operation_that_ran_and_failed_is_exit_1_and_success_is_0() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(IspOptions::new(&["alpha.test"], lp));
    let cli = Cli::new(&env);
    cli.write_config(&format!(
        "hostname = \"client.test\"\nlisten = \"127.0.0.1:{lp}\"\nmaildir = \"{}\"\nidle-timeout = 1\nmax-wait = 30\n",
        env.root().join("Maildir").display()
    ));
    set_plain_account(&cli, "isp", isp.port(), &["alpha.test"]);
    // Every ETRN accepted, no mail waiting: success.
    cli.run(&["fetch"]).assert_success();
    cli.run(&["check", "isp"]).assert_success();
    cli.run(&["status"])
        .assert_code(3)
        .assert_mentions("running: no");
    // A domain the ISP does not hold: 459, the fetch ran and failed.
    set_plain_account(&cli, "isp", isp.port(), &["alpha.test", "unheld.test"]);
    cli.run(&["fetch"]).assert_code(1).assert_mentions("459");
    // Nobody at the ISP's port.
    let closed = mailcall_e2e::free_port();
    set_plain_account(&cli, "isp", closed, &["alpha.test"]);
    for args in [&["fetch"][..], &["check", "isp"]] {
        cli.run(args)
            .assert_code(1)
            .assert_mentions("cannot connect");
    }
}
