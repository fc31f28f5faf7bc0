//! The deterministic open-orders data set behind `dbo.vw_OpenOrders`.
//!
//! Everything here is a pure function of `(seed, generation, orders)`: no wall clock, no global
//! state besides an immutable catalogue of customers and items. Generation 0 row `i` depends only
//! on `(seed, i)`, so any row can be computed on its own ([`order_line`]), and the server streams
//! rows straight from the iterator without ever holding a result in memory.
//!
//! With `evolve`, generation `g` models the ERP `g` sync intervals later: a few orders are
//! appended per generation, some lines get (more) shipped, and fully shipped lines disappear.

use std::sync::OnceLock;

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use rust_decimal::Decimal;

/// The view the fake ERP serves.
pub const VIEW_NAME: &str = "dbo.vw_OpenOrders";

/// The column names of the open-orders result, in wire order.
pub const OPEN_ORDERS_COLUMNS: [&str; 19] = [
    "order_no",
    "line_no",
    "order_date",
    "customer_code",
    "customer_name",
    "item_code",
    "item_description",
    "qty_ordered",
    "qty_shipped",
    "qty_open",
    "unit_price",
    "line_amount",
    "currency",
    "requested_date",
    "promised_date",
    "warehouse",
    "status",
    "rush",
    "modified_at",
];

/// A query the fake ERP answers with the open-orders result (any SQL text containing
/// `openorders`, case-insensitively, does).
pub const OPEN_ORDERS_SQL: &str = "SELECT order_no, line_no, order_date, customer_code, customer_name, \
     item_code, item_description, qty_ordered, qty_shipped, qty_open, unit_price, line_amount, currency, \
     requested_date, promised_date, warehouse, status, rush, modified_at \
     FROM dbo.vw_OpenOrders ORDER BY order_no, line_no";

/// Seconds between two generations (the demo's sync interval).
pub const GENERATION_INTERVAL_SECS: i64 = 300;

/// Number of distinct customers in the catalogue.
pub const CUSTOMER_COUNT: usize = 500;

/// Number of distinct items in the catalogue.
pub const ITEM_COUNT: usize = 2000;

/// Rows per group of the generation-0 layout; each group holds at most [`ORDERS_PER_GROUP`] orders.
const GROUP_ROWS: u64 = 16;
const ORDERS_PER_GROUP: u64 = 6;
const FIRST_ORDER_NO: i64 = 100_000;

/// "Now" for generation 0: 2025-06-30 16:00:00. Order dates lie within the two years before.
pub fn data_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2025, 6, 30)
        .and_then(|d| d.and_hms_opt(16, 0, 0))
        .expect("valid epoch")
}

/// "Now" for a generation: [`data_epoch`] plus `generation` sync intervals.
pub fn generation_time(generation: u64) -> NaiveDateTime {
    let secs = i64::try_from(generation)
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(GENERATION_INTERVAL_SECS);
    data_epoch() + TimeDelta::try_seconds(secs).unwrap_or(TimeDelta::MAX / 2)
}

/// One row of `dbo.vw_OpenOrders`, exactly as the fake ERP sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// `bigint`, order number (100000 and up).
    pub order_no: i64,
    /// `int`, line number within the order (1..n).
    pub line_no: i32,
    /// `date`, when the order was placed.
    pub order_date: NaiveDate,
    /// `nvarchar(20)`, e.g. `C00042`.
    pub customer_code: String,
    /// `nvarchar(100)`, company name (some non-ASCII).
    pub customer_name: String,
    /// `nvarchar(40)`, e.g. `BRG-01234`.
    pub item_code: String,
    /// `nvarchar(200) NULL`.
    pub item_description: Option<String>,
    /// `decimal(18,4)`.
    pub qty_ordered: Decimal,
    /// `decimal(18,4)`, `<= qty_ordered`.
    pub qty_shipped: Decimal,
    /// `decimal(18,4)`, `qty_ordered - qty_shipped`, always `> 0`.
    pub qty_open: Decimal,
    /// `decimal(19,4)`.
    pub unit_price: Decimal,
    /// `decimal(19,2)`, `qty_open * unit_price` rounded half-up to cents.
    pub line_amount: Decimal,
    /// `nvarchar(3)`: EUR, USD, GBP or CHF.
    pub currency: String,
    /// `date NULL`.
    pub requested_date: Option<NaiveDate>,
    /// `date NULL`.
    pub promised_date: Option<NaiveDate>,
    /// `nvarchar(10) NULL`.
    pub warehouse: Option<String>,
    /// `nvarchar(20)`: "Open", "Partially shipped", "Backordered" or "On hold".
    pub status: String,
    /// `bit`.
    pub rush: bool,
    /// `datetime2(3)`.
    pub modified_at: NaiveDateTime,
}

