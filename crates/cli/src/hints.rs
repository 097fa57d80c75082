//! The CLI's words for the core's hints: a setting to change becomes the command line that
//! changes it, which works when typed as written (a unit test parses every one with clap). A
//! run given `--config PATH` gets hints with the same `--config PATH`, so they change that file;
//! a record from a running Mailcall that uses another config file gets hints naming that one.

use std::path::Path;
use std::sync::RwLock;

use mailcall_core::account::Account;
use mailcall_core::config::ConfigKey;
use mailcall_core::fsutil::EXAMPLE_DIR;
use mailcall_core::hint::{AccountField, Problem, Setting};

/// `mailcall-cli --config PATH` once hints must name a config file; `None`: `mailcall-cli`.
static PROGRAM: RwLock<Option<String>> = RwLock::new(None);

/// Makes every later hint of this run name `config` (a full path): the file `--config` named,
/// or the one a running Mailcall uses when its record is shown.
pub fn set_config(config: &Path) {
    let program = format!(
        "mailcall-cli --config {}",
        shell_word(&config.display().to_string())
    );
    *PROGRAM.write().unwrap_or_else(|p| p.into_inner()) = Some(program);
}

/// The accounts of this run with a saved password of their own: (account, outgoing server's own
/// login). A hint that changes their server or CA file pipes the password in with it, since a
/// saved password never follows such a change (issue 21 §7).
static SAVED_PASSWORDS: RwLock<Vec<(String, bool)>> = RwLock::new(Vec::new());

/// Notes which of `accounts` have saved passwords, for the hints of this run.
pub fn note_saved_passwords<'a>(accounts: impl IntoIterator<Item = &'a Account>) {
    let mut saved = SAVED_PASSWORDS.write().unwrap_or_else(|p| p.into_inner());
    for a in accounts {
        if a.password.is_some() {
            saved.push((a.name.clone(), false));
        }
        if a.outgoing.as_ref().is_some_and(|o| o.password.is_some()) {
            saved.push((a.name.clone(), true));
        }
    }
}

fn has_saved_password(account: &str, outgoing: bool) -> bool {
    SAVED_PASSWORDS
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|(name, o)| name == account && *o == outgoing)
}

/// `mailcall-cli` as hints start it.
pub fn program() -> String {
    PROGRAM
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| "mailcall-cli".to_string())
}

/// `word` as one shell word: as it is when that is safe, else in single quotes.
pub fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The command that brings config key `key` back to its default.
pub fn unset_command(key: ConfigKey) -> String {
    format!("{} config unset {key}", program())
}

