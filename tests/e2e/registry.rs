//! Policies from a real OCI registry (Debian's `docker-registry`, the CNCF
//! distribution registry, on a loopback port): pushed, pulled by digest,
//! signed in cosign's format, verified and evaluated by `eval` and `serve`;
//! and each way that goes wrong fails closed with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::Server;
use crate::support::{custom_policy, sha256_hex, shipgate_in, snapshot};

/// A registry on 127.0.0.1, its storage in a temporary directory; stopped
/// when dropped.
struct Registry {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (Debian package docker-registry; ./test.sh installs it)");
        let registry = Registry {
            child,
            address,
            _dir: dir,
        };
        let started = Instant::now();
        let client = reqwest::blocking::Client::new();
        while client
            .get(format!("http://{}/v2/", registry.address))
            .send()
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the registry did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    fn reference(&self, repository: &str) -> String {
        format!("oci://{}/{repository}", self.address)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `shipgate ARGS` in `dir` with the module store in `dir/store`; exit code,
/// stdout and stderr.
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let output = shipgate_in(dir)
        .env("SHIPGATE_STORE", dir.join("store"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A pinned reference to a registry that is not there: a loopback port
/// nothing listens on.
fn nowhere(digest: &str) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("oci://127.0.0.1:{port}/team/rules@sha256:{digest}")
}

/// `shipgate push` of the example policy; the pinned reference it printed.
fn push(dir: &Path, reference: &str) -> String {
    let module = custom_policy();
    let (code, stdout, stderr) = run(dir, &["push", module.to_str().unwrap(), reference]);
    assert_eq!(code, Some(0), "{stderr}");
    let pinned = stdout.lines().last().unwrap().trim().to_string();
    assert!(
        pinned.starts_with(&format!("{reference}@sha256:")),
        "{stdout}"
    );
    pinned
}

/// An ECDSA P-256 key pair as openssl writes it (PKCS#8 and SPKI PEM):
/// the kind cosign generates, in the form shipgate reads.
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (private, public) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out {0} && \
             openssl ec -in {0} -pubout -out {1} 2>/dev/null",
            private.display(),
            public.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    (private, public)
}

/// The example gate with the change-freeze policy from `module`.
fn gate(dir: &Path, module: &str, verify: Option<&Path>) -> PathBuf {
    let verify = verify.map_or_else(String::new, |key| {
        format!("verify = {{ key = \"{}\" }}\n", key.display())
    });
    let path = dir.join("gate.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"registry\"\n[[policy]]\nname = \"change-freeze\"\nmodule = \"{module}\"\n{verify}\
             phases = [\"preflight\"]\nconfig = {{ weekends = true }}\n"
        ),
    )
    .unwrap();
    path
}

/// `shipgate eval` of the ready preflight snapshot with `dir/gate.toml`.
fn eval_raw(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let snapshot = snapshot("preflight-ready");
    let mut args = vec![
        "eval",
        "--phase",
        "preflight",
        "--gate",
        "gate.toml",
        "--snapshot",
    ];
    args.push(snapshot.to_str().unwrap());
    args.extend_from_slice(extra);
    run(dir, &args)
}

fn eval(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let (code, stdout, stderr) = eval_raw(dir, &["--format", "json"]);
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, json)
}

