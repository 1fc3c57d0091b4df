#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need when
# it is missing, then runs every test (`cargo test --workspace`). Arguments
# replace `--workspace`: ./test.sh -p shipgate --test e2e fuzz::
#
# Needs: rustup and cargo; on Debian or Ubuntu, root or sudo for packages.
set -euo pipefail
cd "$(dirname "$0")"

# rustup targets: the stock and test policies are built for wasm32-wasip2.
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Debian packages the tests run for real, as "command package" pairs: a
# package is installed only when its command is missing.
NEEDED=(
    "prometheus prometheus"   # a real Prometheus server (and promtool) on loopback
    "promtool prometheus"
    "zsh zsh"                 # shell completions are loaded into each shell
    "fish fish"
    "man man-db"              # the man page is rendered
    "buildah buildah"         # the container image is built from scratch
    "busybox busybox-static"  # the -shell variant's sh, for GitLab jobs
    "docker-registry docker-registry"  # a real OCI registry for policy modules
    "openssl openssl"         # key pairs like cosign's, to sign modules
    "chromium chromium"       # a real browser renders the rollout report
    "npm npm"                 # fetches Mermaid, which draws the Markdown charts
    "Rscript r-base-core"     # R checks the judge's statistics (wilcox.test)
    "shellcheck shellcheck"   # checks every script the action and the CI files run
    "python3 python3-venv"    # a venv for check-jsonschema (below)
)

missing=()
for pair in "${NEEDED[@]}"; do
    read -r command package <<<"$pair"
    if ! command -v "$command" >/dev/null && [[ ! " ${missing[*]} " =~ " $package " ]]; then
        missing+=("$package")
    fi
done

if ((${#missing[@]})); then
    if ! command -v apt-get >/dev/null; then
        echo "test.sh: the tests need ${missing[*]}; install them with your package manager" >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    echo "test.sh: installing ${missing[*]}" >&2
    # Installing a package must not start its daemon: the tests start their
    # own on loopback ports. A policy-rc.d that exits 101 forbids the start.
    remove_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod 755 /usr/sbin/policy-rc.d
        remove_policy=1
    fi
    $sudo apt-get update -qq || true
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    if [ "$remove_policy" = 1 ]; then $sudo rm -f /usr/sbin/policy-rc.d; fi
fi

# Mermaid, as GitHub and GitLab draw the charts of `--format markdown`: a
# test renders the charts with it in Chromium. Major version 11, as GitHub;
# one exact release, so every run renders with the same code.
MERMAID=11.17.2
if ! grep -qs "\"version\": \"$MERMAID\"" target/mermaid/node_modules/mermaid/package.json; then
    echo "test.sh: installing mermaid@$MERMAID into target/mermaid" >&2
    npm install --silent --no-audit --no-fund --prefix target/mermaid "mermaid@$MERMAID" >/dev/null
fi

# taplo, the TOML toolkit behind editors' TOML support (VS Code's Even Better
# TOML): a test validates every gate file against schemas/gate.schema.json
# with it, as an editor does. One exact release.
TAPLO=0.7.0
if ! grep -qs "\"version\": \"$TAPLO\"" target/taplo/node_modules/@taplo/cli/package.json; then
    echo "test.sh: installing @taplo/cli@$TAPLO into target/taplo" >&2
    npm install --silent --no-audit --no-fund --prefix target/taplo "@taplo/cli@$TAPLO" >/dev/null
fi

# check-jsonschema, for the schemas of GitHub workflows and actions and of
# GitLab CI it bundles: a test validates the action, the component and the
# example pipelines with them. One exact release, in a venv under target/.
CHECK_JSONSCHEMA=0.39.0
if ! target/check-jsonschema/bin/check-jsonschema --version 2>/dev/null | grep -qx "check-jsonschema, version $CHECK_JSONSCHEMA"; then
    echo "test.sh: installing check-jsonschema==$CHECK_JSONSCHEMA into target/check-jsonschema" >&2
    python3 -m venv --clear target/check-jsonschema
    target/check-jsonschema/bin/pip install --quiet --disable-pip-version-check "check-jsonschema==$CHECK_JSONSCHEMA"
fi

if (($#)); then
    exec cargo test "$@"
fi
exec cargo test --workspace
