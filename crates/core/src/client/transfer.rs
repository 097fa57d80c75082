//! Sending one message on an open connection: `MAIL FROM`, a `RCPT TO` per recipient, `DATA`
//! with the content dot-stuffed (RFC 5321 4.5.2), and the answer per recipient — after the
//! final dot LMTP (RFC 2033 4.2) replies once for every accepted recipient, in RCPT order,
//! SMTP once for all of them. The stuffer does no I/O; [`send`] drives it over a
//! [`Connection`].

use tokio::io::{AsyncRead, AsyncReadExt};

use super::reply::Reply;
use super::{Connection, Hello, IspError, ServerInfo};

/// How much message data is read and written at once.
const CHUNK: usize = 64 * 1024;

/// Dot-stuffs message data as it streams: a `.` starting a line is doubled; [`finish`] ends
/// the data with CRLF (when missing) and the terminating `.` line.
///
/// [`finish`]: DotStuffer::finish
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// Whether the next byte starts a line.
    at_line_start: bool,
    /// The last byte seen, to know whether the data ended with CRLF.
    last: Option<u8>,
    before_last: Option<u8>,
}

impl Default for DotStuffer {
    fn default() -> Self {
        DotStuffer {
            at_line_start: true,
            last: None,
            before_last: None,
        }
    }
}

impl DotStuffer {
    /// Appends the stuffed form of `data` to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        out.reserve(data.len() + data.len() / 64 + 1);
        for &b in data {
            if self.at_line_start && b == b'.' {
                out.push(b'.');
            }
            out.push(b);
            self.at_line_start = b == b'\n';
            self.before_last = self.last;
            self.last = Some(b);
        }
    }

    /// The bytes that end the data: CRLF if the content did not end with one, then `.` CRLF.
    pub fn finish(&self) -> &'static [u8] {
        match (self.before_last, self.last) {
            (_, None) | (Some(b'\r'), Some(b'\n')) => b".\r\n",
            _ => b"\r\n.\r\n",
        }
    }
}

/// Who the message is from and for.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// The reverse path (`MAIL FROM`), empty for a bounce.
    pub sender: &'a str,
    /// The forward paths, one `RCPT TO` each.
    pub recipients: &'a [String],
    /// The content's size in bytes (for `SIZE=` when the server offers it).
    pub size: u64,
}

/// What became of one transaction.
#[derive(Debug, Clone, Default)]
pub struct Transfer {
    /// Per recipient, in order: the server's last word on it — its RCPT reply when that was
    /// not positive, else the reply after the data — or `None` when the session broke first.
    pub replies: Vec<Option<Reply>>,
    /// Why the session broke, when it did; the connection is then unusable.
    pub error: Option<IspError>,
    /// Whether the whole message and its final dot went out: a recipient without a positive
    /// reply after that may still have been stored (a server stopping answers 421 to a
    /// transaction it has already saved — Dovecot does).
    pub data_sent: bool,
}

impl Transfer {
    fn all(n: usize, reply: &Reply) -> Vec<Option<Reply>> {
        vec![Some(reply.clone()); n]
    }
}

/// Sends one message on `conn`, a connection opened with `hello` to a server offering `info`,
/// reading the content from `data` (un-stuffed, CRLF line ends). Every reply is per recipient
/// in the result; a refused transaction leaves the connection ready for the next one.
pub async fn send<R: AsyncRead + Unpin>(
    conn: &mut Connection,
    hello: Hello,
    info: &ServerInfo,
    envelope: &Envelope<'_>,
    data: &mut R,
) -> Transfer {
    let n = envelope.recipients.len();
    let mut transfer = Transfer {
        replies: vec![None; n],
        error: None,
        data_sent: false,
    };
    let sent = &mut transfer.data_sent;
    match transact(
        conn,
        hello,
        info,
        envelope,
        data,
        &mut transfer.replies,
        sent,
    )
    .await
    {
        Ok(()) => {}
        Err(e) => transfer.error = Some(e),
    }
    transfer
}

