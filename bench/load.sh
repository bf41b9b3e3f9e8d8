#!/usr/bin/env bash
# Load: 100,000 mails (~135 KB each, like real traffic) waiting in a private Dovecot across 10 folders, worked by
# one `taxinbox run` (release build, 10 mailboxes configured) until all are committed; prints the throughput of
# every tenth of the load and the daemon's memory (VmRSS per tenth, VmHWM at the end). See benches/load.rs.
#   bench/load.sh                                          # 100,000 mails, SQLite (needs ~30 GB of free disk)
#   TAXINBOX_BENCH_MAILS=10000 bench/load.sh               # smaller
#   TAXINBOX_BENCH_MAIL_KB=0 bench/load.sh                 # corpus mail as it is (~5 KB)
#   TAXINBOX_BENCH_DB=postgres TAXINBOX_BENCH_MAILBOXES=4 bench/load.sh
# Needs Dovecot (scripts/test-services installs it, and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${TAXINBOX_BENCH_DB:-sqlite}" = postgres ] || [ ! -x /usr/lib/dovecot/imap ]; then
  scripts/test-services
fi
exec cargo bench --bench load
