//! `/open_orders`: the local snapshot with search, sort, pages and totals.

use std::sync::Arc;

use joblog::{Cursor, RunFilter, RunStatus};
use minijinja::context;
use minijinja::value::Serde;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{Request, Response, handler};
use rust_decimal::Decimal;
use serde::Serialize;

use super::PageState;
use crate::open_orders::importer::thousands;
use crate::open_orders::query::{self, OrderQuery, Sort};
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

fn failure(state: &PageState, base: &str, status: StatusCode, heading: &str, message: String) -> Response {
    let html = state
        .templates
        .get_template("error.html")
        .and_then(|t| t.render(context! { heading, message, ..state.shell.context(base) }))
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "sync-app: error template failed");
            "error".into()
        });
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(html)
}

fn href(base: &str, search: &str, sort: Sort, descending: bool, page: u32) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    if !search.is_empty() {
        q.append_pair("q", search);
    }
    q.append_pair("sort", sort.key());
    q.append_pair("dir", if descending { "desc" } else { "asc" });
    if page > 1 {
        q.append_pair("page", &page.to_string());
    }
    format!("{base}/open_orders?{}", q.finish())
}

#[handler]
pub(crate) async fn open_orders_page(req: &Request, state: Data<&Arc<PageState>>) -> Response {
    let state: &PageState = &state;
    // The run pages are mounted at the root of the app.
    let base = "";
    let params: Vec<(String, String)> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let bad = |message: String| failure(state, base, StatusCode::BAD_REQUEST, "Bad request", message);

    let search = get("q").unwrap_or("").chars().take(200).collect::<String>();
    let sort = match get("sort").map(str::parse::<Sort>) {
        None => Sort::Order,
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            let keys: Vec<&str> = Sort::ALL.iter().map(|(_, k)| *k).collect();
            return bad(format!("{e}; use one of: {}.", keys.join(", ")));
        }
    };
    let descending = match get("dir") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return bad(format!("dir must be asc or desc, not {other:?}.")),
    };
    let page = match get("page").map(str::parse::<u32>) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return bad("page must be a whole number from 1.".into()),
    };

    let query = OrderQuery {
        search: (!search.is_empty()).then(|| search.clone()),
        sort,
        descending,
        page,
        per_page: PER_PAGE,
    };
    let result = match query::page_consistent(state.logger.db(), &query).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "sync-app: reading open_orders failed");
            return failure(
                state,
                base,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Database error",
                "The open orders could not be read; see the server log.".into(),
            );
        }
    };
    let pages = (result.total_rows.div_ceil(u64::from(PER_PAGE))).max(1);
    if u64::from(page) > pages && result.total_rows > 0 {
        return failure(
            state,
            base,
            StatusCode::NOT_FOUND,
            "No such page",
            if pages == 1 {
                "There is 1 page of results.".to_string()
            } else {
                format!("There are {pages} pages of results.")
            },
        );
    }

    let filter = RunFilter {
        status: Some(RunStatus::Success),
        job: Some(JOB_NAME.into()),
        text: None,
    };
    let last_sync = match state.logger.list_runs(&filter, Cursor::First, 1).await {
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
    };
    let snapshot_at = result.rows.first().map(|r| state.shell.time(r.synced_at));

    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let rows: Vec<RowView> = result
        .rows
        .into_iter()
        .map(|r| {
            let o = r.order;
            RowView {
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
        })
        .collect();
    let col = |label, class, s: Option<Sort>| {
        let active = s == Some(sort);
        Column {
            label,
            class,
            sort: s.is_some(),
            // Clicking the active column flips the direction; another starts ascending.
            href: s.map_or_else(String::new, |s| href(base, &search, s, active && !descending, 1)),
            active,
            arrow: if descending { "▼" } else { "▲" },
        }
    };
    let columns = vec![
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
    ];
    let totals: Vec<Total> = result
        .amount_by_currency
        .into_iter()
        .map(|(currency, amount)| Total {
            currency,
            amount: money(amount, 2),
        })
        .collect();
    let prev_href = (page > 1).then(|| href(base, &search, sort, descending, page - 1));
    let next_href = (u64::from(page) < pages).then(|| href(base, &search, sort, descending, page + 1));
    let ctx = context! {
        search,
        sort => sort.key(),
        dir => if descending { "desc" } else { "asc" },
        rows => Serde(rows),
        columns => Serde(columns),
        totals => Serde(totals),
        total_rows => thousands(result.total_rows),
        page,
        pages,
        prev_href,
        next_href,
        last_sync => last_sync.map(Serde),
        snapshot_at,
        ..state.shell.context(base)
    };
    match state
        .templates
        .get_template("open_orders.html")
        .and_then(|t| t.render(ctx))
    {
        Ok(html) => Response::builder()
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "sync-app: open_orders template failed");
            failure(
                state,
                base,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Template error",
                "The page could not be rendered; see the server log.".into(),
            )
        }
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
