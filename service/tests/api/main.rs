//! Integration tests, compiled into one binary.

mod binary;
mod router;
mod secrets;
mod secrets;
mod support;
