#!/usr/bin/env bash
# Reads dbo.vw_OpenOrders from a SQL Server (the fake ERP) with FreeTDS' command-line clients —
# `tsql` (libtds) or `freebcp "<query>" queryout FILE -c` (db-lib bcp) — and prints the row
# count and a checksum over every cell, or the server error it got.
#
# Used by sync-app/tests/independent_clients.rs; runnable by hand:
#
#   freetds_check.sh --tool tsql --host localhost --port 1433 --user sync --password sync \
#       --database erp --encryption login --packet-size 4096 --cafile erp-ca.pem
#
# Output (stdout, one line) and exit status:
#   rows=N sha256=HEX [tls=T]    0  the query returned N rows; with --trace-messages T (none |
#                                   login | full | strict) is what FreeTDS logged: the server's
#                                   PRELOGIN encryption flag and whether TLS was set up
#   error=N errors=N[,M...]      2  the server sent error message(s) of severity >= 11 (as the
#                                   tool printed them on stderr); N is the first
#   unsupported=TEXT             4  this FreeTDS cannot do what was asked (strict before 1.4)
#   (message on stderr)          1  anything else: TLS, protocol, timeout, usage, set-up
#
# Settings: a freetds.conf in a temporary directory, passed through FREETDSCONF:
#   [global]
#       tds version = 7.4                    (strict: 8.0, FreeTDS >= 1.4 only)
#       encryption = off | request | require | strict    for none | login | full | strict
#       ca file = CA                         (when given: GnuTLS/OpenSSL verify the certificate
#       check certificate hostname = yes      and the host name; without a CA nothing is checked)
#       initial block size = N               the packet size asked for in LOGIN7 (FreeTDS 1.3
#                                            never asks for less than 4096: 512 becomes 4096);
#                                            freebcp also gets -A N
#       client charset = UTF-8
#   [fakeerp]  host = HOST, port = PORT      (tsql -S fakeerp / freebcp -S fakeerp)
#   `off` sends PRELOGIN ENCRYPT_NOT_SUP, `request` ENCRYPT_OFF (TLS for the login packet only
#   when the server offers encryption, *plaintext* when it answers NOT_SUP), `require` ENCRYPT_ON.
#   FreeTDS 1.3 (Debian bookworm) has no `strict` and rejects `tds version = 8.0`; 1.4 added
#   TDS 8.0 / strict (pymssql's wheel carries 1.5). --trace-messages logs through TDSDUMP (about
#   1.7 KB per row: use it for small results or accept ~0.5 s and ~5 MB per 3000 rows).
#
# Dates: tsql and db-lib print DATE/DATETIME/DATETIME2 with the locale's `date format`, which
# FreeTDS reads only from /etc/freetds/locales.conf (no environment override). Its built-in
# default "%b %e %Y %I:%M%p" drops seconds, so this script refuses to run unless that file's
# [default] section has `date format = %Y-%m-%d %H:%M:%S.%z` (.ci/run writes it). freebcp -c
# prints DATETIME/SMALLDATETIME as %Y-%m-%d %H:%M:%S.%z on its own.
#
# What the tools send after the login (the server must answer these, all as SQL batches):
#   tsql     nothing: the query as typed.
#   freebcp  `set textsize 4096` (db-lib's default text size), then, for column metadata,
#            `SET FMTONLY ON <query> SET FMTONLY OFF` — which must return COLMETADATA and DONE
#            but no rows — and then the query itself.
# TLS: in TDS 7.x (TLS inside PRELOGIN) FreeTDS 1.3 with GnuTLS negotiates TLS 1.3 if offered,
# and its login-only / full encryption then fails against a TLS 1.3 server ("cannot decrypt");
# SQL Server itself offers TLS 1.3 only with TDS 8.0 (strict), so a server should cap TDS 7.x
# TLS at 1.2. (Diagnosis only: GNUTLS_SYSTEM_PRIORITY_FILE pointing to a file with
# "[overrides]" / "disabled-version = tls1.3" makes GnuTLS stay at 1.2.)
#
# Text output limits: tsql prints NULL as `NULL`, freebcp -c as an empty field (it cannot tell
# NULL from ''; the view has no empty strings); a TAB or LF inside a value would break the
# columns (the view has none).
#
# CANONICAL FORM (identical in pytds_check.py, pymssql_check.py and independent_clients.rs):
#   The 19 columns of sync_app::fake_erp::OPEN_ORDERS_SQL, in order, each cell as text:
#   NULL                  \N
#   int columns           decimal digits, leading '-' if negative (order_no, line_no)
#   decimal columns       plain decimal, no exponent, no '+', trailing fractional zeros and a
#                         bare '.' removed, -0 -> 0 (qty_*, unit_price, line_amount; also MONEY)
#   date columns          YYYY-MM-DD (order_date, requested_date, promised_date); a value with
#                         a time of day other than midnight keeps it as YYYY-MM-DD HH:MM:SS.fff
#                         (so it cannot match)
#   datetime columns      YYYY-MM-DD HH:MM:SS.fff (modified_at); sub-millisecond digits are
#                         kept only if non-zero (so they cannot match)
#   bit columns           0 or 1 (rush)
#   text columns          the string, trailing U+0020 removed (char/nchar padding), with
#                         '\' -> '\\', TAB -> '\t', LF -> '\n', CR -> '\r'
#   A row is its cells joined by TAB, followed by LF; the checksum is the SHA-256 (lower-case
#   hex) of all rows' UTF-8 bytes in result order.
set -u