fn fault(json: &serde_json::Value) -> String {
    json["policies"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_pushed_policy_is_pulled_by_digest_signed_verified_and_decides() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let pinned = push(dir, &registry.reference("team/change-freeze:0.1.0"));
    let (key, public) = key_pair(dir, "release");
    let (code, _, stderr) = run(dir, &["sign", "--key", key.to_str().unwrap(), &pinned]);
    assert_eq!(code, Some(0), "{stderr}");

    gate(dir, &pinned, Some(&public));
    let (code, json) = eval(dir);
    assert_eq!(code, Some(0), "{json:#}");
    let policy = &json["policies"][0];
    assert_eq!(policy["module"], pinned.as_str());
    let module_digest = sha256_hex(&std::fs::read(custom_policy()).unwrap());
    assert_eq!(policy["module_sha256"], module_digest.as_str());
    assert!(
        dir.join("store/blobs/sha256")
            .join(&module_digest)
            .is_file()
    );

    // inspect takes the reference too, and shows who signed; check names
    // the signer of each verified policy.
    let (code, stdout, stderr) = run(
        dir,
        &[
            "inspect",
            &pinned,
            "--json",
            "--key",
            public.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let inspected: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(inspected["name"], "change-freeze");
    assert_eq!(inspected["sha256"], module_digest.as_str());
    let signer = inspected["signed_by"].as_str().unwrap().to_string();
    assert_eq!(signer.len(), 16, "{inspected:#}");
    let (code, stdout, stderr) = run(dir, &["check", "--gate", "gate.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("policy 'change-freeze': signed by key {signer}")),
        "{stdout}"
    );

    // Pulled into a store of its own, it serves with the registry gone.
    let store = dir.join("air-gapped");
    let (code, stdout, stderr) = run(dir, &["pull", "--store", store.to_str().unwrap(), &pinned]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&module_digest), "{stdout}");
    drop(registry);
    // Beside a stock policy, which is part of the binary and asks for no
    // signature.
    let mut text = std::fs::read_to_string(dir.join("gate.toml")).unwrap();
    text.push_str("\n[[policy]]\nname = \"checklist\"\nmodule = \"builtin:preflight\"\nphases = [\"preflight\"]\n");
    std::fs::write(dir.join("gate.toml"), text).unwrap();
    let server = Server::start(
        &dir.join("gate.toml"),
        &[
            "--store",
            store.to_str().unwrap(),
            "--require-pins",
            "--require-signatures",
            "--trust-key",
            public.to_str().unwrap(),
        ],
    );
    let (status, decision) = server.evaluate("preflight-ready");
    assert_eq!(status, 200, "{decision:#}");
    // Both ran (the checklist holds for want of a plan in this bare gate,
    // which is no fault).
    assert_eq!(decision["policies"][0]["decision"], "allow", "{decision:#}");
    let faults: Vec<&serde_json::Value> = decision["policies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["error"].is_null())
        .collect();
    assert!(faults.is_empty(), "{decision:#}");
    assert_eq!(decision["policies"].as_array().unwrap().len(), 2);

    // A reload that needs a registry no one can reach keeps the old gate.
    gate(dir, &nowhere(&"2".repeat(64)), Some(&public));
    server.signal("HUP");
    crate::server::eventually("the reload to fail", || {
        server.metric("shipgate_gate_reloads_total{result=\"error\"}") >= 1.0
    });
    let (status, decision) = server.evaluate("preflight-ready");
    assert_eq!(
        (status, &decision["policies"][0]["module"]),
        (200, &serde_json::json!(pinned))
    );
    assert_eq!(decision["policies"][0]["decision"], "allow", "{decision:#}");
    assert_eq!(
        decision["policies"].as_array().unwrap().len(),
        2,
        "the old gate"
    );
}

/// The Wasm ecosystem's own crate both ways, on the same registry:
/// oci-wasm (what `wkg` pulls and pushes with) reads what `shipgate push`
/// wrote as its `WasmConfig`, and a component oci-wasm pushed is pulled by
/// digest, checked and run by shipgate.
#[test]
fn oci_wasm_reads_what_shipgate_pushes_and_shipgate_runs_what_oci_wasm_pushes() {
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::secrets::RegistryAuth;

    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let module = std::fs::read(custom_policy()).unwrap();
    let first = push(dir, &registry.reference("team/change-freeze:0.1.0"));
    // The same file under the same name: the same digest under another tag.
    let again = push(dir, &registry.reference("team/change-freeze:latest"));
    let digest_of = |pinned: &str| pinned.rsplit('@').next().unwrap().to_string();
    assert_eq!(digest_of(&first), digest_of(&again));
    // SOURCE_DATE_EPOCH sets `created`, or is refused before anything is sent.
    let module_path = custom_policy();
    let module_arg = module_path.to_str().unwrap();
    let dated = registry.reference("team/change-freeze:dated");
    let output = shipgate_in(dir)
        .env("SHIPGATE_STORE", dir.join("store"))
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["push", module_arg, &dated])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    for bad in ["-1", "1e9", "253402300800"] {
        let output = shipgate_in(dir)
            .env("SOURCE_DATE_EPOCH", bad)
            .args([
                "push",
                module_arg,
                &registry.reference("team/change-freeze:bad"),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("SOURCE_DATE_EPOCH=\"{bad}\" is not a time")),
            "{stderr}"
        );
    }

    let client = oci_wasm::WasmClient::new(oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    }));
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pushed: oci_client::Reference = format!("{}/team/change-freeze:0.1.0", registry.address)
        .parse()
        .unwrap();
    let (manifest, config, _) = tokio
        .block_on(client.pull_manifest_and_config(&pushed, &RegistryAuth::Anonymous))
        .expect("oci-wasm reads shipgate's artifact");
    assert_eq!(
        (config.architecture.as_str(), config.os.as_str()),
        ("wasm", "wasip2")
    );
    assert_eq!(
        config.layer_digests,
        vec![manifest.layers[0].digest.clone()]
    );
    assert_eq!(
        config.created.timestamp(),
        0,
        "reproducible: the epoch unless SOURCE_DATE_EPOCH"
    );
    let dated: oci_client::Reference = format!("{}/team/change-freeze:dated", registry.address)
        .parse()
        .unwrap();
    let (_, dated, _) = tokio
        .block_on(client.pull_manifest_and_config(&dated, &RegistryAuth::Anonymous))
        .unwrap();
    assert_eq!(dated.created.timestamp(), 1_700_000_000);
    let component = config
        .component
        .expect("os wasip2 calls for the component section");
    // The names oci-wasm derives from the component's own world: the same
    // exports, and every interface it imports (oci-wasm also lists the
    // world's type names, `phase` and the like, which are not interfaces).
    let derived = oci_wasm::Component::from_raw_component(&module).unwrap();
    assert_eq!(component.exports, derived.exports);
    let interfaces: Vec<&String> = derived.imports.iter().filter(|i| i.contains('/')).collect();
    assert_eq!(component.imports.iter().collect::<Vec<_>>(), interfaces);
    assert_eq!(
        component.exports,
        ["describe", "validate-config", "evaluate"]
    );
    assert!(
        component
            .imports
            .iter()
            .any(|i| i.starts_with("shipgate:policy/types@")),
        "{:?}",
        component.imports
    );
    let image = tokio
        .block_on(client.pull(&pushed, &RegistryAuth::Anonymous))
        .unwrap();
    assert_eq!(image.layers[0].data.as_ref(), module.as_slice());

    // Pushed by oci-wasm, as `wkg oci push` does; shipgate pins, pulls, runs.
    let (config, layer) = oci_wasm::WasmConfig::from_raw_component(module.clone(), None).unwrap();
    let theirs: oci_client::Reference =
        format!("{}/ecosystem/change-freeze:1.0.0", registry.address)
            .parse()
            .unwrap();
    let response = tokio
        .block_on(client.push(&theirs, &RegistryAuth::Anonymous, layer, config, None))
        .unwrap();
    let digest = response
        .manifest_url
        .rsplit('/')
        .next()
        .and_then(|last| last.strip_prefix("sha256:"))
        .unwrap_or_else(|| {
            panic!(
                "a manifest URL ending in its digest: {}",
                response.manifest_url
            )
        })
        .to_string();
    let pinned = format!(
        "{}@sha256:{digest}",
        registry.reference("ecosystem/change-freeze")
    );
    let (code, stdout, stderr) = run(dir, &["pull", &pinned]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&sha256_hex(&module)), "{stdout}");
    gate(dir, &pinned, None);
    let (code, json) = eval(dir);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["policies"][0]["module"], pinned.as_str());
    assert_eq!(
        json["policies"][0]["module_sha256"],
        sha256_hex(&module).as_str()
    );
}

