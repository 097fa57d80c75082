//! Accounts in the OS keyring.
