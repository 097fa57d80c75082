//! Durable Maildir delivery: write in `tmp/`, fsync, rename into `new/`, fsync the directory.
// STUB: the listener helper replaces this file; the signatures below are the contract.

use std::io;
use std::path::{Path, PathBuf};

/// A Maildir (`tmp/`, `new/`, `cur/`) that messages are delivered into.
#[derive(Debug, Clone)]
pub struct Maildir {
    root: PathBuf,
}

impl Maildir {
    /// Opens the Maildir at `root`, creating it and its subdirectories (mode 0700) if missing.
    pub fn create(root: &Path) -> io::Result<Self> {
        Ok(Maildir {
            root: root.to_path_buf(),
        })
    }
    /// The Maildir's top directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Starts a delivery: a new unique file in `tmp/`.
    pub async fn begin(&self) -> io::Result<Delivery> {
        Err(io::Error::other("stub"))
    }
}

/// One message being written; dropped without `commit`, its `tmp/` file is removed.
#[derive(Debug)]
pub struct Delivery {}

impl Delivery {
    /// Appends bytes to the message.
    pub async fn write(&mut self, _buf: &[u8]) -> io::Result<()> {
        Ok(())
    }
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        0
    }
    /// fsyncs the file, renames it into `new/`, fsyncs `new/`; returns the final path.
    pub async fn commit(self) -> io::Result<PathBuf> {
        Err(io::Error::other("stub"))
    }
    /// Removes the `tmp/` file.
    pub async fn abort(self) {}
}
