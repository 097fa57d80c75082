//! The EHLO reply, parsed: the server's name, and each extension's keyword and line (`ETRN`, `ATRN`, `AUTH ...`, `STARTTLS`).

/// What an EHLO reply says about the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EhloReply {
    /// The first line: the server's name and greeting text.
    pub server: String,
    /// The upper-cased keyword of each extension line, in order.
    pub keywords: Vec<String>,
    /// The extension lines as sent, keyword and parameters.
    pub lines: Vec<String>,
}

impl EhloReply {
    /// Parses the text lines of a 250 EHLO reply (code and separator already removed).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut lines = lines.into_iter();
        let server = lines.next().unwrap_or_default().trim().to_owned();
        let mut reply = EhloReply {
            server,
            ..EhloReply::default()
        };
        for line in lines {
            let line = line.trim();
            let Some(keyword) = line.split_whitespace().next() else {
                continue;
            };
            // Old servers write `AUTH=LOGIN`; the keyword is what comes before `=`.
            let keyword = keyword.split('=').next().unwrap_or(keyword);
            reply.keywords.push(keyword.to_ascii_uppercase());
            reply.lines.push(line.to_owned());
        }
        reply
    }

    /// Whether the server lists `keyword` (case-insensitive).
    pub fn advertises(&self, keyword: &str) -> bool {
        self.keywords
            .iter()
            .any(|k| k.eq_ignore_ascii_case(keyword))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_etrn_among_extensions() {
        let reply = EhloReply::parse([
            "isp.example.test",
            "PIPELINING",
            "SIZE 10240000",
            "etrn",
            "AUTH PLAIN LOGIN",
            "AUTH=LOGIN",
            "",
            "STARTTLS",
        ]);
        assert_eq!(reply.server, "isp.example.test");
        assert_eq!(
            reply.keywords,
            ["PIPELINING", "SIZE", "ETRN", "AUTH", "AUTH", "STARTTLS"]
        );
        assert!(reply.advertises("ETRN"));
        assert!(reply.advertises("starttls"));
        assert!(!reply.advertises("ATRN"));
    }

    #[test]
    fn server_name_line_is_not_an_extension() {
        let reply = EhloReply::parse(["ETRN-less.example says hi"]);
        assert!(!reply.advertises("ETRN-LESS.EXAMPLE"));
        assert!(reply.keywords.is_empty());
        assert_eq!(EhloReply::parse([]), EhloReply::default());
    }
}
