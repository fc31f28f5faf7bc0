//! Logs in to a SQL Server with tiberius (ADO connection string, e.g. `Integrated
//! Security=SSPI;User ID=DOMAIN\user;Password=…`) and runs `SELECT SUSER_SNAME()`.
//!
//! Usage: `fake-mssql-ntlm-client ADO_STRING`. Prints one line, exit status:
//!   `user=NAME`                        0  logged in; NAME is what the server calls the login
//!   `error=N class=C state=S message=TEXT`  2  the server refused (ERROR token)
//!   `failed=TEXT`                      1  anything else (I/O, protocol, NTLM)

use tokio::net::TcpStream;
use tokio_util::compat::TokioAsyncWriteCompatExt;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ado = std::env::args()
        .nth(1)
        .expect("usage: fake-mssql-ntlm-client ADO_STRING");
    let code = match run(&ado).await {
        Ok(user) => {
            println!("user={user}");
            0
        }
        Err(tiberius::error::Error::Server(e)) => {
            println!(
                "error={} class={} state={} message={}",
                e.code(),
                e.class(),
                e.state(),
                e.message()
            );
            2
        }
        Err(e) => {
            println!("failed={e}");
            1
        }
    };
    std::process::exit(code);
}

async fn run(ado: &str) -> tiberius::Result<String> {
    let config = tiberius::Config::from_ado_string(ado)?;
    let tcp = TcpStream::connect(config.get_addr()).await?;
    tcp.set_nodelay(true)?;
    let mut client = tiberius::Client::connect(config, tcp.compat_write()).await?;
    let row = client
        .simple_query("SELECT SUSER_SNAME()")
        .await?
        .into_row()
        .await?
        .ok_or_else(|| tiberius::error::Error::Protocol("no row".into()))?;
    let user = row.get::<&str, _>(0).unwrap_or_default().to_owned();
    // A statement the handler answers, so the test sees the session's user there too.
    let _ = client
        .simple_query("SELECT tls FROM session")
        .await?
        .into_results()
        .await?;
    Ok(user)
}
