//! Wire layout of the open-orders result and the allocation-free row encoder.

use super::data::{Catalog, LineSpec, OPEN_ORDERS_COLUMNS};
use super::failure::Failure;
use super::tds::{self, ColType, Column};

const PRICE_PRECISION: u8 = 19;
const OVERFLOW_PRECISION: u8 = 38;
const QTY_PRECISION: u8 = 18;
const AMOUNT_PRECISION: u8 = 19;

/// How the result deviates from the real view because of a [`Failure`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quirks {
    /// Row index whose `customer_code` is NULL.
    pub(crate) null_at: Option<u64>,
    /// Row index whose `unit_price` is 10^30 (column declared decimal(38,4)).
    pub(crate) overflow_at: Option<u64>,
    /// `qty_open` sent as nvarchar.
    pub(crate) wrong_type: bool,
}

impl Quirks {
    pub(crate) fn for_failure(failure: Option<Failure>) -> Self {
        match failure {
            Some(Failure::NullAt(n)) => Quirks {
                null_at: Some(n),
                ..Quirks::default()
            },
            Some(Failure::OverflowAt(n)) => Quirks {
                overflow_at: Some(n),
                ..Quirks::default()
            },
            Some(Failure::WrongType) => Quirks {
                wrong_type: true,
                ..Quirks::default()
            },
            _ => Quirks::default(),
        }
    }
}

/// The columns of `dbo.vw_OpenOrders` (as altered by the quirks).
pub(crate) fn columns(quirks: Quirks) -> [Column<'static>; 19] {
    let dec = |precision, scale| ColType::Decimal { precision, scale };
    let nv = |chars| ColType::NVarChar { chars };
    let types: [(ColType, bool); 19] = [
        (ColType::BigInt, false),
        (ColType::Int, false),
        (ColType::Date, false),
        (nv(20), quirks.null_at.is_some()),
        (nv(100), false),
        (nv(40), false),
        (nv(200), true),
        (dec(QTY_PRECISION, 4), false),
        (dec(QTY_PRECISION, 4), false),
        (
            if quirks.wrong_type {
                nv(40)
            } else {
                dec(QTY_PRECISION, 4)
            },
            false,
        ),
        (
            if quirks.overflow_at.is_some() {
                dec(OVERFLOW_PRECISION, 4)
            } else {
                dec(PRICE_PRECISION, 4)
            },
            false,
        ),
        (dec(AMOUNT_PRECISION, 2), false),
        (nv(3), false),
        (ColType::Date, true),
        (ColType::Date, true),
        (nv(10), true),
        (nv(20), false),
        (ColType::Bit, false),
        (ColType::DateTime2 { scale: 3 }, false),
    ];
    std::array::from_fn(|i| Column {
        name: OPEN_ORDERS_COLUMNS[i],
        ty: types[i].0,
        nullable: types[i].1,
    })
}

/// Formats a scale-4 decimal as ASCII, e.g. `12.5000`.
fn format_scale4(mantissa: i64, out: &mut [u8; 32]) -> &[u8] {
    let mut pos = out.len();
    let negative = mantissa < 0;
    let mut v = mantissa.unsigned_abs();
    let mut digits = 0;
    while v > 0 || digits < 5 {
        if digits == 4 {
            pos -= 1;
            out[pos] = b'.';
        }
        pos -= 1;
        out[pos] = b'0' + (v % 10) as u8;
        v /= 10;
        digits += 1;
    }
    if negative {
        pos -= 1;
        out[pos] = b'-';
    }
    &out[pos..]
}

