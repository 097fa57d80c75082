//! The CLI's words for the core's hints: a setting to change becomes the command line that
//! changes it, which works when typed as written (a unit test parses every one with clap).

use mailcall_core::hint::{AccountField, Problem, Setting};

/// The command that changes `setting` (placeholders in capitals where the value is the user's).
pub fn command_for(setting: &Setting) -> String {
    match setting {
        Setting::Config { key } => {
            let example = match key.as_str() {
                "listen" => "0.0.0.0:2525",
                "maildir" | "data-dir" => "/home/me/Maildir",
                "reply-timeout" => "120",
                "interfaces" => "'ppp*'",
                "tls-cert" | "tls-key" => "/etc/ssl/mailcall.pem",
                _ => "VALUE",
            };
            format!("mailcall-cli config set {key} {example}")
        }
        Setting::Account { account, field } => {
            let edit = format!("mailcall-cli account edit {account}");
            match field {
                AccountField::Name => "mailcall-cli account list".to_string(),
                AccountField::Mode => format!("{edit} --mode etrn"),
                AccountField::Host => format!("{edit} --host mail.isp.example --port 25"),
                AccountField::Port => format!("{edit} --port 587"),
                AccountField::Security => format!("{edit} --security starttls"),
                AccountField::User => format!("{edit} --user NAME --password-stdin"),
                AccountField::Password => {
                    format!("printf '%s\\n' \"$PASSWORD\" | {edit} --password-stdin")
                }
                AccountField::CaFile => format!("{edit} --ca-file /path/to/isp-ca.pem"),
                AccountField::Helo => format!("{edit} --helo mail.example.com"),
                AccountField::Domains => format!("{edit} --add-domain example.com"),
                AccountField::ConnectCommand => format!("{edit} --connect-command 'pon isp'"),
                AccountField::DisconnectCommand => {
                    format!("{edit} --disconnect-command 'poff isp'")
                }
                AccountField::LinkTimeout => format!("{edit} --link-timeout 120"),
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
        mailcall_core::trigger::split_command(cmd).expect("a hint splits into words")
    }

    #[test]
    fn every_hint_is_a_command_the_cli_takes() {
        let mut settings: Vec<Setting> = AccountField::ALL
            .iter()
            .map(|f| Setting::account("isp", *f))
            .collect();
        for key in mailcall_core::config::KEYS {
            settings.push(Setting::config(key.name));
        }
        for s in settings {
            let line = command_for(&s);
            let argv = words(&line);
            assert_eq!(argv[0], "mailcall-cli", "{line}");
            if let Err(e) = crate::Cli::try_parse_from(&argv) {
                panic!("the hint {line:?} for {s:?} does not parse: {e}");
            }
        }
    }
}
