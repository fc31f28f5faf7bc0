//! `open_orders`: the local copy of the ERP's open order lines, with the indexes of the
//! Open Orders page.

use joblog_migrations::schema::{create_indexes, id_column, new_table, timestamp};
use joblog_migrations::sea_orm_migration::prelude::*;
use joblog_migrations::sea_orm_migration::sea_orm::DbBackend;

/// The first version of `open_orders` (its name is the version in `sync_app_migrations`).
#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum OpenOrders {
    Table,
    Id,
    OrderNo,
    LineNo,
    CustomerCode,
    CustomerName,
    ItemCode,
    ItemDescription,
    QtyOrdered,
    QtyShipped,
    QtyOpen,
    UnitPrice,
    LineAmount,
    Currency,
    OrderDate,
    RequestedDate,
    PromisedDate,
    Warehouse,
    Status,
    Rush,
    ErpModifiedAt,
    SyncedAt,
}

/// An exact decimal: `numeric(p, s)` where the database has one; SQLite has none (its
/// NUMERIC affinity turns `12.5000` into a double), so there the canonical text is kept.
fn decimal(backend: DbBackend, col: OpenOrders, precision: u32, scale: u32) -> ColumnDef {
    let mut def = ColumnDef::new(col);
    match backend {
        DbBackend::Sqlite => def.custom(Alias::new("text")),
        _ => def.decimal_len(precision, scale),
    };
    def.not_null();
    def
}

/// The table: the ERP's columns with exact decimals, then `synced_at`.
fn table(backend: DbBackend) -> TableCreateStatement {
    use OpenOrders as O;
    new_table(backend, O::Table)
        .col(id_column(O::Id))
        .col(ColumnDef::new(O::OrderNo).big_integer().not_null())
        .col(ColumnDef::new(O::LineNo).integer().not_null())
        .col(ColumnDef::new(O::CustomerCode).string_len(20).not_null())
        .col(ColumnDef::new(O::CustomerName).string_len(100).not_null())
        .col(ColumnDef::new(O::ItemCode).string_len(40).not_null())
        .col(ColumnDef::new(O::ItemDescription).string_len(200).null())
        .col(decimal(backend, O::QtyOrdered, 18, 4))
        .col(decimal(backend, O::QtyShipped, 18, 4))
        .col(decimal(backend, O::QtyOpen, 18, 4))
        .col(decimal(backend, O::UnitPrice, 19, 4))
        .col(decimal(backend, O::LineAmount, 19, 2))
        .col(ColumnDef::new(O::Currency).string_len(3).not_null())
        .col(ColumnDef::new(O::OrderDate).date().not_null())
        .col(ColumnDef::new(O::RequestedDate).date().null())
        .col(ColumnDef::new(O::PromisedDate).date().null())
        .col(ColumnDef::new(O::Warehouse).string_len(10).null())
        .col(ColumnDef::new(O::Status).string_len(20).not_null())
        .col(ColumnDef::new(O::Rush).boolean().not_null().default(false))
        .col(timestamp(backend, O::ErpModifiedAt).null())
        .col(timestamp(backend, O::SyncedAt).not_null())
        .to_owned()
}

/// The page's default order and the key of an order line; then one index per search
/// prefix and per sortable column.
const INDEXES: [(&str, &[OpenOrders], bool); 7] = [
    (
        "uq_open_orders_order_line",
        &[OpenOrders::OrderNo, OpenOrders::LineNo],
        true,
    ),
    (
        "idx_open_orders_customer_code",
        &[OpenOrders::CustomerCode],
        false,
    ),
    ("idx_open_orders_item_code", &[OpenOrders::ItemCode], false),
    ("idx_open_orders_order_date", &[OpenOrders::OrderDate], false),
    (
        "idx_open_orders_requested_date",
        &[OpenOrders::RequestedDate],
        false,
    ),
    (
        "idx_open_orders_promised_date",
        &[OpenOrders::PromisedDate],
        false,
    ),
    ("idx_open_orders_status", &[OpenOrders::Status], false),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(table(manager.get_database_backend()))
            .await?;
        create_indexes(manager, OpenOrders::Table, &INDEXES).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(OpenOrders::Table).to_owned())
            .await
    }
}
