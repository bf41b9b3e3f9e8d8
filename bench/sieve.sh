#!/usr/bin/env bash
# Rule evaluation per message: taxinbox's pipeline (parse, extract, Rhai rules, client, deadlines) beside
# Pigeonhole's sieve-filter (one process over the mailbox) and sieve-test (one process per message), running the
# same classification written as Sieve by bench/peer_rules.py. See benches/peers.rs and bench/README.md.
#   bench/sieve.sh                                   # 2000 corpus mails
#   TAXINBOX_BENCH_MAILS=5000 TAXINBOX_BENCH_MAIL_KB=135 bench/sieve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v sieve-filter >/dev/null 2>&1; then
  echo "installing dovecot-sieve (Pigeonhole: sieve-filter, sieve-test)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq dovecot-sieve >/dev/null
fi
if [ ! -x /usr/lib/dovecot/imap ]; then
  scripts/test-services
fi
exec cargo bench --bench peers -- sieve
