//! The platform's local channel for the control socket: who may connect, and how a client finds
//! the server. On Unix a Unix socket, owner-only; elsewhere (Windows) a TCP socket on 127.0.0.1
//! whose port and a random token are in a file only the user can read ([`tcp_token`]).
//!
//! The server takes a connection in two steps: [`ControlListener::accept`] only accepts it, and
//! [`Incoming::admit`] — run in the connection's own task — checks who it is. A client that is
//! slow to prove itself holds up nobody else.

#[cfg(not(unix))]
pub use tcp_token::{connect, Connection, Incoming, Stream};
#[cfg(unix)]
pub use unix::{connect, Connection, Incoming, Stream};

/// The control socket's listener on this platform: one name for the server, whichever channel
/// it is (each keeps its own name, so a message or a test says which one it means).
#[cfg(unix)]
pub type ControlListener = unix::SocketListener;
/// The control socket's listener on this platform: one name for the server, whichever channel
/// it is (each keeps its own name, so a message or a test says which one it means).
#[cfg(not(unix))]
pub type ControlListener = tcp_token::TokenListener;

/// Unix sockets, owner-only.
#[cfg(unix)]
mod unix {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    use tokio::io::BufReader;

    use crate::control::ControlError;

    /// The stream a request comes over.
    pub type Stream = tokio::net::UnixStream;

    /// An admitted connection, buffered.
    pub type Connection = BufReader<Stream>;

    /// A Unix socket, owner-only.
    #[derive(Debug)]
    pub struct SocketListener {
        inner: tokio::net::UnixListener,
        uid: u32,
    }

    /// A connection accepted, not yet admitted.
    #[derive(Debug)]
    pub struct Incoming {
        stream: Stream,
        uid: u32,
    }

    impl SocketListener {
        /// Binds `path`: directory 0700, socket 0600; a stale socket is replaced, a live one is
        /// [`ControlError::InUse`].
        pub fn bind(path: &Path) -> Result<Self, ControlError> {
            let io = |source| ControlError::Io {
                path: path.to_path_buf(),
                source,
            };
            if let Some(dir) = path.parent() {
                if !dir.exists() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                        .map_err(io)?;
                }
            }
            if path.exists() {
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(ControlError::InUse(path.to_path_buf()));
                }
                std::fs::remove_file(path).map_err(io)?;
            }
            let inner = tokio::net::UnixListener::bind(path).map_err(io)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            let uid = std::fs::metadata(path).map_err(io)?.uid();
            Ok(SocketListener { inner, uid })
        }

        /// The next connection, not yet checked.
        pub async fn accept(&self) -> std::io::Result<Incoming> {
            let (stream, _) = self.inner.accept().await?;
            Ok(Incoming {
                stream,
                uid: self.uid,
            })
        }
    }

    impl Incoming {
        /// The connection, when its peer is this user (or root); `None` for anyone else. The
        /// socket is 0600 already; the check also holds where permissions on socket files are
        /// not enforced.
        pub async fn admit(self) -> Option<Connection> {
            match self.stream.peer_cred() {
                Ok(c) if c.uid() == self.uid || c.uid() == 0 => Some(BufReader::new(self.stream)),
                _ => None,
            }
        }
    }

    /// Connects to the server at `path`.
    pub async fn connect(path: &Path) -> std::io::Result<Stream> {
        tokio::net::UnixStream::connect(path).await
    }
}

/// A local channel for platforms without Unix sockets: who may connect, and how a client finds
/// the server. Built everywhere for its tests; used where there are no Unix sockets.
#[cfg(any(not(unix), test))]
pub mod tcp_token {
    use std::path::Path;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use crate::control::ControlError;

    /// The stream a request comes over.
    pub type Stream = tokio::net::TcpStream;

    /// An admitted connection, buffered: whatever the client sent right after the token is
    /// read from here.
    pub type Connection = BufReader<Stream>;

