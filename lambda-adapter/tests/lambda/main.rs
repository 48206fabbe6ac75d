//! Lambda shell tests: AWS event shapes in, AWS response shapes out, parity with the
//! container router, the EMF lines written per invocation, and the migrate function.

mod docs;
mod events;
mod front_doors;
mod migrate;
mod parity;
// Throwaway PostgreSQL clusters, shared with the service's API tests.
#[path = "../../../service/tests/api/support/postgres.rs"]
#[allow(dead_code)]
mod postgres;
mod runtime;
mod support;