async fn transact<R: AsyncRead + Unpin>(
    conn: &mut Connection,
    hello: Hello,
    info: &ServerInfo,
    envelope: &Envelope<'_>,
    data: &mut R,
    replies: &mut [Option<Reply>],
    data_sent: &mut bool,
) -> Result<(), IspError> {
    let mut mail = format!("MAIL FROM:<{}>", envelope.sender);
    if info.advertises("SIZE") {
        mail.push_str(&format!(" SIZE={}", envelope.size));
    }
    if info.advertises("8BITMIME") {
        mail.push_str(" BODY=8BITMIME");
    }
    let reply = conn.command(&mail, "the reply to MAIL FROM").await?;
    if !reply.is_positive() {
        fill(replies, &Transfer::all(replies.len(), &reply));
        return closing(conn, &reply).await;
    }
    let mut accepted = Vec::new();
    for (i, rcpt) in envelope.recipients.iter().enumerate() {
        let reply = conn
            .command(&format!("RCPT TO:<{rcpt}>"), "the reply to RCPT TO")
            .await?;
        if reply.code == 421 {
            replies[i] = Some(reply.clone());
            return closing(conn, &reply).await;
        }
        if reply.is_positive() {
            accepted.push(i);
        } else {
            replies[i] = Some(reply);
        }
    }
    if accepted.is_empty() {
        // Nobody to send it to: no DATA (an LMTP server would say 503), a clean slate instead.
        conn.command("RSET", "the reply to RSET").await?;
        return Ok(());
    }
    let reply = conn.command("DATA", "the reply to DATA").await?;
    if reply.code != 354 {
        for &i in &accepted {
            replies[i] = Some(reply.clone());
        }
        if reply.code != 421 {
            conn.command("RSET", "the reply to RSET").await?;
        }
        return closing(conn, &reply).await;
    }
    let mut stuffer = DotStuffer::default();
    let mut chunk = vec![0u8; CHUNK];
    let mut out = Vec::with_capacity(CHUNK + CHUNK / 32);
    loop {
        let n = data
            .read(&mut chunk)
            .await
            .map_err(|e| IspError::Protocol {
                host: conn.host().to_owned(),
                step: "DATA".into(),
                reason: format!("reading the message to send failed: {e}"),
            })?;
        if n == 0 {
            break;
        }
        out.clear();
        stuffer.feed(&chunk[..n], &mut out);
        conn.write(&out, "sending the message").await?;
    }
    conn.write(stuffer.finish(), "sending the message").await?;
    *data_sent = true;
    conn.transcript().note("(message data sent)");
    match hello {
        Hello::Lhlo => {
            // RFC 2033 4.2: one reply per accepted recipient, in RCPT order.
            for &i in &accepted {
                let reply = conn.read_reply("the reply after the data").await?;
                let closing_now = reply.code == 421;
                replies[i] = Some(reply);
                if closing_now {
                    return Err(IspError::ServiceClosing {
                        host: conn.host().to_owned(),
                        text: "closed after the data".into(),
                    });
                }
            }
        }
        Hello::Ehlo => {
            let reply = conn.read_reply("the reply after the data").await?;
            for &i in &accepted {
                replies[i] = Some(reply.clone());
            }
            if reply.code == 421 {
                return closing(conn, &reply).await;
            }
        }
    }
    Ok(())
}

fn fill(replies: &mut [Option<Reply>], with: &[Option<Reply>]) {
    for (slot, r) in replies.iter_mut().zip(with) {
        *slot = r.clone();
    }
}

