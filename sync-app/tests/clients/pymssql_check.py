#!/usr/bin/env python3
r"""Reads dbo.vw_OpenOrders from a SQL Server (the fake ERP) with pymssql (FreeTDS' db-lib,
statically linked into the wheel: pymssql 2.4.6 wheels carry FreeTDS 1.5) and prints the row
count and a checksum over every cell, or the server error it got.

Used by sync-app/tests/independent_clients.rs; runnable by hand:

    python3 pymssql_check.py --host localhost --port 1433 --user sync --password sync \
        --database erp --encryption login --packet-size 4096 --cafile erp-ca.pem

Output (stdout, one line) and exit status:
    rows=N sha256=HEX [tls=T]    0  the query returned N rows; with --trace-messages T (none |
                                    login | full | strict) is what FreeTDS logged: the server's
                                    PRELOGIN encryption flag and whether TLS was set up
    error=N errors=N[,M...]      2  the server sent error(s); N is the number pymssql raised (the
                                    most severe message), `errors` every server message number
                                    FreeTDS logged (TDSDUMP) except the informational 5701/5703/5704
    unsupported=TEXT             4  this client cannot do what was asked
    (message on stderr)          1  anything else: TLS, protocol, timeout, usage

Settings: a freetds.conf written to a temporary directory and passed through FREETDSCONF
(pymssql's own `encryption=` argument knows only default/off/request/require):
    [global]
        tds version = 7.4            (strict: 8.0)
        encryption = off | request | require | strict    for none | login | full | strict
        ca file = CA                 (when given; FreeTDS checks the certificate against it and
        check certificate hostname = yes    the host name; without a CA nothing is verified)
        initial block size = N       the packet size asked for in LOGIN7 (FreeTDS never asks
                                     for less than 4096: 512 becomes 4096)
        client charset = UTF-8
    `request` sends PRELOGIN ENCRYPT_OFF (TLS for the login only when the server offers
    encryption), `require` ENCRYPT_ON, `off` ENCRYPT_NOT_SUP; `strict` is TDS 8.0 (TLS first).

What pymssql sends after the login (the server must answer these), each as a SQL batch, in
this order (captured with TDSDUMP): the conn_properties batch
`SET ARITHABORT ON;SET CONCAT_NULL_YIELDS_NULL ON;SET ANSI_NULLS ON;SET ANSI_NULL_DFLT_ON ON;
SET ANSI_PADDING ON;SET ANSI_WARNINGS ON;SET ANSI_NULL_DFLT_ON ON;SET CURSOR_CLOSE_ON_COMMIT ON;
SET QUOTED_IDENTIFIER ON;SET TEXTSIZE 2147483647;`, then `use [DATABASE]` (dbuse, although the
database is in LOGIN7 already), then with autocommit off (the pymssql default) `BEGIN TRAN`;
then the query. Closing sends nothing more.

CANONICAL FORM (identical in pytds_check.py, freetds_check.sh and independent_clients.rs):
    The 19 columns of sync_app::fake_erp::OPEN_ORDERS_SQL, in order, each cell as text:
    NULL                    \N
    int columns             decimal digits, leading '-' if negative (order_no, line_no)
    decimal columns         plain decimal, no exponent, no '+', trailing fractional zeros and a
                            bare '.' removed, -0 -> 0 (qty_*, unit_price, line_amount; also MONEY)
    date columns            YYYY-MM-DD (order_date, requested_date, promised_date); a value with
                            a time of day other than midnight keeps it as YYYY-MM-DD HH:MM:SS.fff
                            (so it cannot match)
    datetime columns        YYYY-MM-DD HH:MM:SS.fff (modified_at); sub-millisecond digits are
                            kept only if non-zero (so they cannot match)
    bit columns             0 or 1 (rush)
    text columns            the string, trailing U+0020 removed (char/nchar padding), with
                            '\' -> '\\', TAB -> '\t', LF -> '\n', CR -> '\r'
    A row is its cells joined by TAB, followed by LF; the checksum is the SHA-256 (lower-case
    hex) of all rows' UTF-8 bytes in result order.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile

from canonical import QUERY, Checksum  # the shared canonical form

# --- pymssql ------------------------------------------------------------------------------

ENCRYPTION = {"none": "off", "login": "request", "full": "require", "strict": "strict"}
INFO_MESSAGES = {5701, 5703, 5704}


def freetds_conf(args):
    lines = ["[global]",
             f"\ttds version = {'8.0' if args.encryption == 'strict' else '7.4'}",
             f"\tencryption = {ENCRYPTION[args.encryption]}",
             f"\tinitial block size = {args.packet_size}",
             "\tclient charset = UTF-8",
             f"\tconnect timeout = {int(args.timeout)}",
             f"\ttimeout = {int(args.timeout)}"]
    if args.cafile:
        lines += [f"\tca file = {os.path.abspath(args.cafile)}",
                  "\tcheck certificate hostname = yes"]
    return "\n".join(lines) + "\n"


def numbers_in(value, found):
    """(number, message) pairs anywhere in a pymssql exception's args."""
    if isinstance(value, (tuple, list)):
        if len(value) >= 2 and isinstance(value[0], int) and isinstance(value[1], (bytes, str)):
            found.append(value[0])
        for v in value:
            numbers_in(v, found)
    return found