#[test]
fn unsigned_wrongly_signed_tampered_oversized_and_unreachable_modules_fail_closed() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_, public) = key_pair(dir, "release");
    let (other_key, _) = key_pair(dir, "other");

    // Unsigned.
    let unsigned = push(dir, &registry.reference("team/unsigned:1"));
    gate(dir, &unsigned, Some(&public));
    let (code, json) = eval(dir);
    assert_eq!(code, Some(1));
    assert!(fault(&json).contains("is not signed"), "{json:#}");

    // Signed, by another key.
    let (code, _, stderr) = run(
        dir,
        &["sign", "--key", other_key.to_str().unwrap(), &unsigned],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, json) = eval(dir);
    assert_eq!(code, Some(1));
    assert!(
        fault(&json).contains("no signature verifies with key"),
        "{json:#}"
    );

    // Tampered in the store after the pull.
    let module_digest = sha256_hex(&std::fs::read(custom_policy()).unwrap());
    let stored = dir.join("store/blobs/sha256").join(&module_digest);
    std::fs::write(&stored, b"\0asm not the module").unwrap();
    gate(dir, &unsigned, None);
    let (code, json) = eval(dir);
    assert_eq!(code, Some(1));
    assert!(fault(&json).contains("the store was altered"), "{json:#}");

    // A digest the registry does not hold.
    let missing = format!(
        "{}@sha256:{}",
        registry.reference("team/unsigned"),
        "0".repeat(64)
    );
    gate(dir, &missing, None);
    let (code, json) = eval(dir);
    assert_eq!(code, Some(1));
    assert!(
        fault(&json).contains("no such module in the registry"),
        "{json:#}"
    );

    // Larger than the gate's limit, refused before its download completes.
    let oversized = push_raw_artifact(&registry, "team/huge", 3 << 20);
    std::fs::write(
        dir.join("gate.toml"),
        format!("name = \"g\"\n[limits]\nmax_module_mib = 2\n[[policy]]\nname = \"huge\"\nmodule = \"{oversized}\"\nphases = [\"preflight\"]\n"),
    )
    .unwrap();
    let (code, json) = eval(dir);
    assert_eq!(code, Some(1));
    assert!(
        fault(&json).contains("more than the limit of 2097152"),
        "{json:#}"
    );

    // A registry that is not there.
    gate(dir, &nowhere(&"1".repeat(64)), None);
    let (code, json) = eval(dir);
    assert_eq!(code, Some(1));
    assert!(fault(&json).contains("cannot connect"), "{json:#}");
}

