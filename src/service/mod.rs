//! A long-running `picket` (manager or agent) under a service manager: the signals it answers
//! and the form of its log lines.

pub mod logging;
pub mod signals;

pub use logging::LogFormat;
pub use signals::StopSignals;
