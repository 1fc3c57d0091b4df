//! What the benchmarks share: the real server on loopback, a minimal
//! HTTP/1.1 client, readings of the server process from /proc, and the
//! package's binaries that run as processes.

pub mod load;
pub mod siblings;