/// A registry that accepts connections and never answers holds nothing:
/// the module fails closed within the deadline, naming the registry.
#[test]
fn a_registry_that_never_answers_fails_closed_within_the_deadline() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepted by the kernel's backlog, and never read or answered.
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    gate(
        dir,
        &format!(
            "oci://127.0.0.1:{port}/team/rules@sha256:{}",
            "2".repeat(64)
        ),
        None,
    );
    let started = Instant::now();
    let output = shipgate_in(dir)
        .env("SHIPGATE_STORE", dir.join("store"))
        .env("SHIPGATE_REGISTRY_TIMEOUT_SECONDS", "2")
        .args([
            "eval",
            "--phase",
            "preflight",
            "--gate",
            "gate.toml",
            "--format",
            "json",
        ])
        .arg("--snapshot")
        .arg(snapshot("preflight-ready"))
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{json:#}");
    assert!(
        fault(&json).contains(&format!(
            "oci://127.0.0.1:{port}/team/rules@sha256:{}: the registry did not answer within 2 s",
            "2".repeat(64)
        )),
        "{json:#}"
    );
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    drop(silent);
}

/// Uploads a Wasm artifact whose layer is `size` bytes straight through the
/// distribution API (what `shipgate push` would refuse to publish) and
/// returns its pinned reference.
fn push_raw_artifact(registry: &Registry, repository: &str, size: usize) -> String {
    use sha2::{Digest, Sha256};
    let client = reqwest::blocking::Client::new();
    let base = format!("http://{}/v2/{repository}", registry.address);
    let upload = |bytes: Vec<u8>| {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let started = client
            .post(format!("{base}/blobs/uploads/"))
            .send()
            .unwrap();
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", registry.address)
        };
        let separator = if url.contains('?') { '&' } else { '?' };
        let put = client
            .put(format!("{url}{separator}digest={digest}"))
            .body(bytes.clone())
            .send()
            .unwrap();
        assert!(put.status().is_success(), "{}", put.status());
        (digest, bytes.len())
    };
    let (layer, layer_size) = upload(vec![0u8; size]);
    let (config, config_size) = upload(br#"{"architecture":"wasm","os":"wasip2"}"#.to_vec());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": config, "size": config_size},
        "layers": [{"mediaType": "application/wasm", "digest": layer, "size": layer_size}],
    })
    .to_string();
    let put = client
        .put(format!("{base}/manifests/v1"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    format!(
        "oci://{}/{repository}@sha256:{}",
        registry.address,
        hex::encode(Sha256::digest(manifest.as_bytes()))
    )
}

#[test]
fn serve_refuses_tags_without_digests_and_unsigned_modules_when_required() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let tagged = registry.reference("team/rules:latest");
    push(dir, &tagged);
    gate(dir, &tagged, None);
    let serve = |args: &[&str]| {
        let output = Server::command()
            .args(["--listen", "127.0.0.1:0", "--gate"])
            .arg(dir.join("gate.toml"))
            .args(args)
            .env("SHIPGATE_STORE", dir.join("store"))
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = serve(&[]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("names no digest"), "{stderr}");

    // eval resolves the tag and warns.
    let (code, json) = eval(dir);
    assert_eq!(code, Some(0), "{json:#}");

    let pinned = push(dir, &tagged);
    gate(dir, &pinned, None);
    // The keys that may sign are the server's own: without one,
    // --require-signatures cannot start.
    let (code, stderr) = serve(&["--require-signatures"]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("--trust-key"), "{stderr}");
    // Unsigned, the module is refused by the trusted key.
    let (_, trusted) = key_pair(dir, "trusted");
    let trust = [
        "--require-signatures",
        "--trust-key",
        trusted.to_str().unwrap(),
    ];
    let (code, stderr) = serve(&trust);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("signature"), "{stderr}");
    // Signed by a key the gate names but the server does not trust: whoever
    // edits the gate cannot bring their own key.
    let (intruder, intruder_public) = key_pair(dir, "intruder");
    let (code, _, stderr) = run(dir, &["sign", "--key", intruder.to_str().unwrap(), &pinned]);
    assert_eq!(code, Some(0), "{stderr}");
    gate(dir, &pinned, Some(&intruder_public));
    let (code, stderr) = serve(&trust);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("is not one the server trusts (--trust-key)"),
        "{stderr}"
    );
    std::fs::write(
        dir.join("gate.toml"),
        "name = \"g\"\n[[policy]]\nname = \"local\"\nmodule = \"rules.wasm\"\nphases = [\"abort\"]\n",
    )
    .unwrap();
    let (code, stderr) = serve(&["--require-pins"]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(stderr.contains("--require-pins"), "{stderr}");
}

