//! Every fuzz target of `shipgate::fuzzing`, run briefly: its seeds, then
//! mutations of them from a fixed seed, so a failure reproduces on every
//! run. Long runs use libFuzzer (`fuzz/`; figures in docs/RELIABILITY.md).
//! A failing input is written to `target/fuzz-failures/` for
//! `cargo fuzz run TARGET FILE`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use shipgate::fuzzing;

use crate::support::{fixture, repo};

/// Small xorshift generator: the mutations are the same on every run.
struct Mutator(u64);

/// Tokens that turn valid text into interesting text.
const TOKENS: [&[u8]; 16] = [
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"1e999",
    b"-0",
    b"\\u0000",
    b"true",
    b"\n[x]\n",
    b"=",
    b"\"\\ud800\"",
    b"18446744073709551616",
];

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One to four edits of `input`: a bit flipped, a byte set, inserted or
    /// a range deleted, repeated, spliced from `other` or a token inserted.
    fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..=self.below(4) {
            let at = self.below(out.len() + 1);
            match self.below(7) {
                0 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    out[i] ^= 1 << self.below(8);
                }
                1 if !out.is_empty() => {
                    let i = at.min(out.len() - 1);
                    out[i] = self.next() as u8;
                }
                2 => out.insert(at, self.next() as u8),
                3 => {
                    let end = (at + self.below(16)).min(out.len());
                    out.drain(at..end);
                }
                4 => {
                    let end = (at + self.below(32)).min(out.len());
                    let copy = out[at..end].to_vec();
                    out.splice(at..at, copy);
                }
                5 if !other.is_empty() => {
                    let from = self.below(other.len());
                    let end = (from + self.below(64)).min(other.len());
                    out.splice(at..at, other[from..end].iter().copied());
                }
                _ => {
                    let token = TOKENS[self.below(TOKENS.len())];
                    out.splice(at..at, token.iter().copied());
                }
            }
        }
        out
    }
}

/// Runs `target` on every seed, then on `runs` mutations; a panic fails
/// the test with the input saved.
fn fuzz(name: &str, seeds: &[Vec<u8>], runs: usize, target: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut mutator = Mutator(0x5eed_f055_1974_7a7e);
    let mut corpus = seeds.to_vec();
    for i in 0..seeds.len() + runs {
        let input = if i < seeds.len() {
            seeds[i].clone()
        } else {
            let base = &corpus[mutator.below(corpus.len())];
            let other = &corpus[mutator.below(corpus.len())];
            mutator.mutate(base, other)
        };
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let dir = repo().join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{name}-{i}"));
            std::fs::write(&file, &input).unwrap();
            panic!(
                "{name}: input {i} broke an invariant; saved to {}",
                file.display()
            );
        }
        // Mutations of mutations reach further; keep the corpus small.
        if i >= seeds.len() && corpus.len() < 256 && mutator.below(8) == 0 {
            corpus.push(input);
        }
    }
}

fn files_in(dir: &Path, extension: Option<&str>) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| extension.is_none_or(|ext| path.extension().is_some_and(|e| e == ext)))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    files_in(&repo().join("fuzz/seeds").join(target), None)
}

fn example_snapshots() -> Vec<Vec<u8>> {
    files_in(&repo().join("examples/snapshots"), Some("json"))
}

#[test]
fn snapshots() {
    fuzz("snapshot", &example_snapshots(), 20_000, fuzzing::snapshot);
}

#[test]
fn gate_files() {
    let mut gates = files_in(&repo().join("examples"), Some("toml"));
    gates.extend(files_in(
        &repo().join("examples/custom-policy"),
        Some("toml"),
    ));
    gates.push(include_bytes!("../../host/src/default-gate.toml").to_vec());
    fuzz("gate", &gates, 5_000, fuzzing::gate);
}

/// The encoding of each example snapshot, as policies receive it: the
/// wire target's seeds, kept in `fuzz/seeds/wire` for libFuzzer too.
#[test]
fn wire_encodings() {
    let dir = repo().join("fuzz/seeds/wire");
    let mut stale = Vec::new();
    for (i, json) in example_snapshots().iter().enumerate() {
        let snapshot: shipgate_policy::Snapshot = serde_json::from_slice(json).unwrap();
        let encoded = shipgate_policy::wire::encode(&snapshot);
        let file = dir.join(format!("example-{i}"));
        if std::fs::read(&file).ok().as_ref() != Some(&encoded) {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&file, &encoded).unwrap();
            stale.push(file.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "the encoding changed; rewrote {} (commit them)",
        stale.join(", ")
    );
    fuzz("wire", &seeds("wire"), 20_000, fuzzing::wire);
}

#[test]
fn adapter_requests() {
    fuzz(
        "adapter_request",
        &seeds("adapter_request"),
        20_000,
        fuzzing::adapter_request,
    );
}

#[test]
fn verdicts() {
    fuzz("verdict", &seeds("verdict"), 20_000, fuzzing::verdict);
}

#[test]
fn verdicts_from_a_real_policy() {
    let echo = std::fs::read(fixture("hostile")).unwrap();
    let guest = fuzzing::GuestVerdict::new(&echo).unwrap();
    fuzz("guest_verdict", &seeds("verdict"), 1_000, |data| {
        guest.run(data)
    });
}

#[test]
fn module_references() {
    let seeds: Vec<Vec<u8>> = [
        "oci://127.0.0.1:5000/team/rules:1.2@sha256:4bc453b53cb3d914b45f4b250294236adba2c0e09ff6f03793949e7e39fd4cc1",
        "oci://ghcr.io/acme/policies/freeze:v1",
        "oci://[::1]:5000/a__b/c--d/e.f@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "oci://localhost/rules:latest",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz(
        "module_reference",
        &seeds,
        20_000,
        fuzzing::module_reference,
    );
}

/// Fixture files: the stock policies' and the example's.
#[test]
fn fixture_files() {
    let mut seeds = Vec::new();
    for dir in [
        "policies/preflight/tests/policy",
        "policies/canary/tests/policy",
        "policies/verify/tests/policy",
        "examples/custom-policy/tests/policy",
    ] {
        seeds.extend(files_in(&repo().join(dir), Some("toml")));
    }
    seeds.push(
        b"[[case]]\nname = \"n\"\nphase = \"abort\"\nsnapshot = { schema_version = 1, now = \"2026-11-26T14:00:00Z\" }\n\
          patch = '{\"now\": null}'\nexpect = \"deny\"\n"
            .to_vec(),
    );
    fuzz("fixture", &seeds, 5_000, fuzzing::fixture);
}
