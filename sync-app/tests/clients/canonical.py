"""The canonical text form of the open-orders view and its checksum, shared by
pytds_check.py and pymssql_check.py (freetds_check.sh and independent_clients.rs compute the
same form in their own languages).

CANONICAL FORM:
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

import datetime
import decimal
import hashlib

QUERY = (
    "SELECT order_no, line_no, order_date, customer_code, customer_name, item_code, "
    "item_description, qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, "
    "requested_date, promised_date, warehouse, status, rush, modified_at "
    "FROM dbo.vw_OpenOrders ORDER BY order_no, line_no"
)

# The kind of each column of QUERY, in order.
KINDS = [
    "int", "int", "date", "text", "text", "text", "text", "decimal", "decimal", "decimal",
    "decimal", "decimal", "text", "date", "date", "text", "text", "bit", "datetime",
]


# --- canonical form (keep in step with the other scripts and independent_clients.rs) -------

def canon_decimal(value):
    if isinstance(value, bool):
        raise TypeError(f"bool where a decimal was expected: {value!r}")
    if isinstance(value, float):
        raise TypeError(f"float where a decimal was expected: {value!r}")
    d = decimal.Decimal(value) if not isinstance(value, decimal.Decimal) else value
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def canon_datetime(value):
    """YYYY-MM-DD HH:MM:SS.fff, or more fraction digits if they are not zero."""
    text = value.strftime("%Y-%m-%d %H:%M:%S")
    micro = f"{value.microsecond:06d}"
    frac = micro[:3] if micro[3:] == "000" else micro.rstrip("0")
    return f"{text}.{frac}"


def canon_text(value):
    value = value.rstrip(" ")
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def canon_cell(kind, value):
    if value is None:
        return "\\N"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return str(value)
    if kind == "decimal":
        return canon_decimal(value)
    if kind == "bit":
        if isinstance(value, bool) or value in (0, 1):
            return "1" if value else "0"
        raise TypeError(f"expected a bit, got {value!r}")
    if kind == "date":
        if isinstance(value, datetime.datetime):
            if value.time() == datetime.time(0, 0):
                return value.strftime("%Y-%m-%d")
            return canon_datetime(value)
        if isinstance(value, datetime.date):
            return value.strftime("%Y-%m-%d")
        raise TypeError(f"expected a date, got {value!r}")
    if kind == "datetime":
        if isinstance(value, datetime.datetime):
            return canon_datetime(value)
        raise TypeError(f"expected a datetime, got {value!r}")
    if kind == "text":
        if isinstance(value, bytes):
            raise TypeError(f"expected text, got bytes {value!r}")
        if not isinstance(value, str):
            raise TypeError(f"expected text, got {value!r}")
        return canon_text(value)
    raise ValueError(kind)


class Checksum:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.rows = 0

    def add(self, row):
        if len(row) != len(KINDS):
            raise ValueError(f"row has {len(row)} columns, expected {len(KINDS)}: {row!r}")
        cells = [canon_cell(kind, value) for kind, value in zip(KINDS, row)]
        self.sha.update(("\t".join(cells) + "\n").encode("utf-8"))
        self.rows += 1

    def line(self):
        return f"rows={self.rows} sha256={self.sha.hexdigest()}"


