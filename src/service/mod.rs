//! A long-running `picket` (manager or agent) under a service manager: the form of its log
//! lines.

pub mod logging;

pub use logging::LogFormat;
