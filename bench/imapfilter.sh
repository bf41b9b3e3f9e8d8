#!/usr/bin/env bash
# A mailbox worked end to end: taxinbox `run --once` (fetch, evaluate, commit with the log, move) beside
# imapfilter running the same classification as a Lua configuration (bench/peer_rules.py) on an identical
# mailbox. See benches/peers.rs and bench/README.md.
#   bench/imapfilter.sh                              # 2000 corpus mails
#   TAXINBOX_BENCH_MAILS=5000 TAXINBOX_BENCH_MAIL_KB=135 bench/imapfilter.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v imapfilter >/dev/null 2>&1; then
  echo "installing imapfilter (Debian package)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq imapfilter >/dev/null
fi
if [ ! -x /usr/lib/dovecot/imap ]; then
  scripts/test-services
fi
imapfilter -V | head -1
exec cargo bench --bench peers -- imapfilter
