//! The route table: which destination each envelope recipient's mail goes to — patterns,
//! destinations, the table, and parsing them from the config's words. Pure data: writing the
//! copies a message becomes is [`crate::spool::copies`], which reads this table.

pub mod route;

pub use route::{Destination, Pattern, Route, RouteError, RouteTable, Target};

// The listener's tests (being moved to crates/core/tests on another branch) still name the
// router here; drop this once they name `spool::copies::Router`.
#[doc(hidden)]
pub use crate::spool::copies::Router;
