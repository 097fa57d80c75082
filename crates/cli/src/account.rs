//! `account set|edit|list|show|remove`: ISP accounts in the OS keyring, their names in the
//! config file. The rules are the core's ([`Account::check`]); this file maps flags to fields
//! and the core's field names back to flags.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mailcall_core::account::{Account, DomainSpec, FetchMode, LinkSettings, Secret, Security};
use mailcall_core::control;
use mailcall_core::hint::AccountField;
use mailcall_core::keystore::{self, AccountStore, KeystoreError};
use mailcall_core::mailcall::{Mailcall, MailcallError};

use crate::failure::{Failure, Outcome};
use crate::output::{runtime, say};
use crate::settings;
use crate::smarthost_args::{EditSmarthost, SetSmarthost};

/// The `account` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create or replace an account (all its settings; the domains given replace the old list).
    Set(Box<SetArgs>),
    /// Change some settings of an account; what is not given stays as it is.
    Edit(Box<EditArgs>),
    /// List the accounts (passwords are never shown).
    List {
        /// One JSON array of the accounts (without passwords).
        #[arg(long)]
        json: bool,
    },
    /// Show one account's settings (the password is never shown).
    Show {
        /// The account.
        name: String,
        /// One JSON object (without the password).
        #[arg(long)]
        json: bool,
    },
    /// Remove an account from the keyring and the config file.
    Remove {
        /// The account.
        name: String,
    },
}

/// Arguments of `account set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The account's name (letters, digits, '-', '_', '.').
    name: String,
    /// How mail is fetched: etrn (default; the ISP connects to Mailcall's listener) or odmr
    /// (ATRN, RFC 2645: Mailcall connects and the ISP delivers on that connection; needs --user,
    /// works behind NAT and without port 25).
    #[arg(long, default_value = "etrn")]
    mode: FetchMode,
    /// The ISP's mail server.
    #[arg(long)]
    host: String,
    /// Its port (default: 25, or 465 with --security tls; 366 with --mode odmr).
    #[arg(long)]
    port: Option<u16>,
    /// none, starttls (default) or tls (implicit TLS).
    #[arg(long, default_value = "starttls")]
    security: Security,
    /// User name for SMTP AUTH (give the password with --password-stdin).
    #[arg(long)]
    user: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, requires = "user", conflicts_with = "password_command")]
    password_stdin: bool,
    /// Instead of a stored password, run this command (no shell) each time Mailcall connects and
    /// use the first line it prints, e.g. "pass show isp" (for machines without a keyring).
    #[arg(long, value_name = "COMMAND", requires = "user")]
    password_command: Option<String>,
    /// A PEM file of CA certificates to trust for this ISP (for ISPs with their own CA).
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// The name to give in EHLO (default: this machine's host name).
    #[arg(long)]
    helo: Option<String>,
    /// A domain to release: example.com, @example.com (with subdomains) or #queue (Exim).
    #[arg(long = "domain", value_name = "D", required = true)]
    domains: Vec<String>,
    /// Run before a manual fetch when no watched interface is up, e.g. "pon isp" (no shell:
    /// write "sh -c '...'" for one).
    #[arg(long, value_name = "COMMAND")]
    connect_command: Option<String>,
    /// Run after the fetch when the connect command brought the link up, e.g. "poff isp".
    #[arg(long, value_name = "COMMAND")]
    disconnect_command: Option<String>,
    /// Seconds to wait for the link after the connect command (default 60).
    #[arg(long, value_name = "SECS")]
    link_timeout: Option<u64>,
    #[command(flatten)]
    smarthost: SetSmarthost,
}

