//! Skiff's kube-scheduler. See ARCHITECTURE.md ("The scheduler").

pub mod framework;
pub mod plugins;
pub mod resources;
