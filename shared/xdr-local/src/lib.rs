//! Local adapters: a folder as the object sink, a file as the state store. They let the same
//! engine run with no AWS at all (demo, tests, trying it on a real tenant first).

mod dir_sink;
mod file_state;

pub use dir_sink::DirSink;
pub use file_state::FileStateStore;