/// Generation-0 row `index` for `seed`: the row at that position of
/// [`order_lines(seed, 0, n)`](order_lines) for any `n > index`.
pub fn order_line(seed: u64, index: u64) -> OrderLine {
    let (order_no, line_no) = base_position(seed, index);
    line_spec(seed, 0, order_no, line_no, 0)
        .expect("generation-0 lines are never fully shipped")
        .to_order_line()
}

/// All rows the fake ERP sends for `(seed, generation)` when started with `--orders orders`,
/// in wire order (by `order_no`, `line_no`). Generation 0 has exactly `orders` rows; later
/// generations (demo `evolve` mode) drop fully shipped lines and append new orders.
///
/// This is the single source of truth for the server's open-orders result.
pub fn order_lines(seed: u64, generation: u64, orders: u64) -> OrderLines {
    OrderLines {
        specs: LineSpecs::new(seed, generation, orders),
    }
}

/// Iterator returned by [`order_lines`].
#[derive(Debug, Clone)]
pub struct OrderLines {
    specs: LineSpecs,
}

impl Iterator for OrderLines {
    type Item = OrderLine;

    fn next(&mut self) -> Option<OrderLine> {
        self.specs.next().map(|spec| spec.to_order_line())
    }
}

// ---------------------------------------------------------------------------------------------
// PRNG: splitmix64, keyed by tuples so every value is independently addressable.

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const TAG_GROUP: u64 = 0x0067_726F_7570;
const TAG_ORDER: u64 = 0x006F_7264_6572;
const TAG_LINE: u64 = 0x6C69_6E65;
const TAG_SHIP: u64 = 0x7368_6970;
const TAG_ADD: u64 = 0x0061_6464;
const TAG_CATALOG: u64 = 0x0063_6174_616C_6F67;

#[inline]
const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn hash(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x243F_6A88_85A3_08D3;
    for &p in parts {
        h = mix(h.wrapping_add(GOLDEN) ^ p);
    }
    h
}

/// A tiny splitmix64 stream.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(key: u64) -> Self {
        Rng(key)
    }

    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with `percent`% probability.
    #[inline]
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// ---------------------------------------------------------------------------------------------
// Catalogue: customers, items and the small code lists, with their UCS-2 encodings precomputed
// so the server can copy them straight onto the wire.

/// A string together with its UTF-16LE encoding.
#[derive(Debug)]
pub(crate) struct Text {
    pub(crate) text: String,
    pub(crate) ucs2: Vec<u8>,
}

impl Text {
    fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let ucs2 = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        Text { text, ucs2 }
    }
}

#[derive(Debug)]
pub(crate) struct Customer {
    pub(crate) code: Text,
    pub(crate) name: Text,
    pub(crate) currency: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Whole pieces, small quantities.
    Pieces,
    /// Whole pieces bought in bulk (screws, nuts).
    Bulk,
    /// Metres: mostly whole, sometimes 1-2 decimals.
    Metres,
    /// Kilograms: up to 4 decimals.
    Kilograms,
}

#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) code: Text,
    pub(crate) description: Option<Text>,
    unit: Unit,
    /// Unit price, scale 4.
    price: i64,
}

#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) customers: Vec<Customer>,
    pub(crate) items: Vec<Item>,
    pub(crate) currencies: Vec<Text>,
    pub(crate) statuses: Vec<Text>,
    pub(crate) warehouses: Vec<Text>,
}

const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "CHF"];
const EUR: usize = 0;
const USD: usize = 1;
const GBP: usize = 2;
const CHF: usize = 3;

const STATUS_OPEN: u8 = 0;
const STATUS_PARTIAL: u8 = 1;
const STATUS_BACKORDERED: u8 = 2;
const STATUS_ON_HOLD: u8 = 3;
const STATUSES: [&str; 4] = ["Open", "Partially shipped", "Backordered", "On hold"];

const WAREHOUSES: [&str; 8] = [
    "MAIN", "NORTH", "SOUTH", "WH-01", "WH-02", "DE-HAM", "DE-MUC", "CH-ZRH",
];

