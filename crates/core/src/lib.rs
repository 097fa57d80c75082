//! mailcall-core: the headless heart of Mailcall — accounts, the ETRN and ODMR clients, the SMTP
//! listener, durable Maildir delivery and the fetch session that ties them together. No GUI
//! crates here.
#![forbid(unsafe_code)]

pub mod account;
pub mod client;
pub mod config;
pub mod control;
pub mod etrn;
pub mod event;
pub mod fetch;
pub mod fsutil;
pub mod hint;
pub mod history;
pub mod instance;
pub mod keystore;
pub mod listener;
pub mod mailcall;
pub mod maildir;
pub mod odmr;
pub mod outgoing;
pub mod printable;
pub mod report;
pub mod routing;
pub mod service;
pub mod spool;
pub mod trigger;
pub mod user_command;
