//! The file's identity: magic and version numbers. A leaf module, so that
//! both [`crate::format`] (which reads them) and [`crate::error`] (which
//! reports them) depend on it rather than on each other.

/// First four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"TGM\0";
/// The newest format version this runtime reads and writes.
///
/// Version 2 added [`Op::StackConv2d`](crate::format::Op::StackConv2d); nothing else changed, so a file
/// without one is written as version 1 ([`ModelFile::min_version`](crate::format::ModelFile::min_version)) and
/// every older runtime still reads it, while one with a two-stack layer
/// says "version 2" to an old runtime instead of failing to decode.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest format version this runtime reads.
pub const MIN_FORMAT_VERSION: u16 = 1;
