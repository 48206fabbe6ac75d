//! HTTP resources, one module each; `app::router` merges their routers.

pub mod docs;
pub mod meta;
pub mod orders;