tool=tsql host=localhost port= user=sync password=sync database=erp encryption=login
packet_size=4096 cafile= timeout_s=20 trace=0 keep_dump=
query="SELECT order_no, line_no, order_date, customer_code, customer_name, item_code, item_description, qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, requested_date, promised_date, warehouse, status, rush, modified_at FROM dbo.vw_OpenOrders ORDER BY order_no, line_no"

usage() { sed -n '2,12p' "$0" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --tool) tool=$2; shift 2 ;;
    --host) host=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    --user) user=$2; shift 2 ;;
    --password) password=$2; shift 2 ;;
    --database) database=$2; shift 2 ;;
    --encryption) encryption=$2; shift 2 ;;
    --packet-size) packet_size=$2; shift 2 ;;
    --cafile) cafile=$2; shift 2 ;;
    --timeout) timeout_s=${2%.*}; shift 2 ;;
    --trace-messages) trace=1; shift ;;
    --keep-dump) keep_dump=$2; trace=1; shift 2 ;;
    --query) query=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$port" ] || { echo "--port is required" >&2; exit 1; }
case "$tool" in tsql|freebcp) ;; *) echo "--tool tsql|freebcp" >&2; exit 1 ;; esac
command -v "$tool" >/dev/null 2>&1 || { echo "$tool is not installed" >&2; exit 1; }
command -v python3 >/dev/null 2>&1 || { echo "python3 is needed to normalize the output" >&2; exit 1; }

version=$(tsql -C 2>/dev/null | sed -n 's/.*Version: freetds v\([0-9.]*\).*/\1/p')
tds_version=7.4
case "$encryption" in
  none) level=off ;;
  login) level=request ;;
  full) level=require ;;
  strict)
    level=strict tds_version=8.0
    case "$version" in
      0.*|1.[0-3]|1.[0-3].*) echo "unsupported=FreeTDS $version has no strict encryption (TDS 8.0 needs >= 1.4)"; exit 4 ;;
    esac ;;
  *) echo "--encryption none|login|full|strict" >&2; exit 1 ;;
esac

if ! grep -Eq '^[[:space:]]*date format[[:space:]]*=[[:space:]]*%Y-%m-%d %H:%M:%S\.%z[[:space:]]*$' \
    /etc/freetds/locales.conf 2>/dev/null; then
  echo "FreeTDS would print dates without seconds: /etc/freetds/locales.conf needs" \
       "'[default]' + 'date format = %Y-%m-%d %H:%M:%S.%z' (see .ci/run)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/freetds_check.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
{
  echo "[global]"
  echo "	tds version = $tds_version"
  echo "	encryption = $level"
  echo "	initial block size = $packet_size"
  echo "	client charset = UTF-8"
  echo "	connect timeout = $timeout_s"
  echo "	timeout = $timeout_s"
  if [ -n "$cafile" ]; then
    echo "	ca file = $(cd "$(dirname "$cafile")" && pwd)/$(basename "$cafile")"
    echo "	check certificate hostname = yes"
  fi
  echo "[fakeerp]"
  echo "	host = $host"
  echo "	port = $port"
} > "$work/freetds.conf"
export FREETDSCONF="$work/freetds.conf"
unset FREETDS TDSVER TDSDUMP TDSDUMPCONFIG
[ "$trace" = 1 ] && export TDSDUMP="$work/tds.dump"

# Kill the tool after the timeout (SIGKILL 5 s later if it ignores SIGTERM).
limit=$((timeout_s + 5))
case "$tool" in
  tsql)
    printf '%s\ngo\nexit\n' "$query" |
      timeout -k 5 "$limit" tsql -S fakeerp -U "$user" -P "$password" -D "$database" -o qhf \
        > "$work/out.txt" 2> "$work/err.txt"
    status=$? ;;
  freebcp)
    timeout -k 5 "$limit" freebcp "$query" queryout "$work/out.txt" -c -S fakeerp \
      -U "$user" -P "$password" -D "$database" -A "$packet_size" \
      > "$work/stdout.txt" 2> "$work/err.txt"
    status=$?
    cat "$work/stdout.txt" >> "$work/err.txt" ;;
esac
[ -n "$keep_dump" ] && [ -f "$work/tds.dump" ] && cp "$work/tds.dump" "$keep_dump"

