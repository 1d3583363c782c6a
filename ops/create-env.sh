#!/bin/sh
# `make up` on a fresh clone: when there is no .env, create it from .env.example with a
# fresh random SECRET_KEY and POSTGRES_PASSWORD, readable by its owner only (0600), and
# say so and where. An existing .env keeps every line it has (the PostgreSQL volume was
# initialised with its password); settings .env.example gained since it was made (an
# image name for a new profile, say) are appended, secrets never, and the command says which.
#
#   ops/create-env.sh [ENV_FILE] [EXAMPLE]      (defaults: .env .env.example)
set -eu

env_file=${1:-.env}
example=${2:-.env.example}
[ -r "$example" ] || { echo "create-env: no $example to copy" >&2; exit 1; }

if [ -e "$env_file" ]; then
    added=$(awk -F= '
        NR == FNR { if ($0 ~ /^[A-Za-z_][A-Za-z0-9_]*=/) have[$1] = 1; next }
        /^[A-Z_][A-Z0-9_]*=/ && !($1 in have) && $1 != "SECRET_KEY" && $1 != "POSTGRES_PASSWORD"
    ' "$env_file" "$example")
    if [ -n "$added" ]; then
        printf '%s\n' "$added" >>"$env_file"
        echo "Added to $env_file from $example (new settings): $(printf '%s\n' "$added" | cut -d= -f1 | tr '\n' ' ')"
    fi
    exit 0
fi

# Hex from the kernel's CSPRNG: URL-safe (POSTGRES_PASSWORD goes into DATABASE_URL).
random_hex() { od -An -N "$1" -tx1 /dev/urandom | tr -d ' \n'; }

umask 077
tmp="$env_file.tmp.$$"
trap 'rm -f "$tmp"' EXIT
awk -v key="$(random_hex 40)" -v pw="$(random_hex 24)" '
    /^SECRET_KEY=$/ { print "SECRET_KEY=" key; set++; next }
    /^POSTGRES_PASSWORD=$/ { print "POSTGRES_PASSWORD=" pw; set++; next }
    { print }
    END { if (set != 2) exit 3 }
' "$example" >"$tmp" || { echo "create-env: $example has no empty SECRET_KEY= and POSTGRES_PASSWORD= lines" >&2; exit 1; }
chmod 600 "$tmp"
mv "$tmp" "$env_file"
trap - EXIT
where=$(cd "$(dirname "$env_file")" && pwd)/$(basename "$env_file")
echo "Created $where from $example with a fresh random SECRET_KEY and POSTGRES_PASSWORD (mode 0600)."
echo "Keep it: the database volume is initialised with that password. Other settings: docs/docker.md."
