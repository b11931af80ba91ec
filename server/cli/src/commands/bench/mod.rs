//! `spindle bench`: [`engine`] measures a model in-process on an engine at several batch sizes
//! (the limit serving is judged against); [`preprocess`] times decoding and preparing one image.

pub mod engine;
pub mod preprocess;