tls=
if [ "$trace" = 1 ] && [ -f "$work/tds.dump" ]; then
  flag=$(grep -a -o 'detected crypt flag [0-9]*' "$work/tds.dump" | head -n1 | awk '{print $4}')
  flag_line=$(grep -a -n -m1 'detected crypt flag' "$work/tds.dump" | cut -d: -f1)
  hs_line=$(grep -a -n -m1 'handshake succeeded' "$work/tds.dump" | cut -d: -f1)
  if [ -z "$hs_line" ]; then tls=" tls=none"
  elif [ -z "$flag_line" ] || [ "$hs_line" -lt "$flag_line" ]; then tls=" tls=strict"  # TLS first
  else case "$flag" in
    0) tls=" tls=login" ;;
    1|3) tls=" tls=full" ;;
    *) tls=" tls=none" ;;
  esac; fi
fi

# Server messages as the tools print them: tsql "Msg N (severity S, state T) from ...",
# freebcp/db-lib "Msg N, Level S, State T" (library errors have no state).
errors=$(grep -aoE 'Msg [0-9]+ \(severity [0-9]+, state [0-9]+\)|Msg [0-9]+, Level [0-9]+, State [0-9]+' "$work/err.txt" |
  sed -E 's/Msg ([0-9]+)[^0-9]+([0-9]+).*/\1 \2/' | awk '$2 >= 11 && !seen[$1]++ {print $1}' | paste -sd, -)
if [ -n "$errors" ]; then
  echo "error=${errors%%,*} errors=$errors$tls"
  sed 's/^/  /' "$work/err.txt" | head -n 20 >&2
  exit 2
fi
if [ "$status" -ne 0 ] || grep -aqE '^Error [0-9]+ \(severity|There was a problem connecting|^Msg 2[0-9]{4}' "$work/err.txt"; then
  echo "$tool failed (exit status $status)" >&2
  sed 's/^/  /' "$work/err.txt" | head -n 20 >&2
  exit 1
fi

python3 - "$tool" "$work/out.txt" "$tls" <<'PY'
import datetime, decimal, hashlib, re, sys

tool, path, tls = sys.argv[1], sys.argv[2], sys.argv[3]
KINDS = ["int", "int", "date", "text", "text", "text", "text", "decimal", "decimal", "decimal",
         "decimal", "decimal", "text", "date", "date", "text", "text", "bit", "datetime"]
NULL = "NULL" if tool == "tsql" else ""
DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2})(?::(\d{2})(?:\.(\d*))?)?)?$")


def canon_decimal(text):
    d = decimal.Decimal(text)
    out = format(d, "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return "0" if out in ("-0", "") else out


def parse_datetime(text):
    m = DATETIME.match(text)
    if not m:
        raise ValueError(f"unexpected date/time text {text!r} (is the FreeTDS date format ISO?)")
    y, mo, d, h, mi, s, frac = m.groups()
    frac = (frac or "").ljust(6, "0")
    if len(frac) > 6:
        if frac[6:].strip("0"):
            raise ValueError(f"sub-microsecond digits in {text!r}")
        frac = frac[:6]
    return datetime.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                             int(frac))


def canon_datetime(value):
    micro = f"{value.microsecond:06d}"
    frac = micro[:3] if micro[3:] == "000" else micro.rstrip("0")
    return value.strftime("%Y-%m-%d %H:%M:%S") + "." + frac


def canon_text(value):
    value = value.rstrip(" ")
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def canon_cell(kind, text):
    if text == NULL:
        return "\\N"
    if kind == "int":
        return str(int(text))
    if kind == "decimal":
        return canon_decimal(text)
    if kind == "bit":
        if text not in ("0", "1"):
            raise ValueError(f"unexpected bit {text!r}")
        return text
    if kind == "date":
        value = parse_datetime(text)
        if value.time() == datetime.time(0, 0):
            return value.strftime("%Y-%m-%d")
        return canon_datetime(value)
    if kind == "datetime":
        return canon_datetime(parse_datetime(text))
    return canon_text(text)


sha = hashlib.sha256()
rows = 0
with open(path, "rb") as f:
    data = f.read().decode("utf-8")
lines = data.split("\n")
if lines and lines[-1] == "":
    lines.pop()
try:
    for number, line in enumerate(lines, 1):
        cells = line.split("\t")
        if len(cells) != len(KINDS):
            raise ValueError(f"line {number} has {len(cells)} fields, expected {len(KINDS)}: {line!r}")
        sha.update(("\t".join(canon_cell(k, c) for k, c in zip(KINDS, cells)) + "\n").encode("utf-8"))
        rows += 1
except (ValueError, decimal.InvalidOperation) as e:
    print(f"{tool}: cannot read its output: {e}", file=sys.stderr)
    sys.exit(1)
print(f"rows={rows} sha256={sha.hexdigest()}{tls}")
PY
