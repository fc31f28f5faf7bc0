//! `/open_orders`: the local snapshot with search, sort, pages and totals.
//!
//! The parameters (`?q=&sort=&dir=&page=`) are read by poem's `Query` into
//! [`OrderParams`]; every failure is a [`PageError`] that joblog-web's error pages render,
//! with a way back to this page.

use std::sync::Arc;

use joblog::RunStatus;
use joblog::query::{Cursor, RunFilter};
use joblog_web::PageError;
use minijinja::context;
use minijinja::value::{Serde, Value};
use poem::handler;
use poem::http::StatusCode;
use poem::web::{Data, Html, Query};
use rust_decimal::Decimal;
use serde::de::{Deserializer, Error as _};
use serde::{Deserialize, Serialize};

use super::PageState;
use crate::open_orders::query::{self, OrderQuery, OrdersPage, Sort, StoredOrder};
use crate::sync_job::JOB_NAME;

/// Rows per page.
const PER_PAGE: u32 = 50;

#[derive(Serialize)]
struct RowView {
    order_no: i64,
    line_no: i32,
    customer_code: String,
    customer_name: String,
    item_code: String,
    item_description: String,
    qty_ordered: String,
    qty_shipped: String,
    qty_open: String,
    unit_price: String,
    line_amount: String,
    currency: String,
    order_date: String,
    requested_date: String,
    promised_date: String,
    warehouse: String,
    status: String,
    rush: bool,
}

#[derive(Serialize)]
struct Column {
    label: &'static str,
    class: &'static str,
    sort: bool,
    href: String,
    active: bool,
    arrow: &'static str,
}

#[derive(Serialize)]
struct Total {
    currency: String,
    amount: String,
}

#[derive(Serialize)]
struct LastSync {
    id: i64,
    name: String,
    at: String,
}

/// `1234567.5` → `1,234,567.50` with at least `min_scale` decimals (more if the value has them).
fn money(d: Decimal, min_scale: u32) -> String {
    let mut d = d.normalize();
    if d.scale() < min_scale {
        d.rescale(min_scale);
    }
    let text = d.abs().to_string();
    let (int, frac) = text.split_once('.').map_or((text.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if d.is_sign_negative() && !d.is_zero() {
        "-"
    } else {
        ""
    };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// Longest search text kept.
const MAX_SEARCH: usize = 200;
/// The run pages are mounted at the root of the app.
const BASE: &str = "";

/// The page's parameters: `?q=&sort=&dir=&page=`. Empty values count as absent.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OrderParams {
    /// The search text, trimmed, at most 200 characters.
    #[serde(deserialize_with = "search")]
    q: String,
    /// The sort column (default: order number).
    #[serde(deserialize_with = "sort")]
    sort: Option<Sort>,
    /// `desc` or `asc` (default).
    #[serde(deserialize_with = "descending")]
    dir: bool,
    /// The page, from 1 (default 1).
    #[serde(deserialize_with = "page")]
    page: Option<u32>,
}

/// The value trimmed; `None` when empty.
fn given<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let value = String::deserialize(d)?;
    Ok(Some(value.trim().to_owned()).filter(|v| !v.is_empty()))
}

fn search<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(given(d)?
        .map(|q| q.chars().take(MAX_SEARCH).collect())
        .unwrap_or_default())
}

fn sort<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Sort>, D::Error> {
    given(d)?
        .map(|v| {
            v.parse::<Sort>().map_err(|e| {
                let keys: Vec<&str> = Sort::ALL.iter().map(|(_, k)| *k).collect();
                D::Error::custom(format!("{e}; use one of: {}.", keys.join(", ")))
            })
        })
        .transpose()
}

fn descending<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match given(d)?.as_deref() {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(other) => Err(D::Error::custom(format!(
            "dir must be asc or desc, not {other:?}."
        ))),
    }
}

fn page<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    given(d)?
        .map(|p| {
            p.parse::<u32>()
                .ok()
                .filter(|p| *p >= 1)
                .ok_or_else(|| D::Error::custom("page must be a whole number from 1."))
        })
        .transpose()
}

impl OrderParams {
    fn query(&self) -> OrderQuery {
        OrderQuery {
            search: (!self.q.is_empty()).then(|| self.q.clone()),
            sort: self.sort.unwrap_or(Sort::Order),
            descending: self.dir,
            page: self.page.unwrap_or(1),
            per_page: PER_PAGE,
        }
    }
}

/// A failure of this page: its heading, and the way back to the page's first view.
fn failure(error: PageError, heading: &str) -> PageError {
    error
        .heading(heading)
        .back_to("Open Orders", format!("{BASE}/open_orders"))
}

fn href(search: &str, sort: Sort, descending: bool, page: u32) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if !search.is_empty() {
        q.append_pair("q", search);
    }
    q.append_pair("sort", sort.key());
    q.append_pair("dir", if descending { "desc" } else { "asc" });
    if page > 1 {
        q.append_pair("page", &page.to_string());
    }
    format!("{BASE}/open_orders?{}", q.finish())
}

