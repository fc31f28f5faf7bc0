//! A fake ERP: a TCP server speaking enough TDS (the SQL Server wire protocol) for tiberius.
