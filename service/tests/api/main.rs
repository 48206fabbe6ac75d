//! Integration tests, compiled into one binary.

mod admission;
mod binary;
mod config;
mod connections;
mod docs_cache;
mod keys;
mod large_answers;
mod observability;
mod postgres;
mod request_ids;
mod router;
mod secrets;
mod slow_readers;
mod store_contract;
mod structure;
mod support;