/// The command that changes `setting` (placeholders in capitals where the value is the user's).
pub fn command_for(setting: &Setting) -> String {
    let cli = program();
    match setting {
        Setting::Config {
            key: ConfigKey::Routes,
        } => {
            format!("{cli} route add PATTERN maildir:/home/me/Maildir")
        }
        Setting::Config { key } => {
            let example = match key {
                ConfigKey::UnknownRecipients => "catch-all",
                ConfigKey::Listen => "0.0.0.0:2525",
                ConfigKey::SubmitListen => "127.0.0.1:2587",
                ConfigKey::Maildir => "/home/me/Maildir",
                ConfigKey::DataDir => "/home/me/.local/share/mailcall",
                ConfigKey::ReplyTimeout => "120",
                ConfigKey::Interfaces => "'ppp*'",
                ConfigKey::TlsCert | ConfigKey::TlsKey => "/etc/ssl/mailcall.pem",
                _ => "VALUE",
            };
            format!("{cli} config set {key} {example}")
        }
        Setting::Account { account, field } => {
            let edit = format!("{cli} account edit {account}");
            // A new server or CA file needs the saved password again.
            let pipe = |outgoing: bool, change: String| match (
                has_saved_password(account, outgoing),
                outgoing,
            ) {
                (false, _) => change,
                (true, false) => {
                    format!("printf '%s\\n' \"$PASSWORD\" | {change} --password-stdin")
                }
                (true, true) => {
                    format!("printf '%s\\n' \"$PASSWORD\" | {change} --smarthost-password-stdin")
                }
            };
            match field {
                AccountField::Name => format!("{cli} account list"),
                AccountField::Mode => format!("{edit} --mode etrn"),
                AccountField::Host => {
                    pipe(false, format!("{edit} --host mail.isp.example --port 25"))
                }
                AccountField::Port => format!("{edit} --port 587"),
                AccountField::Security => format!("{edit} --security starttls"),
                AccountField::User => format!("{edit} --user NAME --password-stdin"),
                AccountField::PasswordCommand => {
                    format!("{edit} --password-command 'pass show {account}'")
                }
                AccountField::Password => {
                    format!("printf '%s\\n' \"$PASSWORD\" | {edit} --password-stdin")
                }
                AccountField::CaFile => pipe(
                    false,
                    format!(
                        "{edit} --ca-file {}",
                        Path::new(EXAMPLE_DIR).join("isp-ca.pem").display()
                    ),
                ),
                AccountField::Helo => format!("{edit} --helo mail.example.com"),
                AccountField::Domains => format!("{edit} --add-domain example.com"),
                AccountField::ConnectCommand => format!("{edit} --connect-command 'pon isp'"),
                AccountField::DisconnectCommand => {
                    format!("{edit} --disconnect-command 'poff isp'")
                }
                AccountField::LinkTimeout => format!("{edit} --link-timeout 120"),
                AccountField::OutgoingHost => pipe(
                    true,
                    format!("{edit} --smarthost smtp.isp.example --smarthost-security starttls"),
                ),
                AccountField::OutgoingPort => format!("{edit} --smarthost-port 587"),
                AccountField::OutgoingSecurity => format!("{edit} --smarthost-security starttls"),
                AccountField::OutgoingUser => {
                    format!("{edit} --smarthost-user NAME --smarthost-password-stdin")
                }
                AccountField::OutgoingPassword => {
                    format!("printf '%s\\n' \"$PASSWORD\" | {edit} --smarthost-password-stdin")
                }
                AccountField::OutgoingCaFile => pipe(
                    true,
                    format!(
                        "{edit} --smarthost-ca-file {}",
                        Path::new(EXAMPLE_DIR).join("smarthost-ca.pem").display()
                    ),
                ),
            }
        }
    }
}

/// A problem as the CLI prints it: the message, and on the next line the command that fixes it.
pub fn render(problem: &Problem) -> String {
    match &problem.fix {
        Some(fix) => format!("{problem}\n  to fix: {}", command_for(fix)),
        None => problem.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Splits a rendered command the way a shell would (enough for the commands above).
    fn words(line: &str) -> Vec<String> {
        let cmd = line.rsplit(" | ").next().unwrap_or(line);
        mailcall_core::user_command::split_command(cmd)
            .expect("a hint splits into words")
            .words()
    }

    #[test]
    fn config_paths_become_one_shell_word() {
        assert_eq!(
            shell_word("/home/me/.config/mailcall/config.toml"),
            "/home/me/.config/mailcall/config.toml"
        );
        assert_eq!(shell_word("/home/me/my config"), "'/home/me/my config'");
        assert_eq!(shell_word("/tmp/it's"), "'/tmp/it'\\''s'");
        let words = words(&format!(
            "mailcall-cli --config {} history",
            shell_word("/a b/it's")
        ));
        assert_eq!(words[2], "/a b/it's");
    }

    #[test]
    fn every_hint_is_a_command_the_cli_takes() {
        for s in Setting::every("isp") {
            let line = command_for(&s);
            let argv = words(&line);
            assert_eq!(argv[0], "mailcall-cli", "{line}");
            if let Err(e) = crate::Cli::try_parse_from(&argv) {
                panic!("the hint {line:?} for {s:?} does not parse: {e}");
            }
        }
    }
}
