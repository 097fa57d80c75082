//! mailcall-core: the headless heart of Mailcall — accounts, the ETRN client, the SMTP listener,
//! durable Maildir delivery and the fetch session that ties them together. No GUI crates here.
#![forbid(unsafe_code)]

pub mod account;
pub mod config;
pub mod etrn;
pub mod event;
pub mod fetch;
pub mod history;
pub mod keystore;
pub mod listener;
pub mod maildir;
pub mod report;
pub mod service;
pub mod tls;
