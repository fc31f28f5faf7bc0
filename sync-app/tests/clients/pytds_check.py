#!/usr/bin/env python3
"""Reads dbo.vw_OpenOrders from a SQL Server (the fake ERP) with pytds (PyPI `python-tds`)
and prints the row count and a checksum over every cell, or the server error it got.

Used by sync-app/tests/independent_clients.rs; runnable by hand:

    python3 pytds_check.py --host localhost --port 1433 --user sync --password sync \
        --database erp --encryption login --packet-size 4096 --cafile erp-ca.pem

Output (stdout, one line) and exit status:
    rows=N sha256=HEX tls=T      0  the query returned N rows; T (none | login | full) is what
                                    the PRELOGIN exchange settled on
    error=N errors=N[,M...]      2  the server sent error(s) (severity >= 11); N is the first
    unsupported=TEXT             4  this client cannot do what was asked (e.g. --encryption strict)
    (message on stderr)          1  anything else: TLS, protocol, timeout, usage

Encryption choices and what they mean for pytds (1.17):
    none    no `cafile`: PRELOGIN ENCRYPT_NOT_SUP, nothing encrypted
    login   cafile=CA, enc_login_only=True: PRELOGIN ENCRYPT_OFF, TLS for the login packet only
    full    cafile=CA, enc_login_only=False: PRELOGIN ENCRYPT_ON, the whole session in TLS
    strict  unsupported: pytds has no TDS 8.0 (TLS before PRELOGIN)
    validate_host=True always: pytds accepts the certificate if its subject CN equals the host
    name given, or a subjectAltName *DNS* entry does (an IP-address SAN does not count), so
    connect to `localhost` rather than 127.0.0.1 unless the certificate names 127.0.0.1 as DNS/CN.
    TLS needs pyOpenSSL. The packet size is pytds' `blocksize`.

UTF-8 collations: pytds 1.17 ignores a collation's UTF-8 flag and decodes varchar/char of a
*_UTF8 collation with the code page (mojibake); this script patches that (see
teach_utf8_collations) unless --raw-utf8-collations.

What pytds sends after the login (the server must answer these): with autocommit off (the
pytds default; --autocommit turns it on) a transaction-manager request (packet type 14,
TM_BEGIN_XACT) right after the login, answered with ENVCHANGE type 8 (begin transaction) and
DONE; then the query as a SQL batch. `use [DATABASE]` only if the database in the server's
ENVCHANGE differs from the one asked for. pytds accepts a certificate whose CN or a DNS
subjectAltName equals the host name it was given (see above).

CANONICAL FORM (canonical.py; the same in freetds_check.sh and independent_clients.rs):
    The 19 columns of sync_app::fake_erp::OPEN_ORDERS_SQL, in order, each cell as text:
    NULL                    \\N
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
                            '\\' -> '\\\\', TAB -> '\\t', LF -> '\\n', CR -> '\\r'
    A row is its cells joined by TAB, followed by LF; the checksum is the SHA-256 (lower-case
    hex) of all rows' UTF-8 bytes in result order.
"""

import argparse
import sys

from canonical import QUERY, Checksum  # the shared canonical form

# --- pytds --------------------------------------------------------------------------------

# pytds raises only the *last* server message (e.g. 18456 after 4060 for an unknown database),
# so the messages of the failed request are recorded here before it raises.
SEEN_MESSAGES = []


def record_server_messages(pytds_module):
    session_class = pytds_module.tds_session._TdsSession
    original = session_class.raise_db_exception

    def raise_db_exception(self):
        SEEN_MESSAGES.extend((m["msgno"], m["severity"]) for m in self.messages)
        return original(self)

    session_class.raise_db_exception = raise_db_exception


def teach_utf8_collations(pytds_module):
    """pytds 1.17 ignores the UTF-8 flag (0x04000000) of a collation (SQL Server 2019's *_UTF8
    collations) and decodes such varchar/char columns with the collation's code page (cp1252:
    'PrÃ©cision'). Real SQL Server sends the same bytes, so this is pytds' gap, not the
    server's; the check patches it so the values can be compared (--raw-utf8-collations: not)."""
    import codecs
    collate = pytds_module.collate
    original_unpack = collate.Collation.unpack.__func__
    original_get_codec = collate.Collation.get_codec
    utf8 = codecs.lookup("utf-8")

    def unpack(cls, b):
        collation = original_unpack(cls, b)
        lump, _ = cls._coll_struct.unpack_from(b)
        collation.utf8 = bool(lump & 0x04000000)
        return collation

    def get_codec(self):
        return utf8 if getattr(self, "utf8", False) else original_get_codec(self)

    collate.Collation.unpack = classmethod(unpack)
    collate.Collation.get_codec = get_codec


def server_errors(exc):
    """Server error numbers (severity >= 11) of the failed request, in the order sent."""
    numbers = []
    for number, severity in SEEN_MESSAGES:
        if severity >= 11 and number not in numbers:
            numbers.append(number)
    number = getattr(exc, "msg_no", None)
    if not numbers and isinstance(number, int) and number > 0:
        numbers.append(number)
    return numbers


def negotiated_tls(conn):
    """none | login | full: what the PRELOGIN exchange settled (pytds internals)."""
    login = conn._tds_socket._login
    if login.tls_ctx is None:
        return "none"
    return {0: "login", 1: "full", 3: "full"}.get(login.server_enc_flag, "none")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", default="sync")
    ap.add_argument("--password", default="sync")
    ap.add_argument("--database", default="erp")
    ap.add_argument("--encryption", choices=["none", "login", "full", "strict"], default="none")
    ap.add_argument("--packet-size", type=int, default=4096)
    ap.add_argument("--cafile", help="PEM file of the CA (the fake's --cert-out)")
    ap.add_argument("--timeout", type=float, default=20, help="login and query timeout, s")
    ap.add_argument("--autocommit", action="store_true", help="instead of the pytds default")
    ap.add_argument("--raw-utf8-collations", action="store_true",
                    help="decode UTF-8-collation varchar as pytds does (with the code page)")
    ap.add_argument("--query", default=QUERY)
    args = ap.parse_args()

    try:
        import pytds
    except ImportError as e:
        print(f"pytds is not installed: {e}", file=sys.stderr)
        return 1
    record_server_messages(pytds)
    if not args.raw_utf8_collations:
        teach_utf8_collations(pytds)

    kwargs = {}
    if args.encryption == "strict":
        print("unsupported=pytds has no TDS 8.0 / strict encryption")
        return 4
    if args.encryption in ("login", "full"):
        if not args.cafile:
            print("--encryption login|full needs --cafile", file=sys.stderr)
            return 1
        kwargs.update(cafile=args.cafile, validate_host=True,
                      enc_login_only=(args.encryption == "login"))

    checksum = Checksum()
    try:
        conn = pytds.connect(
            server=args.host, port=args.port, user=args.user, password=args.password,
            database=args.database, login_timeout=args.timeout, timeout=args.timeout,
            blocksize=args.packet_size, autocommit=args.autocommit,
            disable_connect_retry=True, appname="pytds_check", **kwargs)
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
            tls = negotiated_tls(conn)
        finally:
            conn.close()
    except pytds.Error as e:
        numbers = server_errors(e)
        if numbers:
            print(f"error={numbers[0]} errors={','.join(map(str, numbers))}")
            print(f"pytds: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        print(f"pytds: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # TLS, socket, timeout, canonical-form type errors
        print(f"pytds: {type(e).__name__}: {str(e) or 'no answer within the timeout'}", file=sys.stderr)
        return 1
    print(f"{checksum.line()} tls={tls}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
