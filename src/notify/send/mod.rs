//! The shells that move a notice's bytes to a mail server, a syslog collector or a webhook
//! receiver, and report what the server answered.
//!
//! TO BE WRITTEN (helper): `send(channel, notice, site, clock) -> Result<Answer, SendError>`.
