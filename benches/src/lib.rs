//! What the load and soak benchmarks share: the real server on loopback, a
//! minimal HTTP/1.1 client, and readings of the server process from /proc.

pub mod load;
