//! The fetch session.
