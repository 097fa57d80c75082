//! Accounts live in the Secret Service, only their names in the config file; without a
//! Secret Service the account commands stop with exit 2 and say what to do.

use std::path::Path;
use std::time::Duration;

use mailcall_e2e::{Cli, KeyringEnv};

use crate::write_base_config;

const PASSWORD: &str = "pw-Zq8-e2e-never-in-a-file";

fn set_isp(cli: &Cli, domains: &[&str]) -> mailcall_e2e::CliOutput {
    cli.set_account(
        &mailcall_e2e::AccountArgs::new("isp", 2525)
            .security("starttls")
            .user("alice", PASSWORD)
            .domains(domains),
    )
}

/// Files under `dir` (not under a directory or file named `skip`) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str, skip: &str) -> Vec<String> {
    mailcall_e2e::files_under(dir)
        .into_iter()
        .filter(|p| !p.components().any(|c| c.as_os_str() == skip))
        .filter(|p| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).contains(needle))
                .unwrap_or(false)
        })
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn account_lives_in_the_keyring_and_only_its_name_in_the_config() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    write_base_config(&cli);

    let out = set_isp(&cli, &["alpha.test", "beta.test"]);
    out.assert_mentions("saved account isp (2 domain(s)) in the keyring");

    let items = env.keyring_search(&[("service", "mailcall"), ("username", "isp")]);
    assert_eq!(
        items.len(),
        1,
        "one keyring item for the account: {items:#?}\n{out}"
    );
    assert_eq!(
        items[0].get("attribute.username").map(String::as_str),
        Some("isp")
    );
    let secret = env.keyring_secret("mailcall", "isp").unwrap_or_default();
    assert!(
        secret.contains(PASSWORD),
        "the password belongs in the keyring item"
    );
    assert!(
        secret.contains("beta.test"),
        "the item holds the account: {secret}"
    );

    let config = cli.config_text();
    assert!(
        config.contains("\"isp\""),
        "config lists the account:\n{config}"
    );
    assert!(
        !config.contains(PASSWORD),
        "password written to the config file"
    );
    // The keyring's own (encrypted) files aside, no file may hold the password.
    let leaks = files_containing(env.root(), PASSWORD, "keyrings");
    assert!(leaks.is_empty(), "password found in {leaks:?}");

    for args in [&["account", "list"][..], &["account", "show", "isp"][..]] {
        let out = cli.run(args);
        out.assert_success().assert_mentions("isp");
        assert!(
            !out.all_output().contains(PASSWORD),
            "password printed\n{out}"
        );
    }
    let list = cli.run(&["account", "list"]);
    list.assert_mentions("127.0.0.1:2525")
        .assert_mentions("user=alice")
        .assert_mentions("password=set")
        .assert_mentions("domains=alpha.test,beta.test");

    // Setting again replaces the whole domain list, in the same single item.
    set_isp(&cli, &["alpha.test"]);
    let list = cli.run(&["account", "list"]);
    list.assert_success().assert_mentions("domains=alpha.test");
    assert!(
        !list.stdout.contains("beta.test"),
        "old domain kept\n{list}"
    );
    let items = env.keyring_search(&[("service", "mailcall"), ("username", "isp")]);
    assert_eq!(items.len(), 1, "still one item: {items:#?}");

    let out = cli.run(&["account", "remove", "isp"]);
    out.assert_success().assert_mentions("removed account isp");
    let items = env.keyring_search(&[("service", "mailcall")]);
    assert!(items.is_empty(), "keyring item left behind: {items:#?}");
    let config = cli.config_text();
    assert!(
        !config.contains("\"isp\""),
        "config still lists it:\n{config}"
    );
    let list = cli.run(&["account", "list"]);
    list.assert_success();
    assert!(
        !list.stdout.contains("isp "),
        "removed account listed\n{list}"
    );
}

#[test]
fn without_a_secret_service_account_commands_exit_2_and_name_the_keyring() {
    let env = KeyringEnv::without_secret_service();
    let cli = Cli::new(&env);
    // An account name in the config, so `account list` must ask the keyring for it.
    cli.write_config("hostname = \"client.test\"\naccounts = [\"isp\"]\n");

    let list = cli.run(&["account", "list"]);
    list.assert_code(2).assert_mentions("keyring");
    let set =
        cli.try_set_account(&mailcall_e2e::AccountArgs::new("isp", 2525).domains(&["alpha.test"]));
    set.assert_code(2).assert_mentions("keyring");
    for out in [&list, &set] {
        assert!(
            out.elapsed < Duration::from_secs(30),
            "no Secret Service must fail fast\n{out}"
        );
        assert!(
            out.stderr.contains("error: "),
            "errors go to stderr as `error: ...`\n{out}"
        );
    }
}

