#!/usr/bin/env bash
# Points everything at a new image reference, for a release:
#
#   image/set-reference.sh ghcr.io/shipgate/shipgate:0.2.0
#
# image/REFERENCE is the one place the reference is kept; this rewrites it
# and every file in integrations/, docs/, templates/ (the GitLab CI/CD
# component), action.yml (the GitHub Action) and README.md that names the
# old one (a test checks that no file names another).
set -euo pipefail
cd "$(dirname "$0")/.."

new="${1:?usage: image/set-reference.sh REGISTRY/REPOSITORY:TAG}"
if [[ ! "$new" =~ ^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+:[A-Za-z0-9_.-]+$ ]]; then
    echo "image/set-reference.sh: '$new' is not REGISTRY/REPOSITORY:TAG" >&2
    exit 64
fi
old=$(cat image/REFERENCE)
# grep: 0 found, 1 none, more is an error.
found=$(grep -rlF -- "$old" integrations docs templates action.yml README.md) || [ $? = 1 ] || exit 1
files=()
while IFS= read -r file; do
    [ -n "$file" ] && files+=("$file")
done <<<"$found"
for file in "${files[@]}"; do
    # Fixed strings both ways: a reference's dots are not regex wildcards.
    OLD="$old" NEW="$new" perl -pi -e 's/\Q$ENV{OLD}\E/$ENV{NEW}/g' "$file"
done
printf '%s\n' "$new" >image/REFERENCE
echo "image reference: $old -> $new (${#files[@]} files)"
