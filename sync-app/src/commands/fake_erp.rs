//! `sync-app fake-erp`: the ERP's open-orders view on fake-mssql, until Ctrl-C / SIGTERM.

use anyhow::{Context, bail};

use crate::cli::FakeErpArgs;
use crate::fake_erp::{Failure, FakeErp, FakeErpConfig};

use super::shutdown_signal;

/// `sync-app fake-erp`: serves until Ctrl-C / SIGTERM.
pub async fn fake_erp(args: &FakeErpArgs) -> anyhow::Result<()> {
    let defaults = FakeErpConfig::default();
    let fail = match &args.fail {
        None => None,
        Some(f) => Some(f.parse::<Failure>().map_err(|e| anyhow::anyhow!("--fail: {e}"))?),
    };
    let schema = match &args.schema {
        None => defaults.schema,
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("--schema: {e}"))?,
    };
    let encryption = match &args.encryption {
        None => defaults.encryption,
        Some(s) => s.parse().map_err(|e| anyhow::anyhow!("--encryption: {e}"))?,
    };
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            Some(fake_mssql::Identity::from_pem_files(cert, key).context("--cert / --key")?)
        }
        (None, None) => None,
        _ => bail!("--cert and --key go together"),
    };
    let windows_login = match (&args.windows_user, &args.windows_password) {
        (Some(user), Some(password)) => Some((user.clone(), password.clone())),
        (None, None) => None,
        _ => bail!("--windows-user and --windows-password go together"),
    };
    let config = FakeErpConfig {
        orders: args.orders,
        seed: args.seed.unwrap_or(defaults.seed),
        fail,
        evolve: args.evolve,
        schema,
        encryption,
        identity,
        cert_names: args.cert_names.clone(),
        user: args.user.clone().unwrap_or(defaults.user),
        password: args.password.clone().unwrap_or(defaults.password),
        database: args.database.clone().unwrap_or(defaults.database),
        access_token: args.access_token.clone(),
        windows_login,
        instance: args.instance.clone().map(|name| (name, args.browser_listen)),
    };
    let erp = FakeErp::bind(args.listen, config)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    if let Some(path) = &args.cert_out {
        let pem = erp
            .certificate_pem()
            .context("--cert-out: encryption is off, there is no certificate")?;
        std::fs::write(path, pem).with_context(|| format!("--cert-out: writing {}", path.display()))?;
        println!("certificate written to {}", path.display());
    }
    println!("fake ERP listening on {}", erp.local_addr());
    if let Some(browser) = erp.browser_addr() {
        println!("SQL Server Browser listening on {browser} (UDP)");
    }
    println!("MSSQL_URL='{}'", erp.ado_string());
    tokio::select! {
        r = erp.run() => r.context("fake ERP stopped")?,
        () = shutdown_signal() => {}
    }
    Ok(())
}
