//! What the wire tests share: the one test [`account`], a test PKI whose CA the account trusts
//! ([`pki`]), and a scripted ISP that answers ETRN ([`isp`]). Each test binary includes this
//! module with `mod common;` and uses only part of it.
#![allow(dead_code)] // each test binary uses its own part; the rest is dead code there
#![allow(clippy::unwrap_used)] // test fixtures: a panic is the failure report

pub mod account;
pub mod isp;
pub mod pki;

#[allow(unused_imports)] // not every test binary takes the account
pub use account::account;
