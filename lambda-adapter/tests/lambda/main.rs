//! Lambda shell tests: AWS event shapes in, AWS response shapes out, parity with the
//! container router, and the EMF lines written per invocation.

mod events;
mod parity;
mod runtime;
mod support;
