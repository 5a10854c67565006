//! Integration tests of tenure-scim.

mod filter;
mod props;
