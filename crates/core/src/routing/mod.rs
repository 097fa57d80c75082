//! The route table: which destination each envelope recipient's mail goes to — patterns,
//! destinations, the table, and parsing them from the config's words. Pure data: writing the
//! copies a message becomes is [`crate::spool::copies`], which reads this table.

pub mod route;

pub use route::{Destination, Pattern, Route, RouteError, RouteTable, Target};
