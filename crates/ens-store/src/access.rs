//! The rules of accounts, keys and RAM users that both interfaces share, replay protection
//! and the audit log's writes.

use std::collections::HashSet;

use ens_domain::{AccessKeyId, AccessKeyStatus, AccountId, Principal, RamUserName};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::engine::{Access, Dialect, Lock, Param, Session};
use crate::rows::{audit_time, format_time};
use crate::{AuditEntry, NonceClaim, Store, StoreError, StoreResult};

/// Audit entries per INSERT: ten bound values each.
const AUDIT_ENTRIES_PER_STATEMENT: usize = 100;
/// Nonce claims per statement (two lists of this length).
const NONCE_CLAIMS_PER_STATEMENT: usize = 512;

/// A nonce's row key: the first 8 bytes of SHA-256 over the key ID, a zero byte and the
/// nonce. Two different nonces share a digest with odds of about n / 2^64 (n nonces
/// remembered); then the later one is refused as a replay and the client retries with a
/// fresh nonce.
pub fn nonce_digest(key: &str, nonce: &str) -> i64 {
    let mut hasher = Sha256::new();
    hasher.update(key.as_bytes());
    hasher.update([0]);
    hasher.update(nonce.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    i64::from_be_bytes(first)
}

/// Pairs of integers from two lists bound at `$1` and `$2`, as rows of two columns: the
/// clause to put before the statement, and the query. On SQLite each list is read once into
/// a table the join finds by position; joining the two `json_each` directly parses the second
/// list again for each element of the first, which makes a batch cost its square.
fn int_pairs(dialect: Dialect) -> (&'static str, &'static str) {
    match dialect {
        Dialect::Sqlite => (
            "WITH d AS MATERIALIZED (SELECT key, value FROM json_each($1)), \
             e AS MATERIALIZED (SELECT key, value FROM json_each($2)) ",
            "SELECT d.value, e.value FROM d JOIN e ON e.key = d.key",
        ),
        Dialect::Postgres => (
            "",
            "SELECT a, b FROM unnest($1::bigint[], $2::bigint[]) AS pairs(a, b)",
        ),
    }
}

impl Store {
    /// See [`crate::RequestStore::claim_nonces`]. One statement per chunk: an expired row for
    /// the same nonce is taken over, a live one means replay, and RETURNING names the claims
    /// that won; a concurrent claim of the same nonce on another replica waits for this one
    /// and then finds a live row.
    ///
    /// On SQLite it decides against the keyed table only: the claims logged by
    /// [`Self::log_nonce_batch`] count once [`Self::fold_nonce_log`] moved them there.
    pub(crate) async fn claim_nonce_batch(
        &self,
        claims: &[NonceClaim],
        now: OffsetDateTime,
    ) -> StoreResult<Vec<bool>> {
        let (with, pairs) = int_pairs(self.dialect);
        let claim = |with: &str, pairs: &str| {
            format!(
                "{with}INSERT INTO used_nonces (digest, expires_at) {pairs} WHERE true \
                 ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at \
                 WHERE used_nonces.expires_at <= $3 RETURNING digest"
            )
        };
        // On PostgreSQL a claim commits without waiting for its WAL to reach the disk, as the
        // embedded store writes its record without fsync: only a crash of the database
        // itself can lose the last claims (README, "Design"). Image writes are unaffected.
        let (with, pairs) = match self.dialect {
            Dialect::Sqlite => (with.to_owned(), pairs.to_owned()),
            Dialect::Postgres => (
                format!("{with}WITH unflushed AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true)) "),
                format!("{pairs}, unflushed"),
            ),
        };
        let sql = claim(&with, &pairs);
        // The first statement carries the read model's marker: it commits after every
        // request of the batch arrived, which is all a marker needs (see `Markers`).
        let statement_marker = self.read_model.statement_marker();
        let carried = statement_marker.as_ref().map(|(_, _, number)| *number);
        let mut marker = statement_marker.map(|(channel, payload, _)| {
            let sql = claim(
                &format!("{with}, marker AS MATERIALIZED (SELECT pg_notify($4, $5)) "),
                &format!("{pairs}, marker"),
            );
            (sql, channel, payload)
        });
        let mut won = Vec::with_capacity(claims.len());
        let mut session = self.session(Access::Nonces).await?;
        for chunk in claims.chunks(NONCE_CLAIMS_PER_STATEMENT) {
            // A digest met twice in one batch is claimed once; the second claim loses.
            let mut seen = HashSet::with_capacity(chunk.len());
            let (mut digests, mut expiries) =
                (Vec::with_capacity(chunk.len()), Vec::with_capacity(chunk.len()));
            let firsts: Vec<(i64, bool)> = chunk
                .iter()
                .map(|claim| {
                    let digest = nonce_digest(claim.key.as_str(), &claim.nonce);
                    let first = seen.insert(digest);
                    if first {
                        digests.push(digest);
                        expiries.push(claim.expires_at.unix_timestamp());
                    }
                    (digest, first)
                })
                .collect();
            let marked = marker.take();
            let mut params = vec![
                Param::Ints(&digests),
                Param::Ints(&expiries),
                now.unix_timestamp().into(),
            ];
            if let Some((_, channel, payload)) = &marked {
                params.extend::<[Param<'_>; 2]>([(*channel).into(), payload.as_str().into()]);
            }
            let statement = marked.as_ref().map_or(&sql, |(sql, _, _)| sql);
            let mut attempt = 0;
            let claimed: HashSet<i64> = loop {
                match session.ints(statement, &params).await {
                    Err(StoreError::Contended(_)) if attempt < crate::CONFLICT_RETRIES => attempt += 1,
                    other => break other?.into_iter().collect(),
                }
            };
            won.extend(
                firsts
                    .iter()
                    .map(|(digest, first)| *first && claimed.contains(digest)),
            );
        }
        session.commit().await?;
        if let Some(number) = carried {
            self.read_model.marker_arrival(number).await;
        }
        Ok(won)
    }

    /// See [`crate::RequestStore::record_nonces`]. PostgreSQL keeps no log: there the claims
    /// are written as [`Self::claim_nonce_batch`] writes them, decided as if at the end of
    /// time, so that each replaces any row of its nonce (the server decided them already).
    pub(crate) async fn log_nonce_batch(&self, claims: &[NonceClaim]) -> StoreResult<()> {
        if self.dialect != Dialect::Sqlite {
            let decided = time::PrimitiveDateTime::MAX.assume_utc();
            return self.claim_nonce_batch(claims, decided).await.map(drop);
        }
        let (with, pairs) = int_pairs(self.dialect);
        let sql = format!("{with}INSERT INTO nonce_log (digest, expires_at) {pairs}");
        let mut session = self.session(Access::Nonces).await?;
        for chunk in claims.chunks(NONCE_CLAIMS_PER_STATEMENT) {
            let (digests, expiries): (Vec<i64>, Vec<i64>) = chunk
                .iter()
                .map(|claim| {
                    (
                        nonce_digest(claim.key.as_str(), &claim.nonce),
                        claim.expires_at.unix_timestamp(),
                    )
                })
                .unzip();
            session
                .execute(&sql, &[Param::Ints(&digests), Param::Ints(&expiries)])
                .await?;
        }
        session.commit().await
    }

    /// See [`crate::RequestStore::fold_nonce_log`]: moves the logged claims into
    /// `used_nonces`, each digest with its latest expiry.
    pub(crate) async fn fold_nonce_log(&self) -> StoreResult<()> {
        if self.dialect != Dialect::Sqlite {
            return Ok(());
        }
        let mut session = self.session(Access::Nonces).await?;
        session
            .execute(
                "INSERT INTO used_nonces (digest, expires_at) \
                 SELECT digest, max(expires_at) FROM nonce_log WHERE true GROUP BY digest \
                 ON CONFLICT (digest) DO UPDATE SET expires_at = max(used_nonces.expires_at, excluded.expires_at)",
                &[],
            )
            .await?;
        session.execute("DELETE FROM nonce_log", &[]).await?;
        session.commit().await
    }

    /// See [`crate::RequestStore::nonce_in_use`]. On SQLite the log is searched too, row by
    /// row: this only runs while the record cannot be written, and the log is empty then
    /// unless the server's index holds its claims.
    pub(crate) async fn nonce_on_record(&self, claim: &NonceClaim, now: OffsetDateTime) -> StoreResult<bool> {
        let mut session = self.session(Access::Nonces).await?;
        let params = [
            nonce_digest(claim.key.as_str(), &claim.nonce).into(),
            now.unix_timestamp().into(),
        ];
        let mut found = session
            .exists(
                "SELECT 1 FROM used_nonces WHERE digest = $1 AND expires_at > $2",
                &params,
            )
            .await?;
        if !found && self.dialect == Dialect::Sqlite {
            found = session
                .exists(
                    "SELECT 1 FROM nonce_log WHERE digest = $1 AND expires_at > $2",
                    &params,
                )
                .await?;
        }
        Ok(found)
    }

    /// Forgets expired claims; returns how many rows went. The log is cut before its first
    /// unexpired claim (claims are appended about in expiry order; one that expires out of
    /// order goes with a later cut).
    pub(crate) async fn prune_nonce_record(&self, now: OffsetDateTime) -> StoreResult<u64> {
        let mut session = self.session(Access::Nonces).await?;
        let mut removed = session
            .execute(
                "DELETE FROM used_nonces WHERE expires_at <= $1",
                &[now.unix_timestamp().into()],
            )
            .await?;
        if self.dialect == Dialect::Sqlite {
            removed += session
                .execute(
                    "DELETE FROM nonce_log WHERE rowid < COALESCE( \
                       (SELECT min(rowid) FROM nonce_log WHERE expires_at > $1), \
                       (SELECT max(rowid) + 1 FROM nonce_log), 0)",
                    &[now.unix_timestamp().into()],
                )
                .await?;
        }
        session.commit().await?;
        Ok(removed)
    }

    /// See [`crate::RequestStore::recorded_nonces`].
    pub(crate) async fn unexpired_nonces(&self, now: OffsetDateTime) -> StoreResult<Vec<(i64, i64)>> {
        // Read by ranges of the key, so that only one range's rows are held at a time
        // beside the compact result.
        const RANGE: i64 = 50_000;
        let mut nonces = Vec::new();
        let mut after = i64::MIN;
        let mut first = true;
        loop {
            let mut session = self.session(Access::Nonces).await?;
            let rows = session
                .rows(
                    "SELECT digest, expires_at FROM used_nonces WHERE expires_at > $1 AND (digest > $2 OR $3 = 1) \
                     ORDER BY digest LIMIT $4",
                    &[
                        now.unix_timestamp().into(),
                        after.into(),
                        i64::from(first).into(),
                        RANGE.into(),
                    ],
                )
                .await?;
            session.commit().await?;
            let count = rows.len();
            for mut row in rows {
                let digest = row.int(0)?;
                nonces.push((digest, row.int(1)?));
                after = digest;
            }
            first = false;
            if i64::try_from(count).unwrap_or(i64::MAX) < RANGE {
                break;
            }
        }
        if self.dialect == Dialect::Sqlite {
            // The log, range by range of its row numbers.
            let mut after = 0_i64;
            loop {
                let mut session = self.session(Access::Nonces).await?;
                let rows = session
                    .rows(
                        "SELECT rowid, digest, expires_at FROM nonce_log WHERE rowid > $1 ORDER BY rowid LIMIT $2",
                        &[after.into(), RANGE.into()],
                    )
                    .await?;
                session.commit().await?;
                let count = rows.len();
                for mut row in rows {
                    after = row.int(0)?;
                    let expires_at = row.int(2)?;
                    if expires_at > now.unix_timestamp() {
                        nonces.push((row.int(1)?, expires_at));
                    }
                }
                if i64::try_from(count).unwrap_or(i64::MAX) < RANGE {
                    break;
                }
            }
        }
        Ok(nonces)
    }

    /// See [`crate::RequestStore::record_audits`].
    pub(crate) async fn insert_audits(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        let mut session = self.session(Access::Write).await?;
        for chunk in entries.chunks(AUDIT_ENTRIES_PER_STATEMENT) {
            let times = chunk
                .iter()
                .map(|entry| audit_time(entry.at))
                .collect::<StoreResult<Vec<_>>>()?;
            let mut params: Vec<Param<'_>> = Vec::with_capacity(chunk.len() * 10);
            let mut rows = Vec::with_capacity(chunk.len());
            for (entry, at) in chunk.iter().zip(&times) {
                let first = params.len() + 1;
                let placeholders: Vec<String> = (first..first + 10).map(|n| format!("${n}")).collect();
                rows.push(format!("({})", placeholders.join(", ")));
                params.extend::<[Param<'_>; 10]>([
                    at.as_str().into(),
                    entry.request_id.as_str().into(),
                    entry.account.as_ref().map(AccountId::as_str).into(),
                    entry.user.as_ref().map(RamUserName::as_str).into(),
                    entry.access_key_id.as_deref().into(),
                    entry.action.as_str().into(),
                    entry.resource.as_str().into(),
                    entry.source_ip.as_str().into(),
                    entry.outcome.as_str().into(),
                    i64::from(entry.repeats).into(),
                ]);
            }
            let sql = format!(
                "INSERT INTO audit_log (at, request_id, account_id, user_name, access_key_id, action, resource, \
                 source_ip, outcome, repeats) VALUES {}",
                rows.join(", ")
            );
            session.execute(&sql, &params).await?;
        }
        session.commit().await
    }
}

/// Fails with `NotFound` naming `what` unless the statement (`$1` = `key`) finds a row.
pub(crate) async fn require(tx: &mut dyn Session, sql: &str, key: &str, what: &str) -> StoreResult<()> {
    if tx.exists(sql, &[key.into()]).await? {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("{what} {key}")))
    }
}