#[test]
fn a_locked_keyring_fails_fast_with_exit_2_and_says_to_unlock_it() {
    let mut env = KeyringEnv::new();
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_isp(&cli, &["alpha.test"]);
    drop(cli);
    env.relock();
    let cli = Cli::new(&env);

    let list = cli.run(&["account", "list"]);
    list.assert_code(2)
        .assert_mentions("keyring")
        .assert_mentions("locked")
        .assert_mentions("unlock");
    assert!(
        list.elapsed < Duration::from_secs(30),
        "a locked keyring must fail, not hang\n{list}"
    );
    assert!(
        !list.stdout.contains(PASSWORD) && !list.stderr.contains(PASSWORD),
        "{list}"
    );
}

/// Issue 21 §7: a saved password never goes to a server it was not saved for. `account edit`
/// (and `account set`) with a new host or CA file and no new password changes nothing and says
/// so; the command it gives, typed as written with the password piped in, makes the change; the
/// outgoing server's own login is held to the same rule.
#[test]
fn a_new_host_or_ca_file_needs_the_saved_password_again() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    write_base_config(&cli);
    set_isp(&cli, &["alpha.test"]);
    let before = env.keyring_secret("mailcall", "isp").expect("saved");

    let out = cli.run(&["account", "edit", "isp", "--host", "mail.elsewhere.test"]);
    out.assert_code(2)
        .assert_mentions("password was saved for 127.0.0.1")
        .assert_mentions("Nothing was changed");
    assert_eq!(
        env.keyring_secret("mailcall", "isp").as_deref(),
        Some(before.as_str()),
        "a refused edit changed the account\n{out}"
    );
    let ca = env.root().join("isp-ca.pem");
    std::fs::write(&ca, "not read until a connection\n").expect("a CA file");
    let ca = ca.display().to_string();
    cli.run(&["account", "edit", "isp", "--ca-file", &ca])
        .assert_code(2)
        .assert_mentions("checked against the system's CAs");
    cli.run(&[
        "account",
        "set",
        "isp",
        "--host",
        "mail.elsewhere.test",
        "--port",
        "2525",
        "--security",
        "starttls",
        "--user",
        "alice",
        "--domain",
        "alpha.test",
    ])
    .assert_code(2)
    .assert_mentions("password was saved for 127.0.0.1");

    // The command given, typed as written: the change and the password together.
    let out = cli.run(&["account", "edit", "isp", "--host", "mail.elsewhere.test"]);
    let fix = crate::fix_line(&out);
    assert!(
        fix.starts_with("printf '%s\\n' \"$PASSWORD\" | mailcall-cli ")
            && fix.ends_with("account edit isp --host mail.elsewhere.test --password-stdin"),
        "{fix}"
    );
    crate::typed(&env, &fix, &[("PASSWORD", "the-new-one")]).assert_success();
    let after = env.keyring_secret("mailcall", "isp").expect("saved");
    assert!(
        after.contains("mail.elsewhere.test") && after.contains("the-new-one"),
        "the change and the new password are saved together"
    );
    // Nothing about the server changes: the password stays without being asked again.
    cli.run(&["account", "edit", "isp", "--add-domain", "beta.test"])
        .assert_success();
    assert!(env
        .keyring_secret("mailcall", "isp")
        .is_some_and(|s| s.contains("the-new-one")));

    // The outgoing server's own login: the same rule.
    cli.run_with_stdin(
        &[
            "account",
            "edit",
            "isp",
            "--smarthost",
            "smtp.one.test",
            "--smarthost-user",
            "out",
            "--smarthost-password-stdin",
        ],
        Some("smarthost-secret\n"),
    )
    .assert_success();
    let out = cli.run(&["account", "edit", "isp", "--smarthost", "smtp.two.test"]);
    out.assert_code(2)
        .assert_mentions("outgoing server's own password was saved for smtp.one.test");
    assert!(
        crate::fix_line(&out).ends_with("--smarthost smtp.two.test --smarthost-password-stdin"),
        "{out}"
    );
    cli.run_with_stdin(
        &[
            "account",
            "edit",
            "isp",
            "--smarthost",
            "smtp.two.test",
            "--smarthost-password-stdin",
        ],
        Some("smarthost-secret-2\n"),
    )
    .assert_success();
}
