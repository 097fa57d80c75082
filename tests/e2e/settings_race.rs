//! Settings are never lost to a race (issue 21 item 6): two `mailcall-cli` processes change the
//! same config file (routes) and the same account file (`account-store = file`) at once, each
//! many times; every change of each survives.

use mailcall_e2e::{Cli, KeyringEnv};

use crate::{set_plain_account, write_base_config};

/// Changes per writer.
const ROUNDS: usize = 12;

#[test]
fn two_processes_changing_the_settings_at_once_each_keep_every_change() {
    let env = KeyringEnv::new();
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.run(&["config", "set", "account-store", "file"])
        .assert_success();
    let maildir = env.root().join("routed");
    std::thread::scope(|s| {
        for writer in ["a", "b"] {
            let cli = &cli;
            let maildir = &maildir;
            s.spawn(move || {
                for i in 0..ROUNDS {
                    let destination = format!("maildir:{}/{writer}{i}", maildir.display());
                    cli.run(&[
                        "route",
                        "add",
                        &format!("{writer}{i}@example.org"),
                        &destination,
                    ])
                    .assert_success();
                    set_plain_account(cli, &format!("{writer}{i}"), 2525, &["example.org"]);
                }
            });
        }
    });
    let routes = cli.run(&["route", "list"]);
    routes.assert_success();
    let accounts = cli.run(&["account", "list"]);
    accounts.assert_success();
    let accounts_file =
        std::fs::read_to_string(cli.config_path().with_file_name("accounts.toml")).unwrap();
    let config = std::fs::read_to_string(cli.config_path()).unwrap();
    for writer in ["a", "b"] {
        for i in 0..ROUNDS {
            let name = format!("{writer}{i}");
            assert!(
                routes.stdout.contains(&format!("{name}@example.org")),
                "route {name} lost\n{}",
                routes.stdout
            );
            assert!(
                config.contains(&format!("\"{name}\"")),
                "account {name} lost from the config\n{config}"
            );
            assert!(
                accounts_file.contains(&format!("[accounts.{name}]")),
                "account {name} lost from accounts.toml\n{accounts_file}"
            );
        }
    }
    // No temporary file is left beside them.
    let dir = cli.config_path().parent().unwrap().to_path_buf();
    let stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}
