//! One module per subcommand.

pub mod store;
mod urls;
