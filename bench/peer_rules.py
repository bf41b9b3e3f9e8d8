#!/usr/bin/env python3
"""Writes taxinbox's default classification (rules/mail/*.rhai) as a Sieve script and as an imapfilter Lua
configuration, for the peer benchmarks (bench/sieve.sh, bench/imapfilter.sh).

The phrase lists are not copied by hand: demand phrases come from rules/demands.toml (`recognise` + `informal`),
client addresses and domains from the register (tests/corpus/clients.csv), the firm's domains from the
accountants' addresses. The structure follows the rule files in order, first match wins:

  00-ignore    own notifications, bounces, auto-replies, newsletters, advertising   -> Ignore
  10-notices   operator receipts and information letters                           -> Notice
  20-demands   a demand phrase + a document number + a tax-office origin           -> Demand/<kind>
  30-internal  the firm's own mail                                                 -> Ignore
  40-requests  a client's mail (register address or domain), topic from subject   -> Request/<topic>
               (topics.toml's phrases in its tie order: a peer has no weighted score)
  50-bulk      Precedence bulk/list/junk                                           -> Ignore
  otherwise                                                                        -> Unclassified

What cannot be expressed (see bench/README.md): INN check digits and INN roles, the kind whose phrase comes
*first* in the text (here: the first kind in file order that matches anywhere), regexes over Cyrillic with
case folding (here: case-insensitive substrings;
Pigeonhole folds ASCII only, so the Sieve script lists each phrase lower-case, capitalised and in capitals), text of attachments (the official XML), dates, deadlines, tasks,
the log.

Usage: peer_rules.py OUT_DIR   (writes OUT_DIR/taxinbox.sieve and OUT_DIR/imapfilter.lua)
"""

import csv
import pathlib
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent

OPERATOR_DOMAINS = [
    "kontur.ru", "skbkontur.ru", "kontur-extern.ru", "sbis.ru", "saby.ru", "tensor.ru", "taxcom.ru", "1c.ru",
    "astral.ru", "nalog.ru", "nalog.gov.ru",
]
BOUNCE_SUBJECT = ["delivery status notification", "undeliver", "не доставлено"]
AUTO_SUBJECT_PREFIX = ["out of office", "автоматический ответ", "автоответ", "auto-reply", "autoreply", "auto reply"]
ADVERTISING = ["звоните: 8 800", "новый тариф", "набор открыт", "скидка до", "скидки до",
               "только для бухгалтерских компаний"]
RECEIPT = ["получена", "дальнейших действий не требуется", "ничего делать не нужно", "извещение о вводе",
           "завершен", "завершён", "статус: принят", "отчет сдан", "отчёт сдан", "отчет принят", "отчёт принят",
           "декларация принята"]
INFORMATION = ["информационное письмо", "носит информационный характер", "не требует ответа", "для сведения",
               "выписка операций по расчетам", "сальдо енс", "акт совместной сверки"]
DEMAND_TITLES = ["требование о представлении", "требование об уплате", "решение о приостановлении",
                 "уведомление о вызове"]
TAX_OFFICE_WORDS = ["ифнс", "налогов", "фнс", "требовани", "решение о приостановлении", "уведомление о вызове"]
def request_topics():
    """rules/topics.toml, as a peer can use it: Sieve and imapfilter have no weighted score, so each topic's phrases
    (a `*` ending dropped: a substring test) are tried in `tie_order`, the first topic with a phrase in the subject
    winning."""
    data = tomllib.loads((ROOT / "rules" / "topics.toml").read_text(encoding="utf-8"))
    order = data["scoring"]["tie_order"]
    order += [t for t in data["topics"] if t not in order]
    return [(t, [p.rstrip("*") for p in data["topics"][t]["phrases"]]) for t in order]


# A document number followed by its date: 20-demands.rhai's "№ <number> от <date>" (POSIX ERE).
NUMBER_RE = r"(№|N)[[:space:]]*[0-9][^[:space:]]*[[:space:]]+(от|дата)"


def demand_kinds():
    data = tomllib.loads((ROOT / "rules" / "demands.toml").read_text(encoding="utf-8"))
    kinds = []
    for kind, spec in data["kinds"].items():
        phrases = [p.lower() for p in spec.get("recognise", []) + spec.get("informal", [])]
        if phrases:
            kinds.append((kind, phrases))
    # 20-demands.rhai: `documents` that also mention a counterparty become counterparty_documents; checking the
    # counterparty kind first has the same effect.
    kinds.sort(key=lambda k: 0 if k[0] == "counterparty_documents" else 1)
    return kinds


