#!/usr/bin/env bash
# IMAP throughput of taxinbox beside mbsync (isync) on the same private Dovecot mailbox, in one run:
# N load mails (default 2000) from INBOX to committed tasks, as mails/second and a ratio (benches/imap.rs), for
# SQLite MOVE (median of 3 runs), SQLite flag, PostgreSQL MOVE and PostgreSQL flag; on SQLite also the bytes written,
# on PostgreSQL also the database server's CPU time.
#   bench/imap.sh                                  # all four, 2000 mails
#   TAXINBOX_BENCH_MAIL_KB=135 bench/imap.sh       # mails padded to ~135 KB, like real traffic
#   TAXINBOX_BENCH_DB=sqlite TAXINBOX_BENCH_ACK=move TAXINBOX_BENCH_RUNS=5 bench/imap.sh
#   TAXINBOX_BENCH_MAILS=5000 TAXINBOX_BENCH_DB=postgres bench/imap.sh
# Needs Dovecot and PostgreSQL (scripts/test-services installs them); installs isync for mbsync when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mbsync >/dev/null 2>&1; then
  echo "installing isync (mbsync, Debian package)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq isync >/dev/null
fi
if [ "${TAXINBOX_BENCH_DB:-}" != sqlite ] && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  scripts/test-services
elif [ ! -x /usr/lib/dovecot/imap ]; then
  scripts/test-services
fi
mbsync --version
exec cargo bench --bench imap
