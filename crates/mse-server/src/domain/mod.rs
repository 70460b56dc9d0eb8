//! The platform's rules, free of I/O: an app's lifecycle, quota admission,
//! routing, what a node runs, the bounds of what an administrator sets, and
//! the types the store maps its rows onto. Plain values in, decisions out:
//! nothing here reaches a database, a socket, a file or the clock.

pub mod accounts;
pub mod app;
pub mod assignment;
pub mod bounds;
pub mod lifecycle;
pub mod nodes;
pub mod quota;
pub mod routing;
