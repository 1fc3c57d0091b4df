//! What makes bytes a policy this host can run: a WebAssembly component
//! (not a core module), built for this contract, asking only for what the
//! host provides. Each refusal says what the bytes are instead.

use std::fmt;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::CONTRACT;
use super::bindings::OLDER_CONTRACTS;

/// Why bytes are not a policy component this host can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentError {
    /// No `\0asm` header.
    NotWasm,
    /// A core module: built without the component tooling.
    CoreModule,
    /// Wasm the compiler refuses.
    Invalid(String),
    /// Built for another version of the contract.
    ContractMismatch { built_for: String },
    /// Imports something the host does not provide.
    MissingImport(String),
    /// A component that does not export the policy world.
    WrongWorld(String),
    /// The compiler took longer than the host allows: the host's limit, not
    /// a verdict on the module.
    CompileTimeout { seconds: u64 },
}

impl fmt::Display for ComponentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComponentError::NotWasm => f.write_str("not a WebAssembly file (no \\0asm header)"),
            ComponentError::CoreModule => f.write_str(
                "this is a core module, not a component; build it with the shipgate-policy \
                 SDK for wasm32-wasip2",
            ),
            ComponentError::Invalid(why) => {
                write!(f, "not a valid WebAssembly component: {why}")
            }
            ComponentError::ContractMismatch { built_for } => write!(
                f,
                "it was built for shipgate:policy@{built_for}, and this shipgate speaks \
                 {CONTRACT} (and runs modules built for {}): rebuild it with the \
                 matching shipgate-policy SDK",
                OLDER_CONTRACTS.join(" and ")
            ),
            ComponentError::MissingImport(why) => {
                write!(f, "it needs something shipgate does not provide: {why}")
            }
            ComponentError::CompileTimeout { seconds } => write!(
                f,
                "compiling it took longer than {seconds} s; the host gave up"
            ),
            ComponentError::WrongWorld(why) => write!(
                f,
                "it does not implement the shipgate:policy/policy world of the contract it \
                 was built for ({why}); build it with the shipgate-policy SDK for wasm32-wasip2"
            ),
        }
    }
}

impl std::error::Error for ComponentError {}

/// Refuses what is not a component before handing it to the compiler.
pub(super) fn check_is_component(bytes: &[u8]) -> Result<(), ComponentError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(ComponentError::NotWasm);
    }
    // Bytes 4..8: version and layer; a core module is version 1, layer 0.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(ComponentError::CoreModule);
    }
    Ok(())
}

/// The contract version a module was built for: the version it imports
/// its types interface at (`None` when it imports no such interface, which
/// is no policy at all). A module that imports the types of several
/// versions was built for none of them.
pub(super) fn contract_of(
    engine: &Engine,
    component: &Component,
) -> Result<Option<String>, ComponentError> {
    const TYPES: &str = "shipgate:policy/types@";
    let mut versions: Vec<String> = component
        .component_type()
        .imports(engine)
        .filter_map(|(name, _)| Some(name.strip_prefix(TYPES)?.to_string()))
        .collect();
    versions.sort();
    versions.dedup();
    match versions.len() {
        0 | 1 => Ok(versions.pop()),
        _ => Err(ComponentError::WrongWorld(format!(
            "it imports the types of several contract versions ({})",
            versions.join(", ")
        ))),
    }
}

/// Whether this host runs modules built for contract `version`: its own,
/// and the older ones it still links.
pub(super) fn runs(version: &str) -> bool {
    let ours = CONTRACT.rsplit_once('@').map(|(_, version)| version);
    ours == Some(version) || OLDER_CONTRACTS.contains(&version)
}

/// The root of a wasmtime error, first line: the outermost message is often
/// generic ("error while executing at wasm backtrace: ..."), the root says
/// what happened.
pub(super) fn root_cause(error: &wasmtime::Error) -> String {
    let root = error.root_cause().to_string();
    root.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_files_that_are_not_components() {
        assert_eq!(
            check_is_component(b"hello world, not wasm"),
            Err(ComponentError::NotWasm)
        );
        assert_eq!(
            ComponentError::NotWasm.to_string(),
            "not a WebAssembly file (no \\0asm header)"
        );
        let core = [0, b'a', b's', b'm', 1, 0, 0, 0];
        assert_eq!(check_is_component(&core), Err(ComponentError::CoreModule));
        assert!(
            ComponentError::CoreModule
                .to_string()
                .contains("core module, not a component")
        );
        let component = [0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        assert_eq!(check_is_component(&component), Ok(()));
    }
}
