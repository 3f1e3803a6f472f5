//! The built-in feature library, one file per entity.

pub mod title;
pub mod viewer;