const SURNAMES: [&str; 44] = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Becker",
    "Hoffmann",
    "Schäfer",
    "Dupont",
    "Lefèvre",
    "Moreau",
    "Girard",
    "Rossi",
    "Bianchi",
    "Ferrari",
    "Colombo",
    "Jansen",
    "De Vries",
    "Andersson",
    "Johansson",
    "Nowak",
    "Kowalski",
    "Novák",
    "Dvořák",
    "Horváth",
    "García",
    "Fernández",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Taylor",
    "O'Connor",
    "Jensen",
    "Nielsen",
    "Virtanen",
    "Keller",
    "Baumann",
    "Brunner",
    "Huber",
    "Gruber",
    "Meier",
    "Østergaard",
    "Çelik",
];

const TRADES: [&str; 22] = [
    "Maschinenbau",
    "Industrietechnik",
    "Antriebstechnik",
    "Metallwerk",
    "Hydraulik",
    "Logistics",
    "Engineering",
    "Components",
    "Automation",
    "Fasteners",
    "Packaging",
    "Industrial Supply",
    "Tooling",
    "Précision",
    "Mécanique",
    "Meccanica",
    "Techniek",
    "Elektrotechnik",
    "Fluid Systems",
    "Werkzeugbau",
    "Stahlhandel",
    "Motion Control",
];

/// (legal form suffixes, currency, weight in %).
const COUNTRIES: [(&[&str], usize, u64); 10] = [
    (&["GmbH", "AG", "GmbH & Co. KG", "KG"], EUR, 30),
    (&["SARL", "S.A.", "SAS"], EUR, 10),
    (&["S.p.A.", "S.r.l."], EUR, 8),
    (&["B.V."], EUR, 6),
    (&["GmbH"], EUR, 5),
    (&["AG", "GmbH", "SA"], CHF, 10),
    (&["Ltd", "plc"], GBP, 10),
    (&["Inc.", "LLC", "Corp."], USD, 12),
    (&["sp. z o.o."], EUR, 5),
    (&["s.r.o."], EUR, 4),
];

/// Hand-written customers at fixed positions (index, name, currency).
const SPECIAL_CUSTOMERS: [(usize, &str, usize); 12] = [
    (1, "Müller GmbH", EUR),
    (7, "Société Générale d'Équipement", EUR),
    (13, "Zürcher Präzisionsteile AG", CHF),
    (23, "Ærø Marine ApS", EUR),
    (42, "Škoda Díly s.r.o.", EUR),
    (64, "Łódź Metal Works sp. z o.o.", EUR),
    (99, "Straße & Söhne KG", EUR),
    (128, "Øresund Hydraulics AB", EUR),
    (256, "Ñandú Industrial S.A.", USD),
    (314, "Ångström Laser AB", EUR),
    (400, "東京精密機械株式会社", USD),
    (450, "Brasserie Équipements « Le Moulin » SARL", EUR),
];

/// (code prefix, description noun, unit, price range in 1/10000 of a currency unit).
const FAMILIES: [(&str, &str, Unit, i64, i64); 16] = [
    ("BRG", "Deep groove ball bearing", Unit::Pieces, 45_000, 1_800_000),
    ("SCR", "Hex socket screw DIN 912", Unit::Bulk, 150, 12_000),
    ("NUT", "Hex nut DIN 934", Unit::Bulk, 80, 6_000),
    ("VLV", "Ball valve, stainless", Unit::Pieces, 250_000, 9_000_000),
    ("MTR", "Servo motor", Unit::Pieces, 4_500_000, 49_999_900),
    ("CBL", "Control cable, shielded", Unit::Metres, 8_500, 240_000),
    ("HSE", "Hydraulic hose 2SN", Unit::Metres, 40_000, 600_000),
    (
        "FLT",
        "Hydraulic filter element",
        Unit::Pieces,
        150_000,
        2_400_000,
    ),
    ("GSK", "Flat gasket", Unit::Pieces, 3_500, 180_000),
    ("PMP", "Centrifugal pump", Unit::Pieces, 3_800_000, 78_000_000),
    (
        "SNS",
        "Inductive proximity sensor",
        Unit::Pieces,
        180_000,
        2_600_000,
    ),
    ("BLT", "V-belt", Unit::Pieces, 60_000, 850_000),
    ("GRS", "Lithium grease EP2", Unit::Kilograms, 80_000, 450_000),
    ("PLT", "Steel plate S235JR", Unit::Kilograms, 11_000, 35_000),
    ("CHN", "Roller chain DIN 8187", Unit::Metres, 90_000, 1_200_000),
    ("CPL", "Jaw coupling", Unit::Pieces, 120_000, 3_200_000),
];

pub(crate) fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(build_catalog)
}

