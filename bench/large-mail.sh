#!/usr/bin/env bash
# Large mail: N client mails (default 12), each carrying a scan of about M MB (default 9) that does not compress
# (base64 of random bytes, like a real PDF or JPEG), taken by one `taxinbox ingest` (release build) into a fresh
# SQLite store with the default settings; prints the wall time and the process's peak memory (maximum RSS, GNU time).
# What it shows: how many copies of a large mail the path holds at once, the store's writes included.
#   bench/large-mail.sh
#   TAXINBOX_BENCH_MAILS=6 TAXINBOX_BENCH_MAIL_MB=20 bench/large-mail.sh
#   TAXINBOX_BIN=/tmp/taxinbox-before bench/large-mail.sh     # another build, for a before/after pair
set -euo pipefail
cd "$(dirname "$0")/.."
mails=${TAXINBOX_BENCH_MAILS:-12}
mb=${TAXINBOX_BENCH_MAIL_MB:-9}
bin=${TAXINBOX_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --locked --bin taxinbox
  bin=target/release/taxinbox
fi
if [ ! -x /usr/bin/time ]; then
  echo "installing time (GNU time, Debian package)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq time >/dev/null
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work/mail" "$mails" "$mb" <<'EOF'
import base64, os, random, sys
out, mails, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(out)
rng = random.Random(1)
for i in range(mails):
    scan = rng.randbytes(mb * 1024 * 1024 + i * 100_000)
    head = (
        "From: office@veter-snab.example\r\nTo: buh@debet-service.example\r\n"
        f"Subject: Сканы первичных документов за ноябрь, часть {i + 1}\r\n"
        f"Date: Fri, 20 Nov 2026 10:00:00 +0300\r\nMessage-ID: <scan-{i}@veter-snab.example>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Добрый день! Высылаем сканы первичных документов за ноябрь.\r\n"
        "--b\r\nContent-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
        "Content-Disposition: attachment; filename=\"scan.pdf\"\r\n\r\n"
    )
    body = base64.encodebytes(scan).replace(b"\n", b"\r\n")
    with open(os.path.join(out, f"{i:04}.eml"), "wb") as f:
        f.write(head.encode() + body + b"--b--\r\n")
EOF

cat >"$work/taxinbox.toml" <<EOF
[general]
timezone = "Europe/Moscow"
[database]
url = "sqlite://$work/taxinbox.db"
[rules]
dir = "$PWD/rules"
[notify]
transport = "file"
dir = "$work/outbox"
from = "taxinbox@debet-service.example"
EOF
corpus=tests/corpus
"$bin" --config "$work/taxinbox.toml" directory import "$corpus/clients.csv" \
  --accountants "$corpus/accountants.csv" --absences "$corpus/absences.csv" >/dev/null
size=$(du -sm "$work/mail" | cut -f1)
echo "large-mail/$mails mails, $size MB: taxinbox ingest ($bin)"
/usr/bin/time -o "$work/time" -f "  wall %e s, maximum RSS %M KB" \
  "$bin" --config "$work/taxinbox.toml" ingest --format jsonl "$work/mail" >"$work/reports.jsonl"
echo "  $(wc -l <"$work/reports.jsonl") mails reported, $(grep -c '"status":"quarantined"' "$work/reports.jsonl" || true) quarantined"
cat "$work/time"