/// Arguments of `account edit`: each one given changes that setting only.
#[derive(Debug, Args)]
pub struct EditArgs {
    /// The account to change.
    name: String,
    /// etrn or odmr; the port follows when it was the old mode's default.
    #[arg(long)]
    mode: Option<FetchMode>,
    /// The ISP's mail server.
    #[arg(long)]
    host: Option<String>,
    /// Its port.
    #[arg(long)]
    port: Option<u16>,
    /// none, starttls or tls; the port follows when it was the old mode's default.
    #[arg(long)]
    security: Option<Security>,
    /// User name for SMTP AUTH (a new user needs --password-stdin).
    #[arg(long, conflicts_with = "no_user")]
    user: Option<String>,
    /// Remove the user name and password (no AUTH).
    #[arg(long)]
    no_user: bool,
    /// Read a new password from the first line of standard input (replaces a password command).
    #[arg(long, conflicts_with_all = ["no_user", "password_command"])]
    password_stdin: bool,
    /// Get the password from this command (no shell) each time Mailcall connects, instead of a
    /// stored one, e.g. "pass show isp".
    #[arg(long, value_name = "COMMAND", conflicts_with = "no_user")]
    password_command: Option<String>,
    /// A PEM file of CA certificates to trust for this ISP.
    #[arg(long, value_name = "PATH", conflicts_with = "no_ca_file")]
    ca_file: Option<PathBuf>,
    /// Trust only the system's CAs again.
    #[arg(long)]
    no_ca_file: bool,
    /// The name to give in EHLO.
    #[arg(long, conflicts_with = "no_helo")]
    helo: Option<String>,
    /// Give this machine's host name in EHLO again.
    #[arg(long)]
    no_helo: bool,
    /// Add a domain (example.com, @example.com or #queue).
    #[arg(long, value_name = "D")]
    add_domain: Vec<String>,
    /// Remove a domain, as it is listed.
    #[arg(long, value_name = "D")]
    remove_domain: Vec<String>,
    /// The command that brings the link up.
    #[arg(long, value_name = "COMMAND", conflicts_with = "no_connect_command")]
    connect_command: Option<String>,
    /// No connect command.
    #[arg(long)]
    no_connect_command: bool,
    /// The command that brings the link down after a fetch.
    #[arg(long, value_name = "COMMAND", conflicts_with = "no_disconnect_command")]
    disconnect_command: Option<String>,
    /// No disconnect command.
    #[arg(long)]
    no_disconnect_command: bool,
    /// Seconds to wait for the link after the connect command.
    #[arg(long, value_name = "SECS", conflicts_with = "no_link_timeout")]
    link_timeout: Option<u64>,
    /// The default wait for the link (60 s) again.
    #[arg(long)]
    no_link_timeout: bool,
    #[command(flatten)]
    smarthost: EditSmarthost,
}

/// Runs an `account` subcommand against the account store the config names (`account-store`).
pub fn run(explicit: Option<&Path>, cmd: AccountCommand) -> Outcome {
    let (path, config) = settings::load(explicit)?;
    let store = keystore::for_config(&config, &path);
    let store = store.as_ref();
    match cmd {
        AccountCommand::Set(args) => set(explicit, store, *args),
        AccountCommand::Edit(args) => edit(explicit, store, *args),
        AccountCommand::List { json } => list(explicit, store, json),
        AccountCommand::Show { name, json } => show(store, &name, json),
        AccountCommand::Remove { name } => remove(explicit, store, &name),
    }
}

/// The flag that sets a field, for messages.
pub fn flag(field: AccountField) -> &'static str {
    match field {
        AccountField::Name => "NAME",
        AccountField::Mode => "--mode",
        AccountField::Host => "--host",
        AccountField::Port => "--port",
        AccountField::Security => "--security",
        AccountField::User => "--user",
        AccountField::Password => "--password-stdin",
        AccountField::PasswordCommand => "--password-command",
        AccountField::CaFile => "--ca-file",
        AccountField::Helo => "--helo",
        AccountField::Domains => "--domain",
        AccountField::ConnectCommand => "--connect-command",
        AccountField::DisconnectCommand => "--disconnect-command",
        AccountField::LinkTimeout => "--link-timeout",
        AccountField::OutgoingHost => "--smarthost",
        AccountField::OutgoingPort => "--smarthost-port",
        AccountField::OutgoingSecurity => "--smarthost-security",
        AccountField::OutgoingUser => "--smarthost-user",
        AccountField::OutgoingPassword => "--smarthost-password-stdin",
        AccountField::OutgoingCaFile => "--smarthost-ca-file",
    }
}

fn read_password() -> Result<Secret, Failure> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        Failure::setup(format!("cannot read the password from standard input: {e}"))
    })?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    if pw.is_empty() {
        return Err(Failure::setup(
            "--password-stdin read an empty password: pipe the password in, e.g. `printf '%s\\n' \"$PW\" | mailcall-cli account edit NAME --password-stdin`",
        ));
    }
    Ok(Secret::new(pw))
}

fn domains(given: &[String]) -> Result<Vec<DomainSpec>, Failure> {
    let mut out: Vec<DomainSpec> = Vec::new();
    for d in given {
        let spec: DomainSpec = d
            .parse()
            .map_err(|e| Failure::setup(format!("--domain: {e}")))?;
        if !out.contains(&spec) {
            out.push(spec);
        }
    }
    Ok(out)
}