fn build_catalog() -> Catalog {
    let customers = (0..CUSTOMER_COUNT).map(build_customer).collect();
    let items = (0..ITEM_COUNT).map(build_item).collect();
    Catalog {
        customers,
        items,
        currencies: CURRENCIES.iter().map(|s| Text::new(*s)).collect(),
        statuses: STATUSES.iter().map(|s| Text::new(*s)).collect(),
        warehouses: WAREHOUSES.iter().map(|s| Text::new(*s)).collect(),
    }
}

fn build_customer(index: usize) -> Customer {
    let code = Text::new(format!("C{index:05}"));
    if let Some(&(_, name, currency)) = SPECIAL_CUSTOMERS.iter().find(|(i, ..)| *i == index) {
        return Customer {
            code,
            name: Text::new(name),
            currency,
        };
    }
    let mut r = Rng::new(hash(&[TAG_CATALOG, 1, index as u64]));
    let mut roll = r.below(100);
    let (suffixes, currency, _) = COUNTRIES
        .iter()
        .find(|(_, _, weight)| {
            let hit = roll < *weight;
            roll = roll.saturating_sub(*weight);
            hit
        })
        .copied()
        .unwrap_or(COUNTRIES[0]);
    let surname = r.pick(&SURNAMES);
    let suffix = r.pick(suffixes);
    let name = match r.below(10) {
        0..=5 => format!("{surname} {} {suffix}", r.pick(&TRADES)),
        6..=7 => format!("{surname} & {} {suffix}", r.pick(&SURNAMES)),
        _ => format!("{surname} {suffix}"),
    };
    Customer {
        code,
        name: Text::new(name),
        currency,
    }
}

fn build_item(index: usize) -> Item {
    let mut r = Rng::new(hash(&[TAG_CATALOG, 2, index as u64]));
    let (prefix, noun, unit, lo, hi) = FAMILIES[index % FAMILIES.len()];
    let code = Text::new(format!("{prefix}-{:05}", 1000 + index * 7));
    let spec = match prefix {
        "BRG" => format!("62{:02}-2RS", r.range(0, 12)),
        "SCR" => format!(
            "M{} x {} mm, 8.8 zinc plated",
            r.pick(&[4, 5, 6, 8, 10, 12]),
            5 * r.range(2, 16)
        ),
        "NUT" => format!("M{}, 8, zinc plated", r.pick(&[4, 5, 6, 8, 10, 12, 16])),
        "VLV" => format!("DN{}, PN40, 3-piece", r.pick(&[15, 20, 25, 32, 40, 50])),
        "MTR" => format!("{:.1} kW, 3000 rpm, IP65", (r.range(4, 75) as f64) / 10.0),
        "CBL" => format!(
            "{} x {} mm², PVC, grey",
            r.range(2, 12),
            r.pick(&["0.5", "0.75", "1.0", "1.5"])
        ),
        "HSE" => format!("DN{}, 400 bar", r.pick(&[6, 8, 10, 12, 16, 20])),
        "FLT" => format!("{} µm, glass fibre", r.pick(&[3, 5, 10, 25])),
        "GSK" => format!("{} x {} x 2 mm, EPDM", r.range(10, 90), r.range(20, 120)),
        "PMP" => format!("{} m³/h, {} m head", r.range(5, 120), r.range(10, 80)),
        "SNS" => format!(
            "M{}, {} mm range, PNP NO",
            r.pick(&[8, 12, 18, 30]),
            r.range(1, 15)
        ),
        "BLT" => format!("SPZ {} Lw", 10 * r.range(60, 250)),
        "GRS" => "NLGI 2, cartridge 400 g".to_owned(),
        "PLT" => format!("{} mm, hot rolled", r.pick(&[2, 3, 4, 5, 6, 8, 10, 12])),
        "CHN" => format!("{}B-1, simplex", r.pick(&["06", "08", "10", "12", "16"])),
        _ => format!("size {}", r.range(1, 9)),
    };
    let description = (!r.chance(6)).then(|| Text::new(format!("{noun} {spec}")));
    let raw = lo + r.below((hi - lo) as u64 + 1) as i64;
    let price = if raw < 10_000 {
        // below 1.00: quoted to 4 decimals in steps of 0.0005
        (raw / 5).max(1) * 5
    } else if raw < 1_000_000 {
        // cents, often ending in .50/.90/.95/.99
        let whole = raw / 10_000;
        let odd = 10 + r.below(80) as i64;
        let cents = *r.pick(&[0, 50, 90, 95, 99, 25, 75, odd]);
        whole * 10_000 + cents * 100
    } else {
        let whole = raw / 10_000;
        let cents = *r.pick(&[0, 0, 0, 99, 90, 50]);
        whole * 10_000 + cents * 100
    };
    Item {
        code,
        description,
        unit,
        price,
    }
}

