//! The engine's integration tests as one test binary, each former test file a module (one link
//! instead of two).

mod compact_tokenizer;
mod generate;
mod init;