/// Appends one ROW token for `line` (row number `index` of the result).
#[inline]
pub(crate) fn encode_row(out: &mut Vec<u8>, cat: &Catalog, line: &LineSpec, index: u64, quirks: Quirks) {
    let customer = &cat.customers[line.customer];
    let item = &cat.items[line.item];
    tds::put_row_token(out);
    tds::put_bigint(out, line.order_no);
    tds::put_int(out, line.line_no);
    tds::put_date(out, line.order_date);
    if quirks.null_at == Some(index) {
        tds::put_nvarchar_null(out);
    } else {
        tds::put_nvarchar_ucs2(out, &customer.code.ucs2);
    }
    tds::put_nvarchar_ucs2(out, &customer.name.ucs2);
    tds::put_nvarchar_ucs2(out, &item.code.ucs2);
    match &item.description {
        Some(text) => tds::put_nvarchar_ucs2(out, &text.ucs2),
        None => tds::put_nvarchar_null(out),
    }
    tds::put_decimal(out, QTY_PRECISION, i128::from(line.qty_ordered));
    tds::put_decimal(out, QTY_PRECISION, i128::from(line.qty_shipped));
    if quirks.wrong_type {
        let mut buf = [0u8; 32];
        tds::put_nvarchar_ascii(out, format_scale4(line.qty_open(), &mut buf));
    } else {
        tds::put_decimal(out, QTY_PRECISION, i128::from(line.qty_open()));
    }
    match quirks.overflow_at {
        Some(n) if n == index => tds::put_decimal(out, OVERFLOW_PRECISION, 10i128.pow(34)),
        Some(_) => tds::put_decimal(out, OVERFLOW_PRECISION, i128::from(line.unit_price)),
        None => tds::put_decimal(out, PRICE_PRECISION, i128::from(line.unit_price)),
    }
    tds::put_decimal(out, AMOUNT_PRECISION, i128::from(line.line_amount));
    tds::put_nvarchar_ucs2(out, &cat.currencies[customer.currency].ucs2);
    match line.requested_date {
        Some(d) => tds::put_date(out, d),
        None => tds::put_null(out),
    }
    match line.promised_date {
        Some(d) => tds::put_date(out, d),
        None => tds::put_null(out),
    }
    match line.warehouse {
        Some(w) => tds::put_nvarchar_ucs2(out, &cat.warehouses[w].ucs2),
        None => tds::put_nvarchar_null(out),
    }
    tds::put_nvarchar_ucs2(out, &cat.statuses[usize::from(line.status)].ucs2);
    tds::put_bit(out, line.rush);
    tds::put_datetime2(out, line.modified_at, 3);
}

#[cfg(test)]
mod tests {
    use super::super::data::{LineSpecs, catalog};
    use super::super::tds::PacketWriter;
    use super::*;
    use std::time::Instant;

    /// One core, no socket: `cargo test -p sync-app --release --lib encode_throughput -- --ignored --nocapture`
    #[tokio::test(flavor = "current_thread")]
    #[ignore]
    async fn encode_throughput() {
        let rows = 1_000_000u64;
        let started = Instant::now();
        let generated = LineSpecs::new(42, 0, rows)
            .map(|l| l.line_amount)
            .fold(0i64, i64::wrapping_add);
        let gen_secs = started.elapsed().as_secs_f64();

        let (cat, quirks) = (catalog(), Quirks::default());
        let mut writer = PacketWriter::new(4096, 1);
        let mut sink = tokio::io::sink();
        let mut row = Vec::with_capacity(1024);
        let mut bytes = 0usize;
        let started = Instant::now();
        for (i, line) in LineSpecs::new(42, 0, rows).enumerate() {
            row.clear();
            encode_row(&mut row, cat, &line, i as u64, quirks);
            writer.put(&row);
            if writer.buffered() >= 64 * 1024 {
                bytes += writer.buffered();
                writer.write_full_packets(&mut sink).await.unwrap();
            }
        }
        writer.end_message(&mut sink).await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "generate only: {:.0} rows/s (checksum {generated}); generate + encode + frame: {:.0} rows/s, \
             {:.0} MB/s, ~{} bytes/row",
            rows as f64 / gen_secs,
            rows as f64 / secs,
            bytes as f64 / secs / 1e6,
            bytes as u64 / rows
        );
    }

    #[test]
    fn scale4_formatting() {
        let mut buf = [0u8; 32];
        assert_eq!(format_scale4(125_000, &mut buf), b"12.5000");
        assert_eq!(format_scale4(5, &mut buf), b"0.0005");
        assert_eq!(format_scale4(0, &mut buf), b"0.0000");
        assert_eq!(format_scale4(-10_000, &mut buf), b"-1.0000");
    }
}