    /// How long a client has to send the token.
    pub const TOKEN_LIMIT: Duration = Duration::from_secs(5);
    /// The longest token line read.
    const MAX_TOKEN: u64 = 128;

    /// A TCP socket on 127.0.0.1; its port and a random token are in the file at the socket's
    /// path, in the user's own profile: only who can read that file can talk to it.
    #[derive(Debug)]
    pub struct TokenListener {
        inner: tokio::net::TcpListener,
        token: String,
    }

    /// A connection accepted, its token not read yet.
    #[derive(Debug)]
    pub struct Incoming {
        stream: Stream,
        token: String,
    }

    fn token() -> Result<String, ControlError> {
        let mut bytes = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(
            |_| ControlError::Protocol("no random numbers for the control token".into()),
        )?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    impl TokenListener {
        /// Binds 127.0.0.1:0 and writes `PORT TOKEN` to `path` (its directory made, private,
        /// when missing); a live server there is [`ControlError::InUse`].
        pub fn bind(path: &Path) -> Result<Self, ControlError> {
            let io = |source| ControlError::Io {
                path: path.to_path_buf(),
                source,
            };
            if let Some(dir) = path.parent() {
                crate::fsutil::create_private_dir(dir).map_err(io)?;
            }
            if let Ok(text) = std::fs::read_to_string(path) {
                if let Some(port) = text
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                {
                    if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                        return Err(ControlError::InUse(path.to_path_buf()));
                    }
                }
            }
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
            std_listener.set_nonblocking(true).map_err(io)?;
            let port = std_listener.local_addr().map_err(io)?.port();
            let token = token()?;
            crate::fsutil::write_atomic(path, format!("{port} {token}\n").as_bytes(), 0o600)
                .map_err(io)?;
            tracing::debug!(port, "control channel on 127.0.0.1");
            let inner = tokio::net::TcpListener::from_std(std_listener).map_err(io)?;
            Ok(TokenListener { inner, token })
        }

        /// The next connection, its token not read yet: reading it here would hold up every
        /// other client for as long as this one is silent.
        pub async fn accept(&self) -> std::io::Result<Incoming> {
            let (stream, _) = self.inner.accept().await?;
            Ok(Incoming {
                stream,
                token: self.token.clone(),
            })
        }
    }

    impl Incoming {
        /// The connection, when it sends the token first (within [`TOKEN_LIMIT`]); `None`
        /// otherwise. The reader that read the token is the one the request is read from:
        /// a request sent in the same write as the token is already in its buffer.
        pub async fn admit(self) -> Option<Connection> {
            let mut conn = BufReader::new(self.stream);
            let mut line = String::new();
            let read = tokio::time::timeout(
                TOKEN_LIMIT,
                (&mut conn).take(MAX_TOKEN).read_line(&mut line),
            )
            .await;
            match read {
                Ok(Ok(_)) if line.trim() == self.token => Some(conn),
                _ => None,
            }
        }
    }

    /// Connects to the server whose port and token are in `path`, and sends the token.
    pub async fn connect(path: &Path) -> std::io::Result<Stream> {
        connect_with(path, None).await
    }

