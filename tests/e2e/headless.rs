//! A machine without a keyring (a home server running the daemon, no desktop session, no
//! Secret Service at all): accounts live in `accounts.toml` beside the config
//! (`account-store = file`), which never holds a password; an account with AUTH gets its
//! password from a password command each time it connects. STARTTLS + AUTH against Postfix.

use std::time::Duration;

use mailcall_e2e::{Cli, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp};

use crate::{fetch, listener_port, write_base_config};

const USER: &str = "alice";
const PASSWORD: &str = "hEadless-pw-7";

#[test]
fn without_a_keyring_accounts_live_in_a_file_and_the_password_comes_from_a_command() {
    let env = KeyringEnv::without_secret_service();
    let lp = listener_port();
    let isp = PostfixIsp::start(
        IspOptions::new(&["alpha.test"], lp)
            .with_tls()
            .with_auth(USER, PASSWORD),
    );
    let mail: Vec<Message> = (0..3).map(|n| Message::numbered("alpha.test", n)).collect();
    isp.queue_all(&mail);
    isp.wait_deferred(mail.len(), Duration::from_secs(20));

    let cli = Cli::new(&env);
    write_base_config(&cli);
    // The keyring is not there at all: it says so, and names the way out.
    let keyring = cli.try_set_account(
        &mailcall_e2e::AccountArgs::new("isp", isp.port()).domains(&["alpha.test"]),
    );
    keyring
        .assert_code(2)
        .assert_mentions("keyring")
        .assert_mentions("account-store");
    cli.run(&["config", "set", "account-store", "file"])
        .assert_success();

    // A stand-in for `pass show isp`: a program that prints the password (here from a file
    // only root can read, as a password manager's store would be).
    let secret = env.root().join("secret");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    let command = format!("cat {}", secret.display());
    let port = isp.port().to_string();
    let ca = isp.ca_file().display().to_string();
    let set = [
        "account",
        "set",
        "isp",
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--security",
        "starttls",
        "--ca-file",
        &ca,
        "--user",
        USER,
        "--password-command",
        &command,
        "--domain",
        "alpha.test",
    ];
    let accounts_file = cli.config_path().with_file_name("accounts.toml");
    cli.run(&set)
        .assert_success()
        .assert_mentions(&format!("in {}", accounts_file.display()));
    // A password typed in is refused: the file never holds one.
    let typed = cli.run_with_stdin(
        &["account", "edit", "isp", "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    typed
        .assert_code(2)
        .assert_mentions("holds no passwords")
        .assert_mentions("password command");
    cli.run(&["account", "show", "isp"])
        .assert_success()
        .assert_mentions("password: from the command");

    let check = cli.run(&["check", "isp"]);
    check
        .assert_success()
        .assert_mentions("AUTH: yes")
        .assert_mentions("TLS: yes");
    let maildir = Maildir::new(env.root().join("Maildir"));
    let out = fetch(&cli, lp, maildir.path(), &[]);
    assert_eq!(out.code(), Some(0), "{out}\nISP maillog:\n{}", isp.log());
    let mut ids: Vec<String> = mail.iter().map(|m| m.message_id.clone()).collect();
    ids.sort();
    assert_eq!(maildir.message_ids(), ids, "{out}");

    // The password is in no file Mailcall wrote: not the accounts file, the config, the history.
    let accounts = env.root().join("accounts.toml");
    let text = std::fs::read_to_string(&accounts).unwrap();
    assert!(text.contains("password-command"), "{text}");
    for file in mailcall_e2e::files_under(env.root()) {
        if file == secret {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(PASSWORD),
            "the password is in {}",
            file.display()
        );
    }

    // A password command that fails says which, why, and what to change.
    std::fs::remove_file(&secret).unwrap();
    let out = fetch(&cli, lp, maildir.path(), &[]);
    out.assert_code(1)
        .assert_mentions("password command of account isp")
        .assert_mentions("--password-command");
}
