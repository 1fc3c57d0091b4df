//! The container image, built as the README says (`image/build.sh`, with
//! buildah: no daemon, vfs storage, chroot isolation) from scratch, and
//! checked from the outside: its labels and user, its files, and the
//! binary inside answering an evaluation and a health probe from its own
//! root filesystem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::server::Server;
use crate::support::{as_a_user, repo, snapshot};

/// The image the tests build: never the release's own reference.
const TAG: &str = "localhost/shipgate:e2e";

/// buildah with the tests' storage: vfs, no overlay mounts, no daemon.
fn buildah_command(args: &[&str]) -> Command {
    let mut command = Command::new("buildah");
    command.args(args).env("STORAGE_DRIVER", "vfs");
    command
}

fn buildah(args: &[&str]) -> Output {
    let output = buildah_command(args)
        .output()
        .expect("running buildah: ./test.sh installs it (Debian package buildah)");
    assert!(
        output.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Standard output of a process that must have exited with `code`.
fn exited_with(output: &Output, code: i32) -> String {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(
        output.status.code(),
        Some(code),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .trim()
        .to_string()
}

/// A container of an image, mounted: its root filesystem, removed with it.
struct Mounted {
    container: String,
    root: PathBuf,
}

impl Mounted {
    fn new(tag: &str) -> Mounted {
        let container = stdout(&buildah(&["from", "--pull-never", tag]));
        let root = PathBuf::from(stdout(&buildah(&["mount", &container])));
        Mounted { container, root }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = buildah_command(&["rm", &self.container]).output();
    }
}

/// `argv` run inside the image's root filesystem, as its user, with only
/// its environment: what a container runtime would do, minus namespaces.
fn in_image(root: &Path, config: &Value, argv: &[&str]) -> Command {
    // By its path on this machine: the command runs with the image's PATH.
    let chroot = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("chroot"))
        .find(|path| path.exists())
        .expect("chroot (coreutils) is on the PATH");
    let mut command = Command::new(chroot);
    command
        .arg(format!("--userspec={}", config["User"].as_str().unwrap()))
        .arg(root)
        .args(argv)
        .env_clear();
    for variable in config["Env"].as_array().unwrap() {
        let (name, value) = variable.as_str().unwrap().split_once('=').unwrap();
        command.env(name, value);
    }
    command
}

/// The image's entrypoint followed by `args`, as `docker run IMAGE ARGS`.
fn run_image(root: &Path, config: &Value, args: &[&str]) -> Command {
    let mut argv: Vec<&str> = config["Entrypoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    argv.extend(args);
    in_image(root, config, &argv)
}

/// An image the test built, removed from buildah's storage with it.
struct Built(String);

impl Drop for Built {
    fn drop(&mut self) {
        let _ = buildah_command(&["rmi", "--force", &self.0]).output();
    }
}

/// `image/build.sh ARGS`, as the README runs it, with buildah's daemonless
/// settings; the image is `tag`.
fn build(args: &[&str], tag: &str) -> Built {
    assert!(
        is_root(),
        "building and unpacking an image needs root (buildah with vfs storage, chroot)"
    );
    let built = as_a_user(&mut Command::new(repo().join("image/build.sh")))
        .args(args)
        .env("STORAGE_DRIVER", "vfs")
        .env("BUILDAH_ISOLATION", "chroot")
        .output()
        .expect("running image/build.sh");
    assert!(
        built.status.success(),
        "image/build.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    Built(tag.to_string())
}

/// An image's OCI configuration.
fn inspect(tag: &str) -> Value {
    let inspected: Value =
        serde_json::from_str(&stdout(&buildah(&["inspect", "--type", "image", tag]))).unwrap();
    inspected["OCIv1"].clone()
}

#[test]
fn the_image_builds_from_scratch_and_its_binary_decides_and_serves() {
    let _built = build(&["--tag", TAG], TAG);
    let inspected = inspect(TAG);
    let config = &inspected["config"];
    assert_eq!(config["User"], "65532:65532");
    let labels = &config["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert!(
        labels["org.opencontainers.image.source"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap();
    let commit = revision.strip_suffix("-dirty").unwrap_or(revision);
    assert!(commit.len() == 40 || revision == "unknown", "{revision}");
    assert_eq!(
        inspected["rootfs"]["diff_ids"].as_array().unwrap().len(),
        1,
        "one layer, on scratch"
    );

    let image = Mounted::new(TAG);
    let mut files: Vec<String> = Vec::new();
    list(&image.root, &image.root, &mut files);
    // The C runtime the binary links, and nothing else beside it.
    let (libraries, mut files): (Vec<String>, Vec<String>) =
        files.into_iter().partition(|f| f.starts_with("lib"));
    files.sort();
    assert_eq!(
        files,
        [
            "etc/group",
            "etc/passwd",
            "etc/ssl/certs/ca-certificates.crt",
            "home/shipgate/",
            "tmp/",
            "usr/local/bin/shipgate",
        ]
    );
    for library in [
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
    ] {
        assert!(
            libraries
                .iter()
                .any(|l| l.ends_with(&format!("/{library}"))),
            "{library} missing: {libraries:?}"
        );
    }
    assert_eq!(libraries.len(), 4, "{libraries:?}");

    // `cargo install` as the README gives it, into a scratch root, sharing
    // the image's build (same profile, same lock file).
    let root = tempfile::tempdir().unwrap();
    let installed = as_a_user(&mut Command::new(
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
    ))
    .args(["install", "--locked", "--path", "host"])
    .current_dir(repo())
    .env("CARGO_TARGET_DIR", repo().join("target/image"))
    .env("CARGO_INSTALL_ROOT", root.path())
    .output()
    .unwrap();
    assert!(
        installed.status.success(),
        "{}",
        String::from_utf8_lossy(&installed.stderr)
    );
    let version = Command::new(root.path().join("bin/shipgate"))
        .arg("-V")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("shipgate {}\n", env!("CARGO_PKG_VERSION"))
    );

    // An evaluation, as a pipeline step runs the image.
    std::fs::copy(
        snapshot("abort-rollback"),
        image.root.join("tmp/snapshot.json"),
    )
    .unwrap();
    let decided = run_image(
        &image.root,
        config,
        &[
            "eval",
            "--phase",
            "abort",
            "--snapshot",
            "/tmp/snapshot.json",
        ],
    )
    .output()
    .unwrap();
    let text = exited_with(&decided, 2);
    assert!(text.starts_with("ROLLBACK  abort"), "{text}");
    // The compiled policies are cached where the image says (its
    // XDG_CACHE_HOME), by its user: the next process loads, not compiles.
    let cached: Vec<_> = std::fs::read_dir(image.root.join("tmp/cache/shipgate"))
        .expect("the image's module cache")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cwasm"))
        .collect();
    assert!(!cached.is_empty(), "nothing cached");

    // The server, answering a probe and a decision.
    std::fs::copy(
        repo().join("examples/gate.toml"),
        image.root.join("tmp/gate.toml"),
    )
    .unwrap();
    let server = Server::spawn(run_image(
        &image.root,
        config,
        &[
            "serve",
            "--gate",
            "/tmp/gate.toml",
            "--listen",
            "127.0.0.1:0",
            "--shutdown-delay",
            "0s",
        ],
    ));
    let health = server.client().get(server.url("/healthz")).send().unwrap();
    assert_eq!(health.status(), 200);
    let (status, answer) = server.evaluate("abort-rollback");
    assert_eq!(
        (status, answer["decision"].as_str()),
        (200, Some("rollback"))
    );
}

/// GitLab runs a job's script with the image's own shell: the `-shell`
/// variant runs the shipped job's script as it is.
#[test]
fn the_shell_variant_runs_the_gitlab_jobs_script() {
    let tag = format!("{TAG}-shell");
    let _built = build(&["--tag", TAG, "--with-shell"], &tag);
    let config = inspect(&tag)["config"].clone();
    let image = Mounted::new(&tag);
    assert!(image.root.join("bin/sh").exists());

    // The CI/CD component's job, as the example pipeline includes it.
    let jobs = crate::ci_integrations::gitlab_pipeline();
    let job = &jobs["preflight:shipgate"];
    assert!(job["image"]["name"].as_str().unwrap().ends_with("-shell"));
    // The checkout, where GitLab starts the script.
    let checkout = image.root.join("tmp/checkout");
    std::fs::create_dir_all(&checkout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&checkout, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::copy(
        repo().join("integrations/gate.toml"),
        checkout.join("gate.toml"),
    )
    .unwrap();
    std::fs::copy(
        snapshot("preflight-blocked"),
        checkout.join("snapshot.json"),
    )
    .unwrap();
    let script = format!(
        "cd /tmp/checkout\n{}\n",
        crate::ci_integrations::job_script(job)
    );
    let mut shell = in_image(&image.root, &config, &["/bin/sh", "-c", &script]);
    for (name, value) in job["variables"].as_mapping().unwrap() {
        shell.env(name.as_str().unwrap(), value.as_str().unwrap());
    }
    let log = exited_with(&shell.output().unwrap(), 1);
    assert!(log.contains("shipgate exit code 1"), "{log}");
    let decision: Value = serde_json::from_str(
        &std::fs::read_to_string(checkout.join("shipgate-decision.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(decision["decision"], "deny");
    assert!(checkout.join("shipgate-junit.xml").exists());
}

/// Every file of the tree under `dir`, relative to `root`; directories
/// with nothing in them end with `/`.
fn list(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut empty = true;
    for entry in std::fs::read_dir(dir).unwrap() {
        empty = false;
        let path = entry.unwrap().path();
        if path.is_dir() {
            list(root, &path, out);
        } else {
            out.push(path.strip_prefix(root).unwrap().display().to_string());
        }
    }
    if empty && dir != root {
        out.push(format!("{}/", dir.strip_prefix(root).unwrap().display()));
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}
