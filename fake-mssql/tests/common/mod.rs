//! Shared by the integration tests: a handler with known tables, server and client set-up.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use fake_mssql::{
    Collation, Column, Param, Query, Reply, ResultSet, RowSource, RowWriter, Server, ServerConfig,
    ServerHandle, SqlError, SqlType, TlsState, Value,
};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub type Client = tiberius::Client<Compat<TcpStream>>;

/// Rows of `SELECT id, name, amount FROM big`.
pub const BIG_ROWS: u64 = 100_000;
/// Characters of the nvarchar(max) / varchar(max) value of `SELECT doc FROM huge`.
pub const HUGE_CHARS: usize = 100_000;

/// What the handler saw of one statement.
#[derive(Debug, Clone)]
pub struct Seen {
    pub sql: String,
    pub params: Vec<Param>,
    pub database: String,
    pub user: String,
    pub tls: TlsState,
    pub packet_size: usize,
}

/// The test tables.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Tables {
    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the handler saw a statement")
    }
}

/// `BIG_ROWS` rows: id int, name nvarchar(50), amount decimal(18,2).
struct Counter {
    next: u64,
    end: u64,
}

impl RowSource for Counter {
    fn write_row(&mut self, row: &mut RowWriter<'_>) -> bool {
        if self.next >= self.end {
            return false;
        }
        let n = self.next;
        self.next += 1;
        row.int(n as i64);
        row.str(&format!("row {n}"));
        row.decimal(i128::from(n) * 100 + 25, 2);
        true
    }
}

pub fn huge_text() -> String {
    "äbc€😀".chars().cycle().take(HUGE_CHARS).collect()
}

pub fn huge_ascii() -> String {
    "abcdefghij".chars().cycle().take(HUGE_CHARS).collect()
}

pub fn big_columns() -> Vec<Column> {
    vec![
        Column::new("id", SqlType::Int),
        Column::new("name", SqlType::NVarChar { len: Some(50) }),
        Column::new(
            "amount",
            SqlType::Decimal {
                precision: 18,
                scale: 2,
            },
        ),
    ]
}

impl fake_mssql::Handler for Tables {
    fn execute(&self, q: &Query<'_>) -> Reply {
        self.seen.lock().unwrap().push(Seen {
            sql: q.sql.to_owned(),
            params: q.params.to_vec(),
            database: q.session.database.clone(),
            user: q.session.user.clone(),
            tls: q.session.tls,
            packet_size: q.session.packet_size,
        });
        match q.sql {
            "SELECT name FROM customers" => Reply::Rows(ResultSet::from_values(
                vec![Column::new("name", SqlType::NVarChar { len: Some(50) })],
                vec![
                    vec![Value::String("Müller GmbH".into())],
                    vec![Value::String("Ørsted A/S".into())],
                ],
            )),
            "SELECT tls FROM session" => Reply::Rows(ResultSet::from_values(
                vec![Column::new("tls", SqlType::NVarChar { len: Some(20) })],
                vec![vec![Value::String(format!("{:?}", q.session.tls))]],
            )),
            "SELECT id, name, amount FROM big" => Reply::Rows(ResultSet::new(
                big_columns(),
                Counter {
                    next: 0,
                    end: BIG_ROWS,
                },
            )),
            "SELECT id, name, amount FROM endless" => Reply::Rows(ResultSet::new(
                big_columns(),
                Counter {
                    next: 0,
                    end: u64::MAX,
                },
            )),
            "SELECT doc, ascii FROM huge" => Reply::Rows(ResultSet::from_values(
                vec![
                    Column::new("doc", SqlType::NVarChar { len: None }),
                    Column::new(
                        "ascii",
                        SqlType::VarChar {
                            len: None,
                            collation: Collation::Latin1Cp1252,
                        },
                    ),
                ],
                vec![vec![Value::String(huge_text()), Value::String(huge_ascii())]],
            )),
            "SELECT d FROM dates" => Reply::Rows(ResultSet::from_values(
                vec![
                    Column::new("d", SqlType::Date),
                    Column::new("t", SqlType::Time { scale: 3 }),
                    Column::new("dt2", SqlType::DateTime2 { scale: 2 }),
                    Column::new("dto", SqlType::DateTimeOffset { scale: 0 }),
                ],
                vec![vec![
                    Value::Date(chrono::NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()),
                    Value::Time(chrono::NaiveTime::from_hms_milli_opt(13, 14, 15, 678).unwrap()),
                    Value::DateTime(
                        chrono::NaiveDate::from_ymd_opt(2024, 2, 29)
                            .unwrap()
                            .and_hms_milli_opt(13, 14, 15, 678)
                            .unwrap(),
                    ),
                    Value::DateTimeOffset(
                        chrono::DateTime::parse_from_rfc3339("2024-02-29T13:14:15+02:00").unwrap(),
                    ),
                ]],
            )),
            "SELECT note FROM memo" => Reply::Rows(ResultSet::from_values(
                vec![Column::new("note", SqlType::NVarChar { len: None }).nullable()],
                vec![vec![Value::String("hi".into())], vec![Value::Null]],
            )),
            "SELECT * FROM params" => Reply::Rows(ResultSet::from_values(
                vec![Column::new("n", SqlType::Int)],
                vec![vec![Value::Int(q.params.len() as i64)]],
            )),
            sql if sql.starts_with("UPDATE orders") => Reply::Affected(3),
            sql if sql.starts_with("DELETE FROM orders") => Reply::Done,
            sql => match crate::common::types::reply(sql) {
                Some(reply) => reply,
                None => Reply::Error(SqlError::invalid_object(sql)),
            },
        }
    }
}

pub mod types;

pub async fn spawn(config: ServerConfig) -> (ServerHandle, Tables) {
    let tables = Tables::default();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config, tables.clone())
        .await
        .expect("bind")
        .spawn();
    (server, tables)
}

/// The server's own connection string (TrustServerCertificate=true).
pub fn config_for(server: &ServerHandle) -> tiberius::Config {
    tiberius::Config::from_ado_string(&server.ado_string()).expect("ado string")
}

pub async fn connect(config: tiberius::Config) -> tiberius::Result<Client> {
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    tiberius::Client::connect(config, tcp.compat_write()).await
}

pub async fn connect_to(server: &ServerHandle) -> Client {
    connect(config_for(server)).await.expect("connect")
}

pub fn server_error(e: &tiberius::error::Error) -> Option<(u32, u8)> {
    match e {
        tiberius::error::Error::Server(t) => Some((t.code(), t.class())),
        _ => None,
    }
}

/// One value of a one-row, one-column query, as text.
pub async fn scalar_string(client: &mut Client, sql: &str) -> String {
    let row = client
        .simple_query(sql)
        .await
        .unwrap()
        .into_row()
        .await
        .unwrap()
        .unwrap();
    row.get::<&str, _>(0).unwrap().to_owned()
}

pub fn addr(server: &ServerHandle) -> SocketAddr {
    server.local_addr()
}

/// Runs a batch to the end; an error may come from sending it or from reading its results
/// (tiberius reports an ERROR that comes first as a failure of `simple_query` itself).
pub async fn batch(client: &mut Client, sql: &str) -> tiberius::Result<Vec<Vec<tiberius::Row>>> {
    client.simple_query(sql).await?.into_results().await
}
