#!/bin/bash
# The alert rules (deploy/observability/prometheus/alerts.yml) with Debian's promtool:
# `promtool check rules` (syntax, templates) and `promtool test rules` on
# alerts_test.yml (each alert firing and not firing). promtool comes with the
# prometheus package (deploy/local/deps.sh installs it).
set -euo pipefail
dir="$(cd "$(dirname "$0")/../../deploy/observability/prometheus" && pwd)"
if ! command -v promtool >/dev/null; then
    echo "promtool not found: install Debian's prometheus package (deploy/local/deps.sh)" >&2
    exit 1
fi
cd "$dir"
promtool check rules alerts.yml
promtool test rules alerts_test.yml
