//! Rust SDK and CLI of edgeroom — not written yet.
//!
//! Until it exists, Rust clients use `edgeroom-protocol` directly: connect to
//! `/v1/t/{tenant}/rooms/{room}/ws?format=binary&resume_from=<last seq>`, send
//! `ClientMessage::to_binary()` frames and decode answers with `ServerMessage::from_binary`.
//! `tests/harness/lib.rs` shows a working client built that way.
