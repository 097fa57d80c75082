//! Reading what the CLI stored: the files in a Maildir's `new/`, their Message-IDs, and whether
//! each file is complete (ends with the test body marker).

use std::fs;
use std::path::{Path, PathBuf};

use crate::smtp::BODY_END;

/// A Maildir the CLI delivers into.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

/// One file in `new/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The file.
    pub path: PathBuf,
    /// Its Message-ID header value (with brackets), if it has one.
    pub message_id: Option<String>,
    /// Whether the content ends with [`BODY_END`] (trailing line breaks aside).
    pub complete: bool,
    /// Size in bytes.
    pub size: usize,
}

impl Maildir {
    /// The Maildir at `root` (it need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The Maildir's root.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The files in `sub` (`new`, `cur` or `tmp`); empty when the dir does not exist.
    pub fn files(&self, sub: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = match fs::read_dir(self.root.join(sub)) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Every message in `new/`, parsed.
    pub fn new_messages(&self) -> Vec<StoredMessage> {
        self.files("new")
            .into_iter()
            .map(|path| {
                let bytes = fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
                let text = String::from_utf8_lossy(&bytes);
                StoredMessage {
                    message_id: header(&text, "message-id"),
                    complete: text.trim_end_matches(['\r', '\n']).ends_with(BODY_END),
                    size: bytes.len(),
                    path,
                }
            })
            .collect()
    }

    /// The sorted Message-IDs in `new/` (duplicates kept, so a double delivery shows).
    pub fn message_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .new_messages()
            .into_iter()
            .filter_map(|m| m.message_id)
            .collect();
        ids.sort();
        ids
    }
}

/// The first `name:` header's value (case-insensitive; folded lines joined), from the header
/// block only (up to the first empty line).
pub fn header(text: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case(name) {
                found = Some(v.trim().to_string());
            }
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::header;

    #[test]
    fn finds_headers_case_insensitively_and_only_in_the_header_block() {
        let text = "Received: from x\r\n\tby y\r\nmessage-id: <a@b>\r\nSubject: s\r\n\r\nMessage-ID: <body@x>\r\n";
        assert_eq!(header(text, "Message-ID").as_deref(), Some("<a@b>"));
        assert_eq!(header(text, "received").as_deref(), Some("from x by y"));
        assert_eq!(header(text, "To"), None);
        assert_eq!(header("\r\nMessage-ID: <x>\r\n", "message-id"), None);
    }
}