// ---------------------------------------------------------------------------------------------
// Row generation.

/// A generated row in compact form (indices into the catalogue, scaled integers). Cheap to copy;
/// the server encodes it without allocating, [`OrderLine`] is built from it for everybody else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineSpec {
    pub(crate) order_no: i64,
    pub(crate) line_no: i32,
    pub(crate) order_date: NaiveDate,
    pub(crate) customer: usize,
    pub(crate) item: usize,
    /// Scale 4.
    pub(crate) qty_ordered: i64,
    /// Scale 4.
    pub(crate) qty_shipped: i64,
    /// Scale 4.
    pub(crate) unit_price: i64,
    /// Scale 2.
    pub(crate) line_amount: i64,
    pub(crate) requested_date: Option<NaiveDate>,
    pub(crate) promised_date: Option<NaiveDate>,
    pub(crate) warehouse: Option<usize>,
    pub(crate) status: u8,
    pub(crate) rush: bool,
    pub(crate) modified_at: NaiveDateTime,
}

impl LineSpec {
    /// Scale 4.
    pub(crate) fn qty_open(&self) -> i64 {
        self.qty_ordered - self.qty_shipped
    }

    pub(crate) fn to_order_line(self) -> OrderLine {
        let cat = catalog();
        let customer = &cat.customers[self.customer];
        let item = &cat.items[self.item];
        OrderLine {
            order_no: self.order_no,
            line_no: self.line_no,
            order_date: self.order_date,
            customer_code: customer.code.text.clone(),
            customer_name: customer.name.text.clone(),
            item_code: item.code.text.clone(),
            item_description: item.description.as_ref().map(|t| t.text.clone()),
            qty_ordered: Decimal::new(self.qty_ordered, 4),
            qty_shipped: Decimal::new(self.qty_shipped, 4),
            qty_open: Decimal::new(self.qty_open(), 4),
            unit_price: Decimal::new(self.unit_price, 4),
            line_amount: Decimal::new(self.line_amount, 2),
            currency: cat.currencies[customer.currency].text.clone(),
            requested_date: self.requested_date,
            promised_date: self.promised_date,
            warehouse: self.warehouse.map(|w| cat.warehouses[w].text.clone()),
            status: cat.statuses[usize::from(self.status)].text.clone(),
            rush: self.rush,
            modified_at: self.modified_at,
        }
    }
}

/// `(order_no, line_no)` of generation-0 row `index`.
///
/// Rows come in groups of 16; a per-group random cut mask splits a group into 1..=6 orders,
/// so order numbers are increasing with small gaps, like in a real ERP.
fn base_position(seed: u64, index: u64) -> (i64, i32) {
    let group = index / GROUP_ROWS;
    let pos = (index % GROUP_ROWS) as u32;
    let mask = group_cut_mask(seed, group);
    let upto = mask & ((2u32 << pos) - 1);
    let ordinal = upto.count_ones();
    let order_start = if upto == 0 { 0 } else { 31 - upto.leading_zeros() };
    let order_no = FIRST_ORDER_NO + (group * ORDERS_PER_GROUP) as i64 + i64::from(ordinal);
    (order_no, (pos - order_start + 1) as i32)
}

/// Bit `p` (1..16) set = a new order starts at position `p` of the group.
fn group_cut_mask(seed: u64, group: u64) -> u32 {
    let bits = hash(&[seed, TAG_GROUP, group]);
    let mut mask = 0u32;
    let mut cuts = 0;
    for p in 1..GROUP_ROWS as u32 {
        if cuts < ORDERS_PER_GROUP - 1 && (bits >> (p * 4)) & 0xF < 5 {
            mask |= 1 << p;
            cuts += 1;
        }
    }
    mask
}

/// Order numbers of orders added by evolution start above every generation-0 order.
fn first_added_order_no(orders: u64) -> i64 {
    FIRST_ORDER_NO + (orders.div_ceil(GROUP_ROWS) * ORDERS_PER_GROUP) as i64
}

fn days(n: u64) -> TimeDelta {
    TimeDelta::days(n as i64)
}

fn millis(n: u64) -> TimeDelta {
    TimeDelta::milliseconds(n as i64)
}