def dumped_messages(path):
    numbers = []
    try:
        with open(path, "rb") as f:
            for line in f:
                m = re.search(rb"reading message (\d+) from server", line)
                if m:
                    n = int(m.group(1))
                    if n not in INFO_MESSAGES and n not in numbers:
                        numbers.append(n)
    except OSError:
        pass
    return numbers


def dumped_tls(path):
    """none | login | full | strict from the TDSDUMP log (the server's PRELOGIN encryption flag
    and whether a TLS handshake succeeded), or None without a log."""
    try:
        with open(path, "rb") as f:
            log = f.read()
    except OSError:
        return None
    m = re.search(rb"detected crypt flag (\d+)", log)
    handshake = log.find(b"handshake succeeded")
    if handshake < 0:
        return "none"
    if m is None or handshake < m.start():
        return "strict"  # TDS 8.0: TLS first, the PRELOGIN exchange inside it
    return {0: "login", 1: "full", 3: "full"}.get(int(m.group(1)), "none")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="sync")
    ap.add_argument("--password", default="sync")
    ap.add_argument("--database", default="erp")
    ap.add_argument("--encryption", choices=sorted(ENCRYPTION), default="login")
    ap.add_argument("--packet-size", type=int, default=4096)
    ap.add_argument("--cafile", help="PEM file of the CA (the fake's --cert-out)")
    ap.add_argument("--timeout", type=float, default=20, help="login and query timeout, s")
    ap.add_argument("--autocommit", action="store_true", help="instead of the pymssql default")
    ap.add_argument("--trace-messages", action="store_true",
                    help="log through TDSDUMP to list every server message number on errors and "
                         "report the negotiated encryption (tls=)")
    ap.add_argument("--keep-dump", help="copy the TDSDUMP log here (implies --trace-messages)")
    ap.add_argument("--query", default=QUERY)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="pymssql_check.")
    try:
        conf = os.path.join(work, "freetds.conf")
        with open(conf, "w") as f:
            f.write(freetds_conf(args))
        os.environ["FREETDSCONF"] = conf
        os.environ.pop("FREETDS", None)
        os.environ.pop("TDSVER", None)
        dump = os.path.join(work, "tds.dump")
        if args.trace_messages or args.keep_dump:
            os.environ["TDSDUMP"] = dump
        try:
            import pymssql  # after FREETDSCONF / TDSDUMP are set
        except ImportError as e:
            print(f"pymssql is not installed: {e}", file=sys.stderr)
            return 1
        try:
            return run(pymssql, args, dump)
        finally:
            if args.keep_dump and os.path.exists(dump):
                shutil.copyfile(dump, args.keep_dump)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(pymssql, args, dump):
    if args.encryption in ("login", "full", "strict") and not args.cafile:
        print("note: no --cafile, so FreeTDS does not verify the certificate", file=sys.stderr)
    checksum = Checksum()
    try:
        conn = pymssql.connect(
            server=args.host, port=str(args.port), user=args.user, password=args.password,
            database=args.database, login_timeout=int(args.timeout), timeout=int(args.timeout),
            autocommit=args.autocommit, appname="pymssql_check")
        try:
            cur = conn.cursor()
            cur.execute(args.query)
            while True:
                rows = cur.fetchmany(1000)
                if not rows:
                    break
                for row in rows:
                    checksum.add(row)
            cur.close()
        finally:
            conn.close()
    except pymssql.Error as e:
        raised = [n for n in numbers_in(e.args, []) if not 20000 <= n < 21000]
        numbers = dumped_messages(dump) or raised
        print(f"pymssql: {type(e).__name__}: {e}", file=sys.stderr)
        if numbers:
            first = raised[0] if raised else numbers[0]
            print(f"error={first} errors={','.join(map(str, numbers))}")
            return 2
        return 1
    except Exception as e:
        print(f"pymssql: {type(e).__name__}: {str(e) or 'no answer within the timeout'}", file=sys.stderr)
        return 1
    tls = dumped_tls(dump)
    print(checksum.line() + (f" tls={tls}" if tls else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