/// A CA file given on the command line, made a full path (relative to where the command runs).
fn ca_path(p: PathBuf) -> Result<PathBuf, Failure> {
    std::fs::canonicalize(&p).map_err(|e| {
        Failure::setup(format!(
            "--ca-file: cannot read {}: {e}. Give the path of the ISP's CA certificate (PEM)",
            p.display()
        ))
    })
}

fn stored(store: &dyn AccountStore, name: &str) -> Result<Option<Account>, Failure> {
    match store.load(name) {
        Ok(a) => Ok(Some(a)),
        Err(KeystoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(Failure::setup(e)),
    }
}

fn set(explicit: Option<&Path>, store: &dyn AccountStore, args: SetArgs) -> Outcome {
    let (path, config) = settings::load(explicit)?;
    let old = stored(store, &args.name)?;
    let password = if args.password_stdin {
        Some(read_password()?)
    } else if args.password_command.is_some() {
        None
    } else {
        // Changing other settings must not force re-typing the password of the same user;
        // a new server or CA file does (issue 21 §7).
        let kept = old
            .as_ref()
            .filter(|o| o.username.is_some() && o.username == args.user && o.password.is_some());
        if let Some(o) = kept {
            let ca_file = args.ca_file.clone().map(ca_path).transpose()?;
            let mut after = o.clone();
            after.host = args.host.trim().to_string();
            after.ca_file = ca_file;
            password_must_follow(o, &after)?;
        }
        kept.and_then(|o| o.password.clone())
    };
    let password_command = args.password_command.or_else(|| {
        old.as_ref()
            .filter(|o| password.is_none() && o.username.is_some() && o.username == args.user)
            .and_then(|o| o.password_command.clone())
    });
    let outgoing = args.smarthost.server(old.as_ref(), read_password)?;
    let account = Account {
        name: args.name.clone(),
        mode: args.mode,
        host: args.host.trim().to_string(),
        port: args
            .port
            .unwrap_or_else(|| args.mode.default_port(args.security)),
        security: args.security,
        username: args.user,
        password,
        password_command,
        helo: args.helo,
        ca_file: args.ca_file.map(ca_path).transpose()?,
        domains: domains(&args.domains)?,
        link: LinkSettings {
            connect_command: args.connect_command,
            disconnect_command: args.disconnect_command,
            link_timeout: args.link_timeout,
        },
        outgoing,
    };
    save(&path, config, store, &account)
}

fn edit(explicit: Option<&Path>, store: &dyn AccountStore, args: EditArgs) -> Outcome {
    let (path, config) = settings::load(explicit)?;
    let Some(mut a) = stored(store, &args.name)? else {
        return Err(Failure::setup(format!(
            "there is no account {:?}: create it with `mailcall-cli account set {} --host HOST --domain DOMAIN`",
            args.name, args.name
        )));
    };
    let before = a.clone();
    let new_password = args.password_stdin;
    if let Some(host) = args.host {
        a.host = host.trim().to_string();
    }
    // A port that was the old default follows a new mode or security (25 <-> 465, 25 <-> 366).
    let was_default = a.port == a.default_port();
    if let Some(mode) = args.mode {
        a.mode = mode;
    }
    if let Some(security) = args.security {
        a.security = security;
    }
    if args.port.is_none() && was_default {
        a.port = a.default_port();
    }
    if let Some(port) = args.port {
        a.port = port;
    }
    if args.no_user {
        a.username = None;
        a.password = None;
        a.password_command = None;
    }
    if let Some(user) = args.user {
        if a.username.as_deref() != Some(&user) {
            a.password = None;
        }
        a.username = Some(user);
    }
    if args.password_stdin {
        a.password = Some(read_password()?);
        a.password_command = None;
    }
    if let Some(cmd) = args.password_command {
        a.password_command = Some(cmd);
        a.password = None;
    }
    if args.no_ca_file {
        a.ca_file = None;
    }
    if let Some(p) = args.ca_file {
        a.ca_file = Some(ca_path(p)?);
    }
    if args.no_helo {
        a.helo = None;
    }
    if let Some(h) = args.helo {
        a.helo = Some(h);
    }
    for d in domains(&args.remove_domain)? {
        if !a.domains.contains(&d) {
            return Err(Failure::setup(format!(
                "--remove-domain {d}: account {} has no such domain (it has {})",
                a.name,
                a.domains
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        a.domains.retain(|x| x != &d);
    }
    for d in domains(&args.add_domain)? {
        if !a.domains.contains(&d) {
            a.domains.push(d);
        }
    }
    let link = &mut a.link;
    if args.no_connect_command {
        link.connect_command = None;
    }
    if let Some(c) = args.connect_command {
        link.connect_command = Some(c);
    }
    if args.no_disconnect_command {
        link.disconnect_command = None;
    }
    if let Some(c) = args.disconnect_command {
        link.disconnect_command = Some(c);
    }
    if args.no_link_timeout {
        link.link_timeout = None;
    }
    if let Some(t) = args.link_timeout {
        link.link_timeout = Some(t);
    }
    if !new_password && a.password.is_some() {
        password_must_follow(&before, &a)?;
    }
    args.smarthost.apply(&mut a, read_password)?;
    save(&path, config, store, &a)
}

/// Issue 21 §7: a saved password goes only to the server, and over a connection checked against
/// the CA file, it was saved for. A change of either needs the password again, given with the
/// same command (`--password-stdin`); nothing is saved until then.
fn password_must_follow(before: &Account, after: &Account) -> Result<(), Failure> {
    if before.password_follows(
        &after.host,
        after.ca_file.as_deref(),
        after.username.as_deref(),
    ) {
        return Ok(());
    }
    let was = match &before.ca_file {
        Some(ca) => format!(
            "{} (checked against the CA file {})",
            before.host,
            ca.display()
        ),
        None => format!("{} (checked against the system's CAs)", before.host),
    };
    Err(Failure::setup(format!(
        "account {}: its password was saved for {was}; Mailcall never sends a saved password to another server, or over a connection checked against other CAs. Nothing was changed. Give the password again with the change\n  to fix: {}",
        before.name,
        again_with("--password-stdin")
    )))
}

/// This run's command line as typed, with the password piped in through `flag`.
pub fn again_with(flag: &str) -> String {
    let words: Vec<String> = std::env::args()
        .skip(1)
        .map(|w| crate::hints::shell_word(&w))
        .collect();
    format!(
        "printf '%s\\n' \"$PASSWORD\" | mailcall-cli {} {flag}",
        words.join(" ")
    )
}

/// Checks the account with the core's rules, saves it (keyring first, then the config's list of
/// names) and tells a running instance.
fn save(
    path: &Path,
    _loaded: mailcall_core::config::Config,
    store: &dyn AccountStore,
    account: &Account,
) -> Outcome {
    let problems = account.check();
    if !problems.is_empty() {
        let lines: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", flag(p.field), p.problem))
            .collect();
        return Err(Failure::setup(format!(
            "account {} is not saved:\n  {}",
            account.name,
            lines.join("\n  ")
        )));
    }
    // Keyring first: if it fails, the config file still matches what the keyring holds.
    store.save(account).map_err(Failure::setup)?;
    // Added to the file as it is now, under its lock: a change made meanwhile is kept.
    mailcall_core::config::Config::update(path, |c| {
        Ok::<_, mailcall_core::config::ConfigError>(c.add_account(&account.name))
    })
    .map_err(Failure::setup)?;
    say!(
        "saved account {} ({} domain(s)) in {}",
        account.name,
        account.domains.len(),
        store.place()
    );
    tell_running();
    Ok(ExitCode::SUCCESS)
}

/// Asks a running daemon or tray to read its accounts again; says so when one did.
pub fn tell_running() {
    let Ok(socket) = control::default_socket_path() else {
        return;
    };
    let Ok(rt) = runtime() else { return };
    let asked = rt.block_on(async { Mailcall::connect(socket).await?.reload().await });
    match asked {
        Ok(skipped) => {
            say!("the running Mailcall has read its accounts again");
            for s in skipped {
                eprintln!("warning: the running Mailcall skipped {s}");
            }
        }
        Err(MailcallError::Remote(e)) if e.is_not_running() => {}
        Err(e) => eprintln!("warning: could not tell the running Mailcall: {e}"),
    }
}

/// The account as JSON for scripts: every setting, and whether it has a password — never the
/// password itself.
pub fn account_json(a: &Account) -> serde_json::Value {
    let mut value = serde_json::to_value(a).unwrap_or(serde_json::Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("password");
        let state = match (&a.password, &a.password_command) {
            (Some(_), _) => "set",
            (None, Some(_)) => "command",
            (None, None) => "none",
        };
        object.insert("password".into(), state.into());
        if let (Some(out), Some(o)) = (
            object.get_mut("outgoing").and_then(|v| v.as_object_mut()),
            &a.outgoing,
        ) {
            let own = if o.password.is_some() {
                "set"
            } else {
                "account"
            };
            out.insert("password".into(), own.into());
        }
    }
    value
}

/// Whether and how the account has a password, never the password itself.
fn password_state(a: &Account) -> String {
    match (&a.password, &a.password_command) {
        (Some(_), _) => "set".into(),
        (None, Some(cmd)) => format!("from the command {cmd:?}"),
        (None, None) => "none".into(),
    }
}

/// One line describing an account, without its password.
pub fn describe(a: &Account) -> String {
    let mut s = format!(
        "{}  {}  {}:{}  {}  user={}  password={}  domains={}",
        a.name,
        a.mode,
        a.host,
        a.port,
        a.security,
        a.username.as_deref().unwrap_or("-"),
        password_state(a),
        a.domains
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let l = &a.link;
    for (key, value) in [
        ("connect-command", &l.connect_command),
        ("disconnect-command", &l.disconnect_command),
    ] {
        if let Some(v) = value {
            s.push_str(&format!("  {key}={v:?}"));
        }
    }
    if let Some(t) = l.link_timeout {
        s.push_str(&format!("  link-timeout={t}"));
    }
    if let Some(o) = &a.outgoing {
        s.push_str(&format!("  smarthost={}:{} {}", o.host, o.port, o.security));
    }
    s
}

fn list(explicit: Option<&Path>, store: &dyn AccountStore, json: bool) -> Outcome {
    let (path, config) = settings::load(explicit)?;
    if json {
        let mut out = Vec::new();
        let mut failed = false;
        for name in &config.accounts {
            match store.load(name) {
                Ok(a) => out.push(account_json(&a)),
                Err(e) if e.is_unavailable() => return Err(Failure::setup(e)),
                Err(e) => {
                    failed = true;
                    out.push(serde_json::json!({"name": name, "error": e.to_string()}));
                }
            }
        }
        crate::output::print_json(&serde_json::Value::Array(out).to_string());
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    if config.accounts.is_empty() {
        say!(
            "no accounts in {}; add one with `mailcall-cli account set NAME --host HOST --domain DOMAIN`",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for name in &config.accounts {
        match store.load(name) {
            Ok(a) => say!("{}", describe(&a)),
            Err(e) if e.is_unavailable() => return Err(Failure::setup(e)),
            Err(e) => {
                failed = true;
                say!("{name}  (unreadable: {e})");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn show(store: &dyn AccountStore, name: &str, json: bool) -> Outcome {
    let a = store.load(name).map_err(Failure::setup)?;
    if json {
        crate::output::print_json(&account_json(&a).to_string());
        return Ok(ExitCode::SUCCESS);
    }
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    say!("name: {}", a.name);
    say!("mode: {}", a.mode);
    say!("host: {}", a.host);
    say!("port: {}", a.port);
    say!("security: {}", a.security);
    say!("user: {}", or_dash(a.username.clone()));
    say!("password: {}", password_state(&a));
    say!("helo: {}", or_dash(a.helo.clone()));
    say!(
        "ca-file: {}",
        or_dash(a.ca_file.as_ref().map(|p| p.display().to_string()))
    );
    for d in &a.domains {
        say!("domain: {d}");
    }
    say!(
        "connect-command: {}",
        or_dash(a.link.connect_command.clone())
    );
    say!(
        "disconnect-command: {}",
        or_dash(a.link.disconnect_command.clone())
    );
    say!("link-timeout: {}", a.link.link_timeout().as_secs());
    match &a.outgoing {
        None => say!("smarthost: -"),
        Some(o) => {
            say!("smarthost: {}:{} {}", o.host, o.port, o.security);
            say!(
                "smarthost-login: {}",
                match (&o.username, a.username.as_deref()) {
                    (Some(u), _) => format!("{u} (its own password)"),
                    (None, Some(u)) => format!("{u} (the account's login)"),
                    (None, None) => "none".into(),
                }
            );
            say!(
                "smarthost-ca-file: {}",
                o.ca_file
                    .as_ref()
                    .map_or_else(|| "the account's".into(), |p| p.display().to_string())
            );
            say!("smarthost-auth: {}", o.auth);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(explicit: Option<&Path>, store: &dyn AccountStore, name: &str) -> Outcome {
    let (path, _) = settings::load(explicit)?;
    let in_keyring = store.remove(name).map_err(Failure::setup)?;
    let in_config = mailcall_core::config::Config::update(&path, |c| {
        Ok::<_, mailcall_core::config::ConfigError>(c.remove_account(name))
    })
    .map_err(Failure::setup)?;
    if !in_keyring && !in_config {
        // A name that is not an account is a usage problem, as for show/edit/fetch (exit 2).
        return Err(Failure::setup(format!(
            "there is no account {name:?}; see `mailcall-cli account list`"
        )));
    }
    say!("removed account {name}");
    tell_running();
    Ok(ExitCode::SUCCESS)
}
