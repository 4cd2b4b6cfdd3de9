//! The bytes each channel sends for a notice (sans-io, no clock of its own).
//!
//! TO BE WRITTEN (helper): see the interface agreed in the notifications work:
//! `Site`, `syslog_message`, `frame`, `cef`, `leef`, `text`, `webhook_body`, `signature`,
//! `email`.