/// Whole units (scale 4) drawn for an item's unit of measure.
fn random_quantity(unit: Unit, r: &mut Rng) -> i64 {
    let units = |n: u64| n as i64 * 10_000;
    match unit {
        Unit::Pieces => match r.below(100) {
            0..=59 => units(r.range(1, 20)),
            60..=89 => units(5 * r.range(5, 40)),
            _ => units(50 * r.range(5, 20)),
        },
        Unit::Bulk => units(100 * r.range(1, 50)),
        Unit::Metres => match r.below(100) {
            0..=59 => units(5 * r.range(1, 100)),
            60..=84 => units(r.range(1, 250)) + 5_000,
            _ => units(r.range(1, 120)) + 2_500 * r.range(1, 3) as i64,
        },
        Unit::Kilograms => match r.below(100) {
            0..=49 => units(r.range(1, 200)),
            50..=84 => units(r.range(0, 40)) + 1_250 * r.range(1, 7) as i64,
            _ => units(r.range(0, 25)) + r.range(2_500, 9_999) as i64,
        },
    }
}

/// The row for `(order_no, line_no)` of an order born in generation `born`, as it looks in
/// `generation`, or `None` once it is fully shipped.
fn line_spec(seed: u64, generation: u64, order_no: i64, line_no: i32, born: u64) -> Option<LineSpec> {
    debug_assert!(generation >= born);
    let cat = catalog();

    // Order-level attributes: shared by all lines of an order.
    let mut o = Rng::new(hash(&[seed, TAG_ORDER, order_no as u64]));
    let customer = o.below(CUSTOMER_COUNT as u64) as usize;
    let created = if born == 0 {
        let day = data_epoch().date() - days(1 + o.below(729));
        day.and_hms_opt(6, 0, 0).expect("valid time") + millis(o.below(12 * 3_600_000))
    } else {
        generation_time(born) - millis(o.below(300_000))
    };
    let order_date = created.date();
    let order_requested = o.chance(55).then(|| order_date + days(7 + o.below(84)));
    let rush_order = o.chance(5);

    // Line-level attributes.
    let mut r = Rng::new(hash(&[seed, TAG_LINE, order_no as u64, line_no as u64]));
    let item = r.below(ITEM_COUNT as u64) as usize;
    let catalog_item = &cat.items[item];
    let qty_ordered = random_quantity(catalog_item.unit, &mut r);
    let base_status = match r.below(100) {
        0..=71 => STATUS_OPEN,
        72..=87 => STATUS_BACKORDERED,
        _ => STATUS_ON_HOLD,
    };
    let can_ship = base_status != STATUS_ON_HOLD;
    let whole = qty_ordered % 10_000 == 0;
    let initial_shipped = if born == 0 && can_ship && r.chance(35) {
        if whole && qty_ordered >= 20_000 {
            r.range(1, (qty_ordered / 10_000 - 1) as u64) as i64 * 10_000
        } else if !whole {
            qty_ordered * r.range(1, 3) as i64 / 4
        } else {
            0
        }
    } else {
        0
    };
    let active = can_ship && r.chance(40);
    let cadence = r.range(1, 4);
    let parts = r.range(2, 4) as i64;
    let chunk = if whole {
        (qty_ordered / 10_000 + parts - 1) / parts * 10_000
    } else {
        (qty_ordered + parts - 1) / parts
    };
    let requested_date = if r.chance(90) { order_requested } else { None };
    let promised_date = r.chance(45).then(|| {
        let base = requested_date.unwrap_or(order_date + days(14));
        (base + days(r.below(15)) - days(3)).max(order_date)
    });
    let warehouse = (!r.chance(8)).then(|| r.below(WAREHOUSES.len() as u64) as usize);
    let rush = rush_order || r.chance(3);
    let modified_roll = r.next();

    // Evolution: active lines ship one chunk every `cadence` generations.
    let age = generation - born;
    let shipments = if active { age / cadence } else { 0 };
    let qty_shipped = i64::try_from(shipments)
        .unwrap_or(i64::MAX)
        .saturating_mul(chunk)
        .saturating_add(initial_shipped)
        .min(qty_ordered);
    if qty_shipped >= qty_ordered {
        return None;
    }
    let status = if qty_shipped > 0 {
        STATUS_PARTIAL
    } else {
        base_status
    };
    let modified_at = if shipments > 0 {
        let shipped_in = born + shipments * cadence;
        let jitter = hash(&[seed, TAG_SHIP, order_no as u64, line_no as u64, shipped_in]) % 300_000;
        generation_time(shipped_in) - millis(jitter)
    } else if born == 0 {
        let span = (data_epoch() - created).num_milliseconds().max(0) as u64;
        created + millis(modified_roll % (span + 1))
    } else {
        created
    };
    // Whole 10 ms, so that the classic schema's DATETIME (1/300 s ticks) holds it exactly.
    let modified_at = modified_at - millis(u64::from(modified_at.and_utc().timestamp_subsec_millis() % 10));

    let unit_price = catalog_item.price;
    let qty_open = qty_ordered - qty_shipped;
    // scale 4 * scale 4 = scale 8; round half up to scale 2
    let amount8 = i128::from(qty_open) * i128::from(unit_price);
    let line_amount = ((amount8 + 500_000) / 1_000_000) as i64;

    Some(LineSpec {
        order_no,
        line_no,
        order_date,
        customer,
        item,
        qty_ordered,
        qty_shipped,
        unit_price,
        line_amount,
        requested_date,
        promised_date,
        warehouse,
        status,
        rush,
        modified_at,
    })
}

