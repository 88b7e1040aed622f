#!/usr/bin/env bash
# npm ci + tsc into dist/, skipped when nothing changed since the last build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
stamp=.build-stamp
sum="$(cat package.json package-lock.json tsconfig.json src/*.ts | sha256sum | cut -d' ' -f1)"
if [[ -f $stamp && "$(cat $stamp)" == "$sum" && -f dist/main.js && -d node_modules ]]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
npx tsc -p tsconfig.json
echo "$sum" > $stamp
