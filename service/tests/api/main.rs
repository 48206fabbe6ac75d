//! Integration tests, compiled into one binary.

mod binary;
mod config;
mod connections;
mod keys;
mod observability;
mod postgres;
mod router;
mod secrets;
mod store_contract;
mod support;