/// A 421 closes the session (an error, so the caller drops the connection); others do not.
async fn closing(conn: &mut Connection, reply: &Reply) -> Result<(), IspError> {
    if reply.code == 421 {
        return Err(IspError::ServiceClosing {
            host: conn.host().to_owned(),
            text: reply.text(),
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out.extend_from_slice(s.finish());
        out
    }

    #[test]
    fn dots_at_line_starts_are_doubled_across_chunks() {
        assert_eq!(stuff(&[b".a\r\nb\r\n"]), b"..a\r\nb\r\n.\r\n");
        assert_eq!(stuff(&[b"a\r\n", b".b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(&[b"a\r", b"\n.", b".\r\n"]), b"a\r\n...\r\n.\r\n");
        assert_eq!(stuff(&[b"x.y\r\n"]), b"x.y\r\n.\r\n");
        // A lone dot line in the content cannot end the data early.
        assert_eq!(stuff(&[b"a\r\n.\r\nb\r\n"]), b"a\r\n..\r\nb\r\n.\r\n");
    }

    #[test]
    fn the_end_always_follows_a_crlf() {
        assert_eq!(stuff(&[b"no end"]), b"no end\r\n.\r\n");
        assert_eq!(stuff(&[b"cr\r"]), b"cr\r\r\n.\r\n");
        assert_eq!(stuff(&[]), b".\r\n");
        assert_eq!(stuff(&[b"a\r\n", b""]), b"a\r\n.\r\n");
    }

    /// A scripted LMTP/SMTP server for one connection: answers each command line by its verb,
    /// and after the data the replies in `after_data`; returns the data it received.
    async fn scripted<S>(
        stream: S,
        rcpt: Vec<&'static str>,
        after_data: Vec<&'static str>,
        hang_up_after_data: bool,
    ) -> Vec<u8>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let mut s = BufReader::new(stream);
        s.get_mut()
            .write_all(b"220 lan.test LMTP ready\r\n")
            .await
            .unwrap();
        let mut rcpt = rcpt.into_iter();
        let mut data = Vec::new();
        loop {
            let mut line = String::new();
            if s.read_line(&mut line).await.unwrap() == 0 {
                return data;
            }
            let verb = line
                .split([' ', ':', '\r'])
                .next()
                .unwrap()
                .to_ascii_uppercase();
            let reply: String = match verb.as_str() {
                "LHLO" | "EHLO" => {
                    "250-lan.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n".into()
                }
                "MAIL" => {
                    assert!(
                        line.contains("SIZE=") && line.contains("BODY=8BITMIME"),
                        "{line}"
                    );
                    "250 2.1.0 OK\r\n".into()
                }
                "RCPT" => format!("{}\r\n", rcpt.next().unwrap_or("250 2.1.5 OK")),
                "RSET" => "250 2.0.0 OK\r\n".into(),
                "QUIT" => "221 2.0.0 Bye\r\n".into(),
                "DATA" => {
                    s.get_mut().write_all(b"354 go\r\n").await.unwrap();
                    loop {
                        let mut l = Vec::new();
                        s.read_until(b'\n', &mut l).await.unwrap();
                        if l == b".\r\n" {
                            break;
                        }
                        data.extend_from_slice(&l);
                    }
                    after_data.iter().map(|r| format!("{r}\r\n")).collect()
                }
                _ => "500 what\r\n".into(),
            };
            s.get_mut().write_all(reply.as_bytes()).await.unwrap();
            if hang_up_after_data && verb == "DATA" {
                return data;
            }
        }
    }

    fn lan(address: super::super::Address, hello: Hello) -> super::super::Server {
        super::super::Server {
            address,
            hello,
            security: crate::account::Security::None,
            ca_file: None,
            helo: "client.test".into(),
        }
    }

    /// An LMTP connection (LHLO, no TLS) to the scripted server on `port`.
    async fn open_lmtp(port: u16) -> (super::super::Connection, super::super::ServerInfo) {
        let address = super::super::Address::Tcp {
            host: "127.0.0.1".into(),
            port,
        };
        super::super::open_server(&lan(address, Hello::Lhlo), &Default::default())
            .await
            .map_err(|e| e.error)
            .unwrap()
    }

    const CONTENT: &[u8] = b"Subject: t\r\n\r\n.leading dot\r\nend\r\n";

    #[tokio::test]
    async fn lmtp_replies_are_taken_per_recipient_in_rcpt_order() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (sock, _) = tcp.accept().await.unwrap();
            scripted(
                sock,
                vec![
                    "250 2.1.5 OK",
                    "250 2.1.5 OK",
                    "550 5.1.1 <c@lan.test> User doesn't exist",
                    "250 2.1.5 OK",
                ],
                vec![
                    "250 2.0.0 <a@lan.test> Saved",
                    "451 4.3.0 <b@lan.test> Temporary internal error",
                    "552 5.2.2 <d@lan.test> Quota exceeded",
                ],
                false,
            )
            .await
        });
        let (mut conn, info) = open_lmtp(port).await;
        assert!(conn.transcript().has_sent("LHLO client.test"));
        let recipients: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|u| format!("{u}@lan.test"))
            .collect();
        let envelope = Envelope {
            sender: "s@outside.test",
            recipients: &recipients,
            size: CONTENT.len() as u64,
        };
        let t = send(&mut conn, Hello::Lhlo, &info, &envelope, &mut &CONTENT[..]).await;
        assert!(t.error.is_none(), "{:?}", t.error);
        let codes: Vec<u16> = t.replies.iter().map(|r| r.as_ref().unwrap().code).collect();
        assert_eq!(
            codes,
            [250, 451, 550, 552],
            "each recipient gets its own answer"
        );
        conn.quit().await;
        let data = server.await.unwrap();
        assert_eq!(
            data, b"Subject: t\r\n\r\n..leading dot\r\nend\r\n",
            "stuffed on the wire"
        );
    }

    #[tokio::test]
    async fn smtp_has_one_reply_for_all_and_nobody_accepted_means_no_data() {
        async fn script<S>(sock: S) -> Vec<u8>
        where
            S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        {
            let rcpt = vec!["550 5.1.1 no", "250 ok", "250 ok"];
            scripted(sock, rcpt, vec!["451 4.3.0 try later"], false).await
        }
        // Over a unix socket where there are any (a LAN server's usual way), over TCP elsewhere.
        #[cfg(unix)]
        let (address, server, _dir) = {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("lmtp.sock");
            let unix = tokio::net::UnixListener::bind(&path).unwrap();
            let server = tokio::spawn(async move { script(unix.accept().await.unwrap().0).await });
            (super::super::Address::Unix(path), server, dir)
        };
        #[cfg(not(unix))]
        let (address, server) = {
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = tcp.local_addr().unwrap().port();
            let server = tokio::spawn(async move { script(tcp.accept().await.unwrap().0).await });
            let host = "127.0.0.1".to_string();
            (super::super::Address::Tcp { host, port }, server)
        };
        let settings = super::super::ClientSettings::default();
        let (mut conn, info) = super::super::open_server(&lan(address, Hello::Ehlo), &settings)
            .await
            .map_err(|e| e.error)
            .unwrap();
        // All refused at RCPT: RSET, no DATA, the connection stays usable.
        let one = vec!["x@lan.test".to_string()];
        let e = Envelope {
            sender: "",
            recipients: &one,
            size: 3,
        };
        let t = send(&mut conn, Hello::Ehlo, &info, &e, &mut &b"x\r\n"[..]).await;
        assert!(t.error.is_none());
        assert_eq!(t.replies[0].as_ref().unwrap().code, 550);
        let two = vec!["a@lan.test".to_string(), "b@lan.test".to_string()];
        let e = Envelope {
            sender: "s@o.test",
            recipients: &two,
            size: 3,
        };
        let t = send(&mut conn, Hello::Ehlo, &info, &e, &mut &b"y"[..]).await;
        assert!(t.error.is_none());
        let codes: Vec<u16> = t.replies.iter().map(|r| r.as_ref().unwrap().code).collect();
        assert_eq!(
            codes,
            [451, 451],
            "SMTP's one reply after the data is every recipient's"
        );
        conn.quit().await;
        assert_eq!(
            server.await.unwrap(),
            b"y\r\n",
            "a missing final CRLF is added"
        );
    }

    #[tokio::test]
    async fn a_server_gone_mid_replies_leaves_the_rest_unknown() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (sock, _) = tcp.accept().await.unwrap();
            // One reply for two recipients, then the connection closes.
            scripted(sock, vec![], vec!["250 2.0.0 <a@lan.test> Saved"], true).await;
        });
        let (mut conn, info) = open_lmtp(port).await;
        let two = vec!["a@lan.test".to_string(), "b@lan.test".to_string()];
        let e = Envelope {
            sender: "s@o.test",
            recipients: &two,
            size: 3,
        };
        let t = send(&mut conn, Hello::Lhlo, &info, &e, &mut &b"z\r\n"[..]).await;
        assert_eq!(t.replies[0].as_ref().map(|r| r.code), Some(250));
        assert!(
            t.replies[1].is_none(),
            "no word on b: it must be tried again"
        );
        assert!(
            matches!(
                t.error,
                Some(IspError::ConnectionLost { .. }) | Some(IspError::Timeout { .. })
            ),
            "{:?}",
            t.error
        );
    }
}