/// Fails with `NotFound` unless the account exists.
pub(crate) async fn require_account(tx: &mut dyn Session, account: &AccountId) -> StoreResult<()> {
    require(
        tx,
        "SELECT 1 FROM accounts WHERE id = $1",
        account.as_str(),
        "account",
    )
    .await
}

/// Fails with `NotFound` unless the RAM user exists; locks its row as asked, so a concurrent
/// deletion of the user cannot slip between this check and the write after it.
pub(crate) async fn require_user(
    tx: &mut dyn Session,
    dialect: Dialect,
    account: &AccountId,
    user: &RamUserName,
    lock: Lock,
) -> StoreResult<()> {
    let sql = format!(
        "SELECT user_id FROM ram_users WHERE account_id = $1 AND name = $2{}",
        dialect.lock(lock)
    );
    if tx
        .exists(&sql, &[account.as_str().into(), user.as_str().into()])
        .await?
    {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!(
            "RAM user {user} in account {account}"
        )))
    }
}

/// Inserts an account; `Conflict` when it exists.
pub(crate) async fn insert_account(
    tx: &mut dyn Session,
    account: &AccountId,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let created = tx
        .execute(
            "INSERT INTO accounts (id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[account.as_str().into(), format_time(now)?.as_str().into()],
        )
        .await?;
    if created == 0 {
        return Err(StoreError::Conflict(format!("account {account}")));
    }
    Ok(())
}

/// Inserts an active key; `Conflict` when its ID is taken.
pub(crate) async fn insert_key(
    tx: &mut dyn Session,
    principal: &Principal,
    key: &AccessKeyId,
    secret: &str,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let created = tx
        .execute(
            "INSERT INTO access_keys (id, account_id, user_name, secret, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            &[
                key.as_str().into(),
                principal.account.as_str().into(),
                principal.user.as_ref().map(RamUserName::as_str).into(),
                secret.into(),
                AccessKeyStatus::Active.as_str().into(),
                format_time(now)?.as_str().into(),
            ],
        )
        .await?;
    if created == 0 {
        return Err(StoreError::Conflict(format!("AccessKey {key}")));
    }
    Ok(())
}

/// Creates an account and its owner's key in `tx`.
pub(crate) async fn insert_owner(
    tx: &mut dyn Session,
    account: &AccountId,
    key: &AccessKeyId,
    secret: &str,
    now: OffsetDateTime,
) -> StoreResult<()> {
    insert_account(tx, account, now).await?;
    let owner = Principal {
        account: account.clone(),
        user: None,
    };
    insert_key(tx, &owner, key, secret, now).await
}