def register():
    corpus = ROOT / "tests" / "corpus"
    addresses, domains = set(), set()
    with open(corpus / "clients.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for e in filter(None, (x.strip().lower() for x in row["emails"].split("|"))):
                (domains if e.startswith("@") else addresses).add(e.lstrip("@"))
    firm = set()
    with open(corpus / "accountants.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            firm.add(row["email"].strip().lower().rsplit("@", 1)[1])
    return sorted(addresses), sorted(domains), sorted(firm)


def sieve_list(items):
    return "[" + ", ".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "]"


def cased(items):
    """Pigeonhole has no Unicode case folding (only i;ascii-casemap): each phrase also as it starts a sentence
    and in capitals, the forms mail writes it in."""
    out = []
    for i in items:
        for v in (i, i[:1].upper() + i[1:], i.upper()):
            if v not in out:
                out.append(v)
    return out


def sieve(kinds, addresses, domains, firm):
    ci = ':comparator "i;ascii-casemap"'
    op = f'address :domain {ci} :matches "from" {sieve_list(OPERATOR_DOMAINS + ["*." + d for d in OPERATOR_DOMAINS])}'
    out = [
        "# Generated by bench/peer_rules.py from taxinbox's rules, demands.toml and the register.",
        'require ["fileinto", "mailbox", "body", "regex"];',
        "",
        "# 00-ignore",
        'if anyof (exists "x-taxinbox", header :regex "subject" "^\\\\[taxinbox\\\\]") '
        '{ fileinto :create "Ignore"; stop; }',
        f'if anyof (address :localpart {ci} :is "from" ["mailer-daemon", "postmaster"], '
        f'header {ci} :contains "subject" {sieve_list(cased(BOUNCE_SUBJECT))}) {{ fileinto :create "Ignore"; stop; }}',
        f'if anyof (allof (exists "auto-submitted", not header {ci} :is "auto-submitted" "no", not {op}), '
        f'exists "x-autoreply", header {ci} :matches "subject" {sieve_list([p + "*" for p in cased(AUTO_SUBJECT_PREFIX)])}) '
        '{ fileinto :create "Ignore"; stop; }',
        'if exists ["list-unsubscribe", "list-id"] { fileinto :create "Ignore"; stop; }',
        f'if body :text {ci} :contains {sieve_list(cased(ADVERTISING))} {{ fileinto :create "Ignore"; stop; }}',
        "",
        "# 10-notices",
        f'if allof ({op}, body :text {ci} :contains {sieve_list(cased(RECEIPT + INFORMATION))}, '
        f'not body :text {ci} :contains {sieve_list(cased(DEMAND_TITLES))}) {{ fileinto :create "Notice"; stop; }}',
        "",
        "# 20-demands: a kind's phrase, a document number, a tax-office origin",
        f'if allof (body :text :regex "{NUMBER_RE}", anyof ({op}, body :text {ci} :contains '
        f'{sieve_list(cased(TAX_OFFICE_WORDS))})) {{',
    ]
    for kind, phrases in kinds:
        out.append(f'  if body :text {ci} :contains {sieve_list(cased(phrases))} {{ fileinto :create "Demand/{kind}"; stop; }}')
    out += [
        "}",
        "",
        "# 30-internal",
        f'if address :domain {ci} :is "from" {sieve_list(firm)} {{ fileinto :create "Ignore"; stop; }}',
        "",
        "# 40-requests: a client of the register; the topic from the subject",
        f'if anyof (address {ci} :is "from" {sieve_list(addresses)}, '
        f'address :domain {ci} :is "from" {sieve_list(domains or ["invalid."])}) {{',
    ]
    for topic, words in request_topics():
        out.append(f'  if header {ci} :contains "subject" {sieve_list(cased(words))} {{ fileinto :create "Request/{topic}"; stop; }}')
    out += [
        '  fileinto :create "Request/other"; stop;',
        "}",
        "",
        "# 50-bulk",
        'if header :regex "precedence" "(bulk|list|junk|BULK|LIST|JUNK|Bulk|List|Junk)" '
        '{ fileinto :create "Ignore"; stop; }',
        'fileinto :create "Unclassified";',
        "",
    ]
    return "\n".join(out)


def lua_list(items):
    return "{" + ", ".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "}"


def imapfilter(kinds, addresses, domains, firm):
    return f"""-- Generated by bench/peer_rules.py from taxinbox's rules, demands.toml and the register.
-- Server-side IMAP SEARCH (contain_*) for substrings, imapfilter's own regex (match_*) only where a pattern is
-- needed, first category wins (each set minus what earlier categories took), then one MOVE per folder.
options.timeout = 120
options.create = true
options.subscribe = false
options.expunge = true

local host, port, user, pass, folder = os.getenv("IF_HOST"), tonumber(os.getenv("IF_PORT")),
  os.getenv("IF_USER"), os.getenv("IF_PASS"), os.getenv("IF_FOLDER") or "INBOX"
local account = IMAP {{ server = host, port = port, username = user, password = pass, ssl = nil }}
local box = account[folder]

local function any(method, field, items)
  local r = Set {{}}
  for _, s in ipairs(items) do
    if field then r = r + box[method](box, field, s) else r = r + box[method](box, s) end
  end
  return r
end

local all = box:select_all()
local taken = Set {{}}
local moved = {{}}
local function take(set, dest)
  local s = set - taken
  taken = taken + s
  moved[dest] = (moved[dest] or Set {{}}) + s
end

-- 00-ignore
local operator = any("contain_from", nil, {lua_list(["@" + d for d in OPERATOR_DOMAINS] + ["." + d for d in OPERATOR_DOMAINS])})
take(box:contain_field("X-Taxinbox", "") + box:match_subject("^\\\\[taxinbox\\\\]"), "Ignore")
take(any("contain_from", nil, {{"mailer-daemon@", "postmaster@"}}) + any("contain_subject", nil, {lua_list(BOUNCE_SUBJECT)}), "Ignore")
take((box:contain_field("Auto-Submitted", "") - box:match_field("Auto-Submitted", "^[Nn][Oo]\\\\s*$") - operator)
  + box:contain_field("X-Autoreply", "")
  + box:match_subject("(?i)^(out of office|auto[- ]?reply)") + box:match_subject("^(Автоматический ответ|Автоответ|автоответ)"), "Ignore")
take(box:contain_field("List-Unsubscribe", "") + box:contain_field("List-Id", ""), "Ignore")
take(any("contain_body", nil, {lua_list(ADVERTISING)}), "Ignore")

-- 10-notices
take(operator * any("contain_body", nil, {lua_list(RECEIPT + INFORMATION)})
  - any("contain_body", nil, {lua_list(DEMAND_TITLES)}), "Notice")

-- 20-demands
local candidates = (operator + any("contain_body", nil, {lua_list(TAX_OFFICE_WORDS)})) - taken
-- imapfilter's match_body runs its regex on the raw, still base64/quoted-printable encoded body, where Cyrillic
-- never matches; Dovecot's SEARCH decodes. So "№ <number> от <date>" becomes two decoded substring tests.
local numbered = (candidates:contain_body("№") + candidates:contain_body(" N ")) * candidates:contain_body(" от ")
{chr(10).join(f'take(numbered * any("contain_body", nil, {lua_list(p)}), "Demand/{k}")' for k, p in kinds)}

-- 30-internal
take(any("contain_from", nil, {lua_list(["@" + d for d in firm])}), "Ignore")

-- 40-requests
local clients = any("contain_from", nil, {lua_list(addresses + ["@" + d for d in domains])}) - taken
{chr(10).join(f'take(clients * any("contain_subject", nil, {lua_list(w)}), "Request/{t}")' for t, w in request_topics())}
take(clients, "Request/other")

-- 50-bulk
take(box:match_field("Precedence", "(?i)bulk|list|junk"), "Ignore")
take(all, "Unclassified")

local total = 0
for dest, set in pairs(moved) do
  if #set > 0 then
    set:move_messages(account[dest])
    total = total + #set
    print("imapfilter folder " .. dest .. " " .. #set)
  end
end
print("imapfilter moved " .. total)
"""


def main():
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    kinds = demand_kinds()
    addresses, domains, firm = register()
    (out / "taxinbox.sieve").write_text(sieve(kinds, addresses, domains, firm), encoding="utf-8")
    (out / "imapfilter.lua").write_text(imapfilter(kinds, addresses, domains, firm), encoding="utf-8")


if __name__ == "__main__":
    main()
