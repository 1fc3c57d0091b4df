#![no_main]

//! Needs the echoing test policy: `SHIPGATE_ECHO_POLICY=path/to/hostile.wasm`
//! (`cargo test` builds it: target/fixtures/wasm32-wasip2/release/hostile.wasm).

use std::sync::LazyLock;

use shipgate::fuzzing::GuestVerdict;

static GUEST: LazyLock<GuestVerdict> = LazyLock::new(|| {
    let path = std::env::var("SHIPGATE_ECHO_POLICY")
        .expect("set SHIPGATE_ECHO_POLICY to the hostile test policy's .wasm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    GuestVerdict::new(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"))
});

libfuzzer_sys::fuzz_target!(|data: &[u8]| GUEST.run(data));