/// Streams the [`LineSpec`]s of one generation: first the surviving generation-0 lines, then the
/// orders added in generations `1..=generation`, each filtered to lines still open.
#[derive(Debug, Clone)]
pub(crate) struct LineSpecs {
    seed: u64,
    generation: u64,
    orders: u64,
    /// Next generation-0 row index.
    base_index: u64,
    /// Generation whose added orders are being emitted (0 = still in the base rows).
    added_gen: u64,
    /// Orders left to emit in `added_gen`, and the lines of the current one.
    added_orders_left: u64,
    added_lines: i32,
    added_line: i32,
    next_order_no: i64,
}

impl LineSpecs {
    pub(crate) fn new(seed: u64, generation: u64, orders: u64) -> Self {
        LineSpecs {
            seed,
            generation,
            orders,
            base_index: 0,
            added_gen: 0,
            added_orders_left: 0,
            added_lines: 0,
            added_line: 0,
            next_order_no: first_added_order_no(orders) - 1,
        }
    }
}

impl Iterator for LineSpecs {
    type Item = LineSpec;

    fn next(&mut self) -> Option<LineSpec> {
        while self.base_index < self.orders {
            let (order_no, line_no) = base_position(self.seed, self.base_index);
            self.base_index += 1;
            if let Some(spec) = line_spec(self.seed, self.generation, order_no, line_no, 0) {
                return Some(spec);
            }
        }
        loop {
            if self.added_line < self.added_lines {
                self.added_line += 1;
                let spec = line_spec(
                    self.seed,
                    self.generation,
                    self.next_order_no,
                    self.added_line,
                    self.added_gen,
                );
                if spec.is_some() {
                    return spec;
                }
                continue;
            }
            if self.added_orders_left > 0 {
                self.added_orders_left -= 1;
                self.next_order_no += 1;
                let mut r = Rng::new(hash(&[self.seed, TAG_ADD, self.next_order_no as u64]));
                self.added_lines = r.range(1, 5) as i32;
                self.added_line = 0;
                continue;
            }
            if self.added_gen >= self.generation {
                return None;
            }
            self.added_gen += 1;
            let mut r = Rng::new(hash(&[self.seed, TAG_ADD, self.added_gen]));
            self.added_orders_left = r.range(1, 3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generation_zero_has_exactly_the_requested_rows_and_matches_order_line() {
        for n in [0, 1, 15, 16, 17, 1000] {
            let rows: Vec<_> = order_lines(42, 0, n).collect();
            assert_eq!(rows.len() as u64, n);
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(row, &order_line(42, i as u64));
            }
        }
    }

    #[test]
    fn keys_are_unique_and_sorted_and_values_are_consistent() {
        let rows: Vec<_> = order_lines(7, 0, 20_000).collect();
        let mut keys = HashSet::new();
        let mut customers = HashSet::new();
        let mut previous = (0, 0);
        for row in &rows {
            let key = (row.order_no, row.line_no);
            assert!(keys.insert(key), "duplicate {key:?}");
            assert!(key > previous, "{key:?} after {previous:?}");
            previous = key;
            assert!(row.qty_shipped <= row.qty_ordered);
            assert!(row.qty_open > Decimal::ZERO);
            assert_eq!(row.qty_open, row.qty_ordered - row.qty_shipped);
            let amount = (row.qty_open * row.unit_price)
                .round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
            assert_eq!(row.line_amount, amount);
            assert!(row.customer_code.len() <= 20 && row.customer_name.chars().count() <= 100);
            assert!(row.item_code.len() <= 40);
            assert!(
                row.item_description
                    .as_ref()
                    .is_none_or(|d| d.chars().count() <= 200)
            );
            assert!(row.warehouse.as_ref().is_none_or(|w| w.len() <= 10));
            assert!(row.order_date <= data_epoch().date());
            assert!(row.order_date >= data_epoch().date() - TimeDelta::days(731));
            assert_eq!(row.modified_at.and_utc().timestamp_subsec_nanos() % 10_000_000, 0);
            customers.insert(row.customer_code.clone());
        }
        assert!(customers.len() > 400, "{}", customers.len());
        assert!(rows.iter().any(|r| r.item_description.is_none()));
        assert!(rows.iter().any(|r| r.requested_date.is_none()));
        assert!(rows.iter().any(|r| r.promised_date.is_some()));
        assert!(rows.iter().any(|r| r.warehouse.is_none()));
        assert!(rows.iter().any(|r| r.rush));
        assert!(rows.iter().any(|r| r.qty_ordered.fract() != Decimal::ZERO));
        assert!(rows.iter().any(|r| !r.customer_name.is_ascii()));
        for status in STATUSES {
            assert!(rows.iter().any(|r| r.status == status), "{status}");
        }
        assert!(rows.iter().filter(|r| r.line_no > 1).count() > rows.len() / 2);
    }

    #[test]
    fn seeds_and_generations_change_the_data_deterministically() {
        let a: Vec<_> = order_lines(1, 0, 500).collect();
        assert_eq!(a, order_lines(1, 0, 500).collect::<Vec<_>>());
        assert_ne!(a, order_lines(2, 0, 500).collect::<Vec<_>>());

        let g1: Vec<_> = order_lines(1, 1, 500).collect();
        let g2: Vec<_> = order_lines(1, 2, 500).collect();
        assert_ne!(a, g1);
        assert_ne!(g1, g2);
        assert_eq!(g2, order_lines(1, 2, 500).collect::<Vec<_>>());
    }

    #[test]
    fn evolution_ships_lines_appends_orders_and_drops_finished_lines() {
        let before: Vec<_> = order_lines(3, 0, 2000).collect();
        let after: Vec<_> = order_lines(3, 10, 2000).collect();
        let keys_after: HashSet<_> = after.iter().map(|r| (r.order_no, r.line_no)).collect();
        let dropped = before
            .iter()
            .filter(|r| !keys_after.contains(&(r.order_no, r.line_no)))
            .count();
        assert!(dropped > 0, "no line was fully shipped");
        let max_before = before.iter().map(|r| r.order_no).max().unwrap();
        assert!(
            after.iter().any(|r| r.order_no > max_before),
            "no orders were appended"
        );
        let before_by_key: std::collections::HashMap<_, _> =
            before.iter().map(|r| ((r.order_no, r.line_no), r)).collect();
        let mut shipped_more = 0;
        for row in &after {
            assert!(row.qty_open > Decimal::ZERO);
            if let Some(old) = before_by_key.get(&(row.order_no, row.line_no)) {
                assert!(row.qty_shipped >= old.qty_shipped);
                assert_eq!(row.qty_ordered, old.qty_ordered);
                if row.qty_shipped > old.qty_shipped {
                    shipped_more += 1;
                    assert!(row.modified_at > old.modified_at);
                    assert_eq!(row.status, "Partially shipped");
                }
            }
        }
        assert!(shipped_more > 0);
        let mut keys = HashSet::new();
        assert!(after.iter().all(|r| keys.insert((r.order_no, r.line_no))));
    }
}

/// An order line as the sync stores it: what tests and benchmarks expect in `open_orders`
/// after syncing from the fake ERP (`modified_at` is the ERP's `erp_modified_at`).
impl From<OrderLine> for crate::open_orders::OpenOrder {
    fn from(l: OrderLine) -> Self {
        Self {
            order_no: l.order_no,
            line_no: l.line_no,
            customer_code: l.customer_code,
            customer_name: l.customer_name,
            item_code: l.item_code,
            item_description: l.item_description,
            qty_ordered: l.qty_ordered,
            qty_shipped: l.qty_shipped,
            qty_open: l.qty_open,
            unit_price: l.unit_price,
            line_amount: l.line_amount,
            currency: l.currency,
            order_date: l.order_date,
            requested_date: l.requested_date,
            promised_date: l.promised_date,
            warehouse: l.warehouse,
            status: l.status,
            rush: l.rush,
            erp_modified_at: Some(l.modified_at),
        }
    }
}