/// A module named by URL, pinned by its sha256: served over loopback HTTP,
/// it decides; a pin it does not match fails closed; no pin is refused.
#[test]
fn a_module_from_a_url_is_pinned_by_its_sha256() {
    let module = std::fs::read(custom_policy()).unwrap();
    let digest = sha256_hex(&module);
    let app = axum::Router::new().route(
        "/policies/change_freeze.wasm",
        axum::routing::get(move || {
            let module = module.clone();
            async move { module }
        }),
    );
    let address = crate::server::serve_on_loopback(app);
    let url = format!("http://{address}/policies/change_freeze.wasm");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let write = |pin: Option<&str>| {
        let pin = pin.map_or_else(String::new, |p| format!("sha256 = \"{p}\"\n"));
        std::fs::write(
            dir.join("gate.toml"),
            format!("name = \"g\"\n[[policy]]\nname = \"change-freeze\"\nmodule = \"{url}\"\n{pin}phases = [\"preflight\"]\n"),
        )
        .unwrap();
    };
    write(Some(&digest));
    let (code, json) = eval(dir);
    assert_eq!(code, Some(0), "{json:#}");
    assert_eq!(json["policies"][0]["module_sha256"], digest.as_str());

    write(Some(&"3".repeat(64)));
    let (code, json) = eval(dir);
    assert_eq!(code, Some(1));
    assert!(
        fault(&json).contains(&format!("has sha256 {digest}, but the gate pins 333")),
        "{json:#}"
    );

    write(None);
    let (code, _, stderr) = eval_raw(dir, &[]);
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("a module named by URL needs its sha256 pin"),
        "{stderr}"
    );
}

