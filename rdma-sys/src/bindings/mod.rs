//! bindgen output from rdma-core's headers (see `gen/regenerate.sh` and
//! `gen/RDMA_CORE_VERSION`); checked in so building needs no RDMA packages.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    unused_imports,
    clippy::all
)]

pub mod cm;
pub mod types;
pub mod verbs;
