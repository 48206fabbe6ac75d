//! Integration tests, compiled into one binary.

mod binary;
mod router;
mod secrets;
mod support;