    /// [`connect`], with another token than the file's (a test of the refusal).
    pub async fn connect_with(path: &Path, forged: Option<&str>) -> std::io::Result<Stream> {
        let text = tokio::fs::read_to_string(path).await?;
        let mut words = text.split_whitespace();
        let (Some(port), Some(token)) = (words.next(), words.next()) else {
            return Err(std::io::Error::from(std::io::ErrorKind::NotFound));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let token = forged.unwrap_or(token);
        stream.write_all(format!("{token}\n").as_bytes()).await?;
        Ok(stream)
    }

    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    mod tests {
        use super::*;

        /// The port and token a client reads from the file.
        fn port_and_token(path: &Path) -> (u16, String) {
            let text = std::fs::read_to_string(path).unwrap();
            let mut words = text.split_whitespace();
            let port = words.next().unwrap().parse().unwrap();
            (port, words.next().unwrap().to_string())
        }

        /// The first line the server reads from an admitted connection.
        async fn first_line(conn: &mut Connection) -> String {
            let mut line = String::new();
            let read = tokio::time::timeout(TOKEN_LIMIT, conn.read_line(&mut line)).await;
            assert!(matches!(read, Ok(Ok(_))), "no request line: {read:?}");
            line
        }

        #[tokio::test]
        async fn only_a_client_with_the_token_gets_through() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("control.sock");
            let listener = TokenListener::bind(&path).unwrap();
            let (_, token) = port_and_token(&path);
            assert_eq!(token.len(), 48, "{token}");
            // A second server sees the first answer (the probe sends no token: refused).
            assert!(matches!(
                TokenListener::bind(&path),
                Err(ControlError::InUse(_))
            ));
            let server = tokio::spawn(async move {
                let mut admitted = Vec::new();
                for _ in 0..3 {
                    let incoming = listener.accept().await.unwrap();
                    admitted.push(incoming.admit().await.is_some());
                }
                admitted
            });
            let mut good = connect(&path).await.unwrap();
            good.write_all(b"request\n").await.unwrap();
            let _forged = connect_with(&path, Some("0000")).await.unwrap();
            assert_eq!(server.await.unwrap(), [false, true, false]);
        }

        #[tokio::test]
        async fn a_file_left_by_a_killed_server_is_replaced() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("control.sock");
            // What a server ended by force leaves: its port (nobody listens there any more).
            let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let old_port = gone.local_addr().unwrap().port();
            drop(gone);
            std::fs::write(&path, format!("{old_port} {}\n", "ab".repeat(24))).unwrap();
            let err = connect(&path).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
            let listener = TokenListener::bind(&path).unwrap();
            let (_, token) = port_and_token(&path);
            assert_ne!(
                token,
                "ab".repeat(24),
                "the new server's token is in the file"
            );
            let server = tokio::spawn(async move {
                let mut conn = listener.accept().await.unwrap().admit().await.unwrap();
                first_line(&mut conn).await
            });
            let mut client = connect(&path).await.unwrap();
            client.write_all(b"request\n").await.unwrap();
            assert_eq!(server.await.unwrap(), "request\n");
        }

        #[tokio::test]
        async fn a_request_in_the_same_write_as_the_token_is_kept() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("control.sock");
            let listener = TokenListener::bind(&path).unwrap();
            let (port, token) = port_and_token(&path);
            let mut client = Stream::connect(("127.0.0.1", port)).await.unwrap();
            client
                .write_all(format!("{token}\nrequest\n").as_bytes())
                .await
                .unwrap();
            let incoming = listener.accept().await.unwrap();
            let mut conn = incoming.admit().await.expect("admitted");
            assert_eq!(first_line(&mut conn).await, "request\n");
        }

        #[tokio::test]
        async fn a_silent_client_holds_up_nobody_else() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("control.sock");
            let listener = TokenListener::bind(&path).unwrap();
            let (port, _) = port_and_token(&path);
            // Connected, and never a word: accepting it reads nothing.
            let quiet = Stream::connect(("127.0.0.1", port)).await.unwrap();
            let mut next = connect(&path).await.unwrap();
            next.write_all(b"request\n").await.unwrap();
            let (silent, mut conn) = tokio::time::timeout(TOKEN_LIMIT / 2, async {
                let silent = listener.accept().await.unwrap();
                let incoming = listener.accept().await.unwrap();
                (silent, incoming.admit().await.expect("admitted"))
            })
            .await
            .expect("the second client was held up by the first");
            assert_eq!(first_line(&mut conn).await, "request\n");
            // It goes without a word: turned away, in its own task.
            drop(quiet);
            assert!(silent.admit().await.is_none());
        }
    }
}
