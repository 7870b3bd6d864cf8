//! Scratch PostgreSQL databases, one per catalog size, created and dropped through `psql`
//! on the server's `postgres` maintenance database, so a run never touches existing data
//! and measures a store that holds exactly what was generated.

use anyhow::{bail, ensure, Context};
use tokio::process::Command;

/// Where the database name sits in `url`: the byte range of the path after the authority,
/// up to the query.
fn database_span(url: &str) -> anyhow::Result<(usize, usize)> {
    let scheme_end = ["postgres://", "postgresql://"]
        .iter()
        .find(|scheme| url.starts_with(*scheme))
        .map(|scheme| scheme.len())
        .context("the database URL must start with postgres:// or postgresql://")?;
    let query = url.find('?').unwrap_or(url.len());
    let start = url[scheme_end..query]
        .find('/')
        .map_or(query, |slash| scheme_end + slash);
    Ok((start, query))
}

/// The `host[:port]` of `url` (user and password left out), to check where it points.
///
/// # Errors
/// When `url` is not a PostgreSQL URL or names no host.
pub fn host_port(url: &str) -> anyhow::Result<&str> {
    let (start, _) = database_span(url)?;
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    let authority = &url[scheme_end..start];
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    ensure!(!host.is_empty(), "the database URL names no host");
    Ok(host)
}

/// `url` with its database replaced by `name` (query parameters kept).
///
/// # Errors
/// When `url` is not a PostgreSQL URL.
pub fn with_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (start, end) = database_span(url)?;
    Ok(format!("{}/{name}{}", &url[..start], &url[end..]))
}

/// A database that exists for one catalog size and is dropped afterwards.
pub struct ScratchDatabase {
    maintenance_url: String,
    name: String,
    /// The URL of the scratch database, for `--database-url`.
    pub url: String,
}

/// Runs one SQL statement with `psql` (which takes the connection URL as its `-d`) and
/// returns its unaligned output.
async fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run psql (is the PostgreSQL client installed?)")?;
    if !output.status.success() {
        bail!(
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl ScratchDatabase {
    /// Creates database `name` on the server of `base_url`.
    ///
    /// # Errors
    /// When the name is not a plain identifier or the database cannot be created.
    pub async fn create(base_url: &str, name: &str) -> anyhow::Result<Self> {
        ensure!(
            !name.is_empty()
                && name.len() <= 63
                && name.starts_with(|c: char| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{name:?} is not a plain database name"
        );
        let maintenance_url = with_database(base_url, "postgres")?;
        psql(&maintenance_url, &format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("cannot create the scratch database {name}"))?;
        Ok(Self {
            url: with_database(base_url, name)?,
            maintenance_url,
            name: name.to_owned(),
        })
    }

    /// Refreshes the planner's statistics, as autovacuum soon does on a running database,
    /// so that a server measured right after a bulk load plans as it would in service.
    ///
    /// # Errors
    /// When the server cannot be asked.
    pub async fn analyze(&self) -> anyhow::Result<()> {
        psql(&self.url, "ANALYZE")
            .await
            .with_context(|| format!("cannot analyze the scratch database {}", self.name))
            .map(drop)
    }

    /// The database's size on disk.
    ///
    /// # Errors
    /// When the server cannot be asked.
    pub async fn size_bytes(&self) -> anyhow::Result<u64> {
        let text = psql(
            &self.maintenance_url,
            &format!("SELECT pg_database_size('{}')", self.name),
        )
        .await?;
        text.parse()
            .with_context(|| format!("unexpected pg_database_size answer {text:?}"))
    }

    /// Drops the database, closing any connection left to it.
    ///
    /// # Errors
    /// When it cannot be dropped.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        psql(
            &self.maintenance_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await
        .with_context(|| format!("cannot drop the scratch database {}", self.name))
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_the_rest_kept() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/ens",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p%2Fw@h/ens?sslmode=disable",
                "postgres://u:p%2Fw@h/x?sslmode=disable",
            ),
            ("postgresql://h:5432", "postgresql://h:5432/x"),
            ("postgres://h:5432/", "postgres://h:5432/x"),
            (
                "postgres://h?application_name=a/b",
                "postgres://h/x?application_name=a/b",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "x").unwrap(), expected, "{url}");
        }
        assert!(with_database("mysql://h/db", "x").is_err());
    }

    #[test]
    fn the_host_of_a_url_is_found_without_its_credentials() {
        assert_eq!(
            host_port("postgres://postgres@127.0.0.1:5432/ens").unwrap(),
            "127.0.0.1:5432"
        );
        assert_eq!(
            host_port("postgres://u:p@ss@[::1]:5432/ens?x=y").unwrap(),
            "[::1]:5432"
        );
        assert_eq!(host_port("postgresql://localhost").unwrap(), "localhost");
        assert!(host_port("postgres:///ens?host=/tmp").is_err());
    }
}
