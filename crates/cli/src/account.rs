//! `account set|list|show|remove`: ISP accounts in the OS keyring, their names in the config file.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use mailcall_core::account::{self, Account, DomainSpec, Secret, Security};
use mailcall_core::keystore::{AccountStore, OsKeyring};

use crate::failure::{Failure, Outcome};
use crate::settings;

/// The `account` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create or replace an account (all its settings; the domains given replace the old list).
    Set(SetArgs),
    /// List the accounts (passwords are never shown).
    List,
    /// Show one account's settings (the password is never shown).
    Show {
        /// The account.
        name: String,
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
    /// The ISP's mail server.
    #[arg(long)]
    host: String,
    /// Its port (default: 25, or 465 with --security tls).
    #[arg(long)]
    port: Option<u16>,
    /// none, starttls (default) or tls (implicit TLS).
    #[arg(long, default_value = "starttls")]
    security: Security,
    /// User name for SMTP AUTH (give the password with --password-stdin).
    #[arg(long)]
    user: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, requires = "user")]
    password_stdin: bool,
    /// A PEM file of CA certificates to trust for this ISP (for ISPs with their own CA).
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// The name to give in EHLO (default: this machine's host name).
    #[arg(long)]
    helo: Option<String>,
    /// A domain to release: example.com, @example.com (with subdomains) or #queue (Exim).
    #[arg(long = "domain", value_name = "D", required = true)]
    domains: Vec<String>,
}

/// Runs an `account` subcommand against the OS keyring.
pub fn run(explicit: Option<&Path>, cmd: AccountCommand) -> Outcome {
    let store = OsKeyring;
    match cmd {
        AccountCommand::Set(args) => set(explicit, &store, args),
        AccountCommand::List => list(explicit, &store),
        AccountCommand::Show { name } => show(&store, &name),
        AccountCommand::Remove { name } => remove(explicit, &store, &name),
    }
}

fn set(explicit: Option<&Path>, store: &dyn AccountStore, args: SetArgs) -> Outcome {
    account::validate_name(&args.name).map_err(Failure::setup)?;
    let (path, mut config) = settings::load(explicit)?;
    let host = args.host.trim().to_string();
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(Failure::setup(format!(
            "--host {:?} is not a host name or address",
            args.host
        )));
    }
    let mut domains: Vec<DomainSpec> = Vec::new();
    for d in &args.domains {
        let spec: DomainSpec = d.parse().map_err(Failure::setup)?;
        if !domains.contains(&spec) {
            domains.push(spec);
        }
    }
    let ca_file = match args.ca_file {
        Some(p) => Some(std::fs::canonicalize(&p).map_err(|e| {
            Failure::setup(format!(
                "cannot read the CA file {}: {e}. Give the path of the ISP's CA certificate (PEM)",
                p.display()
            ))
        })?),
        None => None,
    };
    if let Some(helo) = &args.helo {
        if helo.is_empty()
            || !helo
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
        {
            return Err(Failure::setup(format!(
                "--helo {helo:?} is not a host name: use e.g. mail.example.com"
            )));
        }
    }
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Failure::setup(format!("cannot read the password from standard input: {e}"))
        })?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            return Err(Failure::setup(
                "--password-stdin read an empty password: pipe the password in, e.g. `printf '%s\\n' \"$PW\" | mailcall-cli account set ...`",
            ));
        }
        Some(Secret::new(pw))
    } else if let Some(user) = &args.user {
        // Changing other settings must not force re-typing the password of the same user.
        match store.load(&args.name) {
            Ok(old) if old.username.as_deref() == Some(user) && old.password.is_some() => {
                old.password
            }
            Ok(_) | Err(mailcall_core::keystore::KeystoreError::NotFound(_)) => {
                return Err(Failure::setup(format!(
                    "--user {user} needs a password: add --password-stdin and pipe the password in"
                )))
            }
            Err(e) => return Err(Failure::setup(e)),
        }
    } else {
        None
    };
    let account = Account {
        name: args.name.clone(),
        port: args.port.unwrap_or_else(|| args.security.default_port()),
        host,
        security: args.security,
        username: args.user,
        password,
        helo: args.helo,
        ca_file,
        domains,
    };
    if account.security == Security::None && account.username.is_some() {
        eprintln!(
            "warning: account {} has a user name but --security none: Mailcall never sends a password unencrypted, so fetch will stop before AUTH. Use --security starttls or tls",
            account.name
        );
    }
    // Keyring first: if it fails, the config file still matches what the keyring holds.
    store.save(&account).map_err(Failure::setup)?;
    if config.add_account(&account.name) {
        config.save(&path).map_err(Failure::setup)?;
    }
    println!(
        "saved account {} ({} domain(s)) in the keyring",
        account.name,
        account.domains.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// One line describing an account, without its password.
pub fn describe(a: &Account) -> String {
    format!(
        "{}  {}:{}  {}  user={}  password={}  domains={}",
        a.name,
        a.host,
        a.port,
        a.security,
        a.username.as_deref().unwrap_or("-"),
        if a.password.is_some() { "set" } else { "none" },
        a.domains
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

fn list(explicit: Option<&Path>, store: &dyn AccountStore) -> Outcome {
    let (path, config) = settings::load(explicit)?;
    if config.accounts.is_empty() {
        println!(
            "no accounts in {}; add one with `mailcall-cli account set NAME --host HOST --domain DOMAIN`",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for name in &config.accounts {
        match store.load(name) {
            Ok(a) => println!("{}", describe(&a)),
            Err(e) if e.is_unavailable() => return Err(Failure::setup(e)),
            Err(e) => {
                failed = true;
                println!("{name}  (unreadable: {e})");
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn show(store: &dyn AccountStore, name: &str) -> Outcome {
    let a = store.load(name).map_err(Failure::setup)?;
    println!("name: {}", a.name);
    println!("host: {}", a.host);
    println!("port: {}", a.port);
    println!("security: {}", a.security);
    println!("user: {}", a.username.as_deref().unwrap_or("-"));
    println!(
        "password: {}",
        if a.password.is_some() { "set" } else { "none" }
    );
    println!("helo: {}", a.helo.as_deref().unwrap_or("-"));
    println!(
        "ca-file: {}",
        a.ca_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into())
    );
    for d in &a.domains {
        println!("domain: {d}");
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(explicit: Option<&Path>, store: &dyn AccountStore, name: &str) -> Outcome {
    let (path, mut config) = settings::load(explicit)?;
    let in_keyring = store.remove(name).map_err(Failure::setup)?;
    let in_config = config.remove_account(name);
    if in_config {
        config.save(&path).map_err(Failure::setup)?;
    }
    if !in_keyring && !in_config {
        return Err(Failure::failed(format!(
            "there is no account {name:?}; see `mailcall-cli account list`"
        )));
    }
    println!("removed account {name}");
    Ok(ExitCode::SUCCESS)
}
