/// The flags every policy is built with, stock (host/build.rs) or an
/// author's (`shipgate build`): a 128 KiB stack instead of Rust's default
/// 1 MiB. Policies recurse only as deep as a snapshot nests, and a small
/// stack keeps the pages an evaluation touches few and close together, cheap
/// to reset (see KEEP_RESIDENT_BYTES in the runtime).
const POLICY_RUSTFLAGS: &str = "-Clink-arg=-zstack-size=131072";