/// References that cannot mean what is asked are usage errors, before any
/// registry is asked.
#[test]
fn bad_references_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let module = custom_policy();
    let module = module.to_str().unwrap();
    let digest = format!("@sha256:{}", "4".repeat(64));
    for (args, message) in [
        (
            vec!["push", module, "oci://127.0.0.1:1/team/rules"],
            "name a tag or a digest",
        ),
        (
            vec![
                "push",
                module,
                &format!("oci://127.0.0.1:1/team/rules{digest}"),
            ],
            "push to a tag",
        ),
        (
            vec!["sign", "--key", "k.pem", "oci://127.0.0.1:1/team/rules:v1"],
            "sign a module by digest",
        ),
        (
            vec!["inspect", "oci://127.0.0.1:1/Team/rules:v1"],
            "the repository must be lowercase",
        ),
        (
            vec!["pull", "oci://127.0.0.1:1/team/../rules:v1"],
            "the repository must be lowercase",
        ),
    ] {
        let (code, _, stderr) = run(dir, &args);
        assert_eq!(code, Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
}

/// Registries that ask for credentials: a loopback stand-in that answers
/// as the distribution spec's token authentication does (401 with a Bearer
/// challenge, a token service that takes Basic credentials), and serves one
/// module only to a request with its token.
#[test]
fn credentials_from_the_command_line_or_the_docker_config_get_a_token() {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let module = std::fs::read(custom_policy()).unwrap();
    let module_digest = sha256_hex(&module);
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#.to_vec();
    let config_digest = sha256_hex(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": format!("sha256:{config_digest}"), "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": format!("sha256:{module_digest}"), "size": module.len()}],
    })
    .to_string();
    let challenge = |headers: &HeaderMap| {
        let host = headers[header::HOST].to_str().unwrap().to_string();
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(r#"Bearer realm="http://{host}/token",service="stand-in",scope="repository:team/rules:pull""#),
            )],
        )
            .into_response()
    };
    let authorized = |headers: &HeaderMap| {
        headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v == "Bearer tok-123")
    };
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::get(
                |headers: HeaderMap, query: axum::extract::RawQuery| async move {
                    let basic = format!(
                        "Basic {}",
                        base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            "ci:s3cret"
                        )
                    );
                    let query = query.0.unwrap_or_default();
                    let asked = query.contains("service=stand-in")
                        && query.contains("scope=repository%3Ateam%2Frules%3Apull");
                    if asked
                        && headers
                            .get(header::AUTHORIZATION)
                            .is_some_and(|v| *v == *basic)
                    {
                        (StatusCode::OK, r#"{"token": "tok-123"}"#).into_response()
                    } else {
                        StatusCode::UNAUTHORIZED.into_response()
                    }
                },
            ),
        )
        .route(
            "/v2/team/rules/manifests/v1",
            axum::routing::get(move |headers: HeaderMap| async move {
                if !authorized(&headers) {
                    return challenge(&headers);
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/vnd.oci.image.manifest.v1+json",
                    )],
                    manifest,
                )
                    .into_response()
            }),
        )
        .route(
            "/v2/team/rules/blobs/{digest}",
            axum::routing::get(
                move |headers: HeaderMap,
                      axum::extract::Path(digest): axum::extract::Path<String>| {
                    let module = module.clone();
                    async move {
                        if !authorized(&headers) {
                            return challenge(&headers);
                        }
                        match digest == format!("sha256:{module_digest}") {
                            true => module.into_response(),
                            false => StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                },
            ),
        )
        .route(
            "/v2/team/rules/manifests/{tag}",
            axum::routing::get(|| async { StatusCode::NOT_FOUND }),
        );
    let address = crate::server::serve_on_loopback(app);
    let reference = format!("oci://{address}/team/rules:v1");
    let dir = tempfile::tempdir().unwrap();
    let pull = |args: &[&str], password: &str, docker_config: &Path| {
        let output = shipgate_in(dir.path())
            .env("SHIPGATE_STORE", dir.path().join("store"))
            .env("DOCKER_CONFIG", docker_config)
            .arg("pull")
            .args(args)
            .arg(&reference)
            .write_stdin(password)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let nowhere = dir.path().join("no-docker-config");
    let (code, stderr) = pull(
        &["--username", "ci", "--password-stdin"],
        "s3cret\n",
        &nowhere,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = pull(
        &["--username", "ci", "--password-stdin"],
        "wrong\n",
        &nowhere,
    );
    assert_eq!(code, Some(77), "credentials refused: {stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the password is never shown: {stderr}"
    );
    let (code, stderr) = pull(&[], "", &nowhere);
    assert_eq!(code, Some(77), "no credentials: {stderr}");

    let docker = dir.path().join("docker");
    std::fs::create_dir(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        serde_json::json!({"auths": {address.to_string(): {"auth": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ci:s3cret")}}})
            .to_string(),
    )
    .unwrap();
    let (code, stderr) = pull(&[], "", &docker);
    assert_eq!(code, Some(0), "{stderr}");
}

/// A registry that misbehaves with credentials at stake: a loopback
/// stand-in that asks for Basic credentials, then answers a manifest larger
/// than any module's (with its length announced, and streamed without),
/// redirects a pull to another origin, and sends an upload to another
/// origin. Nothing is read past the cap, and the other
/// origin never sees the credentials.
#[test]
fn an_oversized_manifest_a_redirect_and_an_upload_elsewhere_keep_the_credentials_home() {
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;

    // The other origin records every request it gets and whether it carried
    // credentials.
    let seen: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let record = seen.clone();
    let elsewhere = crate::server::serve_on_loopback(axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap| {
            let record = record.clone();
            async move {
                let credentials = headers.contains_key(header::AUTHORIZATION);
                record
                    .lock()
                    .unwrap()
                    .push((uri.path().to_string(), credentials));
                StatusCode::NOT_FOUND
            }
        },
    ));
    // Every route asks for Basic credentials first, as a private registry
    // does, so there are credentials to keep home.
    let signed_in = |headers: &HeaderMap, answer: axum::response::Response| {
        let basic = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ci:s3cret");
        let authorization = headers.get(header::AUTHORIZATION);
        if authorization.is_some_and(|v| *v == *format!("Basic {basic}")) {
            return answer;
        }
        let challenge = [(header::WWW_AUTHENTICATE, r#"Basic realm="stand-in""#)];
        (StatusCode::UNAUTHORIZED, challenge).into_response()
    };
    let manifest = |body: axum::body::Body| {
        let media_type = "application/vnd.oci.image.manifest.v1+json";
        ([(header::CONTENT_TYPE, media_type)], body).into_response()
    };
    let redirect =
        |status: StatusCode, to: String| (status, [(header::LOCATION, to)]).into_response();
    // One byte over the 4 MiB a manifest may have, its length announced.
    let big = || axum::body::Body::from(vec![b' '; (4 << 20) + 1]);
    // Past 4 MiB in chunks, with no length announced: the cap must hold
    // while reading.
    let streamed = || {
        let chunks = (0..65).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 << 10]));
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    };
    let registry = crate::server::serve_on_loopback(
        axum::Router::new()
            .route(
                "/v2/team/big/manifests/v1",
                axum::routing::get(move |headers: HeaderMap| async move {
                    signed_in(&headers, manifest(big()))
                }),
            )
            .route(
                "/v2/team/streamed/manifests/v1",
                axum::routing::get(move |headers: HeaderMap| async move {
                    signed_in(&headers, manifest(streamed()))
                }),
            )
            .route(
                "/v2/team/moved/manifests/v1",
                axum::routing::get(move |headers: HeaderMap| async move {
                    let to = format!("http://{elsewhere}/v2/team/moved/manifests/v1");
                    signed_in(&headers, redirect(StatusCode::TEMPORARY_REDIRECT, to))
                }),
            )
            .route(
                "/v2/team/push/blobs/{digest}",
                axum::routing::head(move |headers: HeaderMap| async move {
                    signed_in(&headers, StatusCode::NOT_FOUND.into_response())
                }),
            )
            .route(
                "/v2/team/push/blobs/uploads/",
                axum::routing::post(move |headers: HeaderMap| async move {
                    let to = format!("http://{elsewhere}/upload/1");
                    signed_in(&headers, redirect(StatusCode::ACCEPTED, to))
                }),
            ),
    );
    let dir = tempfile::tempdir().unwrap();
    let shipgate = |args: &[&str]| {
        let output = shipgate_in(dir.path())
            .env("SHIPGATE_STORE", dir.path().join("store"))
            .env("DOCKER_CONFIG", dir.path().join("no-docker-config"))
            .args(args)
            .args(["--username", "ci", "--password-stdin"])
            .write_stdin("s3cret\n")
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, stderr) = shipgate(&["pull", &format!("oci://{registry}/team/big:v1")]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the answer is larger than 4194304 bytes"),
        "{stderr}"
    );

    let (code, stderr) = shipgate(&["pull", &format!("oci://{registry}/team/streamed:v1")]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the answer is larger than 4194304 bytes"),
        "{stderr}"
    );

    let (code, stderr) = shipgate(&["pull", &format!("oci://{registry}/team/moved:v1")]);
    assert_ne!(code, Some(0), "{stderr}");
    assert_eq!(
        *seen.lock().unwrap(),
        [("/v2/team/moved/manifests/v1".to_string(), false)],
        "the redirect is followed without the registry's credentials"
    );

    let module = custom_policy();
    let (code, stderr) = shipgate(&[
        "push",
        module.to_str().unwrap(),
        &format!("oci://{registry}/team/push:v1"),
    ]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the registry sends the upload elsewhere"),
        "{stderr}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "nothing is uploaded to the other origin"
    );
}