/// `GET /open_orders`.
#[handler]
pub(crate) async fn open_orders_page(
    params: poem::Result<Query<OrderParams>>,
    state: Data<&Arc<PageState>>,
) -> Result<Html<String>, PageError> {
    let state: &PageState = &state;
    let Query(params) = params.map_err(|e| failure(e.into(), "Bad request"))?;
    let query = params.query();
    let orders = query::page_consistent(state.logger.db(), &query)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "sync-app: reading open_orders failed");
            failure(
                PageError::internal("The open orders could not be read; see the server log."),
                "Database error",
            )
        })?;
    let pages = orders.total_rows.div_ceil(u64::from(PER_PAGE)).max(1);
    if u64::from(query.page) > pages && orders.total_rows > 0 {
        let message = if pages == 1 {
            "There is 1 page of results.".to_owned()
        } else {
            format!("There are {pages} pages of results.")
        };
        return Err(failure(
            PageError::new(StatusCode::NOT_FOUND, message),
            "No such page",
        ));
    }
    let last_sync = last_sync(state).await;
    let ctx = view(state, &query, orders, pages, last_sync);
    state
        .templates
        .get_template("open_orders.html")
        .and_then(|t| t.render(ctx))
        .map(Html)
        .map_err(|e| {
            tracing::error!(error = %e, "sync-app: open_orders template failed");
            failure(
                PageError::internal("The page could not be rendered; see the server log."),
                "Template error",
            )
        })
}

/// The newest successful sync, for the line above the table (none if it cannot be read).
async fn last_sync(state: &PageState) -> Option<LastSync> {
    let filter = RunFilter {
        status: Some(RunStatus::Success),
        job: Some(JOB_NAME.into()),
        text: None,
    };
    match state.logger.list_runs(&filter, Cursor::First, 1).await {
        Ok(p) => p.runs.into_iter().next().map(|item| LastSync {
            id: item.run.id,
            at: state
                .shell
                .time(item.run.finished_at.unwrap_or(item.run.updated_at)),
            name: item.run.name,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "sync-app: reading the last sync failed");
            None
        }
    }
}

impl RowView {
    fn of(r: StoredOrder) -> Self {
        let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
        let o = r.order;
        Self {
            order_no: o.order_no,
            line_no: o.line_no,
            customer_code: o.customer_code,
            customer_name: o.customer_name,
            item_code: o.item_code,
            item_description: o.item_description.unwrap_or_default(),
            qty_ordered: money(o.qty_ordered, 0),
            qty_shipped: money(o.qty_shipped, 0),
            qty_open: money(o.qty_open, 0),
            unit_price: money(o.unit_price, 2),
            line_amount: money(o.line_amount, 2),
            currency: o.currency,
            order_date: o.order_date.to_string(),
            requested_date: date(o.requested_date),
            promised_date: date(o.promised_date),
            warehouse: o.warehouse.unwrap_or_default(),
            status: o.status,
            rush: o.rush,
        }
    }
}

/// The table's columns; the sortable ones link to their sort.
fn columns(query: &OrderQuery) -> Vec<Column> {
    let search = query.search.as_deref().unwrap_or("");
    let col = |label, class, s: Option<Sort>| {
        let active = s == Some(query.sort);
        Column {
            label,
            class,
            sort: s.is_some(),
            // Clicking the active column flips the direction; another starts ascending.
            href: s.map_or_else(String::new, |s| href(search, s, active && !query.descending, 1)),
            active,
            arrow: if query.descending { "▼" } else { "▲" },
        }
    };
    vec![
        col("Order/Line", "", Some(Sort::Order)),
        col("Customer", "", Some(Sort::Customer)),
        col("Item", "", Some(Sort::Item)),
        col("Ordered", "num", None),
        col("Shipped", "num", None),
        col("Open", "num", Some(Sort::QtyOpen)),
        col("Unit price", "num", None),
        col("Amount", "num", Some(Sort::Amount)),
        col("Order date", "", Some(Sort::OrderDate)),
        col("Requested", "", Some(Sort::RequestedDate)),
        col("Promised", "", Some(Sort::PromisedDate)),
        col("Warehouse", "", None),
        col("Status", "", Some(Sort::Status)),
    ]
}

/// What the template shows: the rows, the columns, the totals, the pager, the last sync.
fn view(
    state: &PageState,
    query: &OrderQuery,
    orders: OrdersPage,
    pages: u64,
    last_sync: Option<LastSync>,
) -> Value {
    let search = query.search.clone().unwrap_or_default();
    let (sort, descending, page) = (query.sort, query.descending, query.page);
    let snapshot_at = orders.rows.first().map(|r| state.shell.time(r.synced_at));
    let totals: Vec<Total> = orders
        .amount_by_currency
        .into_iter()
        .map(|(currency, amount)| Total {
            currency,
            amount: money(amount, 2),
        })
        .collect();
    let rows: Vec<RowView> = orders.rows.into_iter().map(RowView::of).collect();
    context! {
        prev_href => (page > 1).then(|| href(&search, sort, descending, page - 1)),
        next_href => (u64::from(page) < pages).then(|| href(&search, sort, descending, page + 1)),
        search,
        sort => sort.key(),
        dir => if descending { "desc" } else { "asc" },
        rows => Serde(rows),
        columns => Serde(columns(query)),
        totals => Serde(totals),
        total_rows => joblog::format::count(orders.total_rows),
        page,
        pages,
        last_sync => last_sync.map(Serde),
        snapshot_at,
        ..state.shell.context(BASE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn money_formats() {
        let d = |s| Decimal::from_str(s).unwrap();
        assert_eq!(money(d("1234567.5"), 2), "1,234,567.50");
        assert_eq!(money(d("12.0000"), 0), "12");
        assert_eq!(money(d("1.2500"), 0), "1.25");
        assert_eq!(money(d("-1.5000"), 2), "-1.50");
        assert_eq!(money(d("0.0000"), 2), "0.00");
        assert_eq!(money(d("14.9999"), 2), "14.9999");
        assert_eq!(
            money(d("19999999999999999998.00"), 2),
            "19,999,999,999,999,999,998.00"
        );
    }
}
