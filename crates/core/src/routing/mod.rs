//! Delivery per recipient: which destination each envelope recipient's mail goes to
//! ([`route`]: patterns, destinations, the table), and the copies one accepted message becomes
//! ([`copies`]: a file per Maildir destination, one spool entry for the servers).

pub mod copies;
pub mod route;

pub use copies::Router;
pub use route::{Destination, Pattern, Route, RouteTable};
