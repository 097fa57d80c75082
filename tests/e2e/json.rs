//! `--json` for scripts: `fetch`, `check`, `account list/show`, `config show` and `status` each
//! print one JSON document that parses, carries what the text output says, and never a password.

use std::time::Duration;

use mailcall_e2e::{AccountArgs, Cli, IspOptions, KeyringEnv, Maildir, Message, PostfixIsp};

use crate::{listener_port, write_base_config, IDLE};

const PASSWORD: &str = "json-pw-Q4";

fn json(out: &mailcall_e2e::CliOutput) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{out}"))
}

#[test]
fn every_json_output_parses_and_none_carries_the_password() {
    let env = KeyringEnv::new();
    let lp = listener_port();
    let isp = PostfixIsp::start(
        IspOptions::new(&["alpha.test"], lp)
            .with_tls()
            .with_auth("alice", PASSWORD),
    );
    isp.queue_all(&[Message::numbered("alpha.test", 0)]);
    isp.wait_deferred(1, Duration::from_secs(20));
    let cli = Cli::new(&env);
    write_base_config(&cli);
    cli.set_account(
        &AccountArgs::new("isp", isp.port())
            .security("starttls")
            .user("alice", PASSWORD)
            .ca_file(&isp.ca_file())
            .domains(&["alpha.test"]),
    );

    let list = cli.run(&["account", "list", "--json"]);
    list.assert_success();
    let accounts = json(&list);
    assert_eq!(accounts[0]["name"], "isp", "{list}");
    assert_eq!(accounts[0]["password"], "set", "{list}");
    let show = cli.run(&["account", "show", "isp", "--json"]);
    assert_eq!(json(&show)["host"], "127.0.0.1", "{show}");

    let config = cli.run(&["config", "show", "--json"]);
    let config_json = json(&config);
    assert_eq!(config_json["idle-timeout"], 30, "{config}");
    assert!(config_json["config-file"].as_str().is_some(), "{config}");

    let status = cli.run(&["status", "--json"]);
    status.assert_code(3);
    assert_eq!(json(&status)["running"], false, "{status}");

    let check = cli.run(&["check", "isp", "--json"]);
    check.assert_success();
    let checked = json(&check);
    assert_eq!(checked["etrn_advertised"], true, "{check}");
    assert_eq!(checked["server"]["tls"], true, "{check}");
    assert!(checked["error"].is_null(), "{check}");

    let maildir = Maildir::new(env.root().join("Maildir"));
    let listen = format!("127.0.0.1:{lp}");
    let md = maildir.path().display().to_string();
    let fetch = cli.run(&[
        "fetch",
        "--json",
        "--listen",
        &listen,
        "--maildir",
        &md,
        "--idle-timeout",
        IDLE,
    ]);
    fetch.assert_success();
    let record = json(&fetch);
    assert_eq!(
        record["messages"].as_array().map(Vec::len),
        Some(1),
        "{fetch}"
    );
    assert_eq!(record["domains"][0]["code"], 250, "{fetch}");

    for out in [&list, &show, &config, &status, &check, &fetch] {
        assert!(!out.stdout.contains(PASSWORD), "the password is in\n{out}");
    }
}
