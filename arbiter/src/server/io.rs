//! Frames on a QUIC stream: the wire protocol's own reader and writer.
pub use truce_common::wire::{FrameError, read_frame, write_frame};
