//! [`AdminStore`] on [`Store`]: what operators do, written once for every engine.

use async_trait::async_trait;
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, BuildFailure, Image, ImageId, Instance, NodeId, Principal,
    RamUserName, Snapshot,
};
use time::OffsetDateTime;

use crate::access::{insert_key, insert_owner, require, require_account, require_user};
use crate::engine::{Access, Lock, Row};
use crate::images::CountChanges;
use crate::rows::{
    account_from, audit_time, corrupt, format_time, instance_from_row, new_user_id, node_from, parse_time,
    principal_from, snapshot_from_row, to_i64, user_from, INSTANCE_COLUMNS, SNAPSHOT_COLUMNS, SYSTEM_SCOPE,
};
use crate::{
    AccessKeySummary, AccountSummary, AuditEntry, AuditFilter, NewImage, RamUser, Store, StoreError,
    StoreResult, StoredPolicy,
};

/// Exclusive-lock key serializing catalog loads ("ENSCATLG" in ASCII).
const CATALOG_LOCK: i64 = 0x454E_5343_4154_4C47;
/// Exclusive-lock key serializing owner bootstrap ("ENSOWNER" in ASCII).
const BOOTSTRAP_LOCK: i64 = 0x454E_534F_574E_4552;

impl Store {
    /// Runs one statement of a write by itself; `NotFound` naming `what` when it changed nothing.
    async fn change_one(
        &self,
        sql: &str,
        params: &[crate::engine::Param<'_>],
        what: String,
    ) -> StoreResult<()> {
        let changed = self
            .write(|mut tx| async move {
                let changed = tx.execute(sql, params).await?;
                Ok((tx, changed))
            })
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    /// Every row of a read of one statement.
    async fn read_all(&self, sql: &str, params: &[crate::engine::Param<'_>]) -> StoreResult<Vec<Row>> {
        self.session(Access::ReadOne).await?.rows(sql, params).await
    }

    /// Takes the exclusive lock `key` for the rest of the write transaction, where the engine
    /// needs one (several processes).
    async fn lock_exclusive(&self, tx: &mut dyn crate::engine::Session, key: i64) -> StoreResult<()> {
        match self.dialect.exclusive_lock() {
            Some(sql) => tx.rows(sql, &[key.into()]).await.map(drop),
            None => Ok(()),
        }
    }
}

/// What operators do to storage: accounts, keys, RAM users and policies, the catalog, the
/// instance and snapshot registry, and the audit log.
#[async_trait]
pub trait AdminStore: Send + Sync + 'static {
    /// The store whose rules these are; a test double may override any method instead.
    fn store(&self) -> &Store;

    /// Copies the whole store, consistently and while it serves, to the new file `to`
    /// (SQLite; PostgreSQL stores are backed up with PostgreSQL's tools).
    async fn backup(&self, to: &std::path::Path) -> StoreResult<()> {
        self.store().engine.backup(to).await
    }

    /// Whether any account exists (an empty store gets its owner account at first start).
    async fn has_accounts(&self) -> StoreResult<bool> {
        let mut tx = self.store().session(Access::ReadOne).await?;
        tx.exists("SELECT 1 FROM accounts LIMIT 1", &[]).await
    }

    /// Creates an account and one active AccessKey for it, atomically.
    async fn create_account_with_key(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                insert_owner(&mut *tx, account, key, secret, now).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Creates the owner account and its key if the store has no account yet; returns whether
    /// it did. Replicas starting together create one owner between them.
    async fn bootstrap_owner(
        &self,
        account: &AccountId,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        self.store()
            .write(|mut tx| async move {
                // Replicas starting together bootstrap one at a time; each later one sees the
                // owner the first one committed.
                self.store().lock_exclusive(&mut *tx, BOOTSTRAP_LOCK).await?;
                if tx.exists("SELECT 1 FROM accounts LIMIT 1", &[]).await? {
                    return Ok((tx, false));
                }
                insert_owner(&mut *tx, account, key, secret, now).await?;
                Ok((tx, true))
            })
            .await
    }

    /// Loads a public catalog: always when `replace_existing`, else only into a store that has
    /// none yet; returns whether it loaded. Replicas starting together load it once.
    async fn install_catalog(
        &self,
        nodes: &[NodeId],
        images: &[Image],
        replace_existing: bool,
    ) -> StoreResult<bool> {
        let writer = self.store();
        self.store()
            .write(|mut tx| async move {
                // Replicas starting together may all try to load the catalog: one at a time, and
                // each later one sees what the earlier ones committed.
                self.store().lock_exclusive(&mut *tx, CATALOG_LOCK).await?;
                let loaded = tx
                    .exists("SELECT 1 FROM store_metadata WHERE name = 'catalog_loaded'", &[])
                    .await?;
                if loaded && !replace_existing {
                    return Ok((tx, false));
                }
                let mut counts = CountChanges::default();
                tx.execute("DELETE FROM images WHERE owner_id IS NULL", &[])
                    .await?;
                tx.execute(
                    "DELETE FROM listing_counts WHERE scope = $1",
                    &[SYSTEM_SCOPE.into()],
                )
                .await?;
                for node in nodes {
                    tx.execute(
                        "INSERT INTO nodes (id) VALUES ($1) ON CONFLICT DO NOTHING",
                        &[node.as_str().into()],
                    )
                    .await?;
                }
                for image in images {
                    let public = NewImage {
                        image: Image {
                            owner: None,
                            ..image.clone()
                        },
                        build_due_at: None,
                        build_failure: None,
                        release_instance: None,
                    };
                    writer.insert_image(&mut *tx, &mut counts, &public).await?;
                }
                Store::number_public_listing(&mut *tx).await?;
                tx.execute(
                    "INSERT INTO store_metadata (name, value) VALUES ('catalog_loaded', $1) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    &[images.len().to_string().as_str().into()],
                )
                .await?;
                counts.apply(&mut *tx).await?;
                Ok((tx, true))
            })
            .await
    }

    /// Every known ENS node, sorted by ID.
    async fn nodes(&self) -> StoreResult<Vec<NodeId>> {
        let ids = self
            .store()
            .session(Access::ReadOne)
            .await?
            .texts("SELECT id FROM nodes ORDER BY id", &[])
            .await?;
        ids.iter().map(|id| node_from(id)).collect()
    }

    /// Creates an account (without keys).
    async fn create_account(&self, account: &AccountId, now: OffsetDateTime) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                crate::access::insert_account(&mut *tx, account, now).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Adds an active AccessKey for an account's owner or one of its RAM users.
    ///
    /// # Errors
    /// `NotFound` for an unknown account or user, `Conflict` for a taken key ID.
    async fn create_access_key(
        &self,
        principal: &Principal,
        key: &AccessKeyId,
        secret: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                require_account(&mut *tx, &principal.account).await?;
                if let Some(user) = &principal.user {
                    require_user(
                        &mut *tx,
                        self.store().dialect,
                        &principal.account,
                        user,
                        Lock::Share,
                    )
                    .await?;
                }
                insert_key(&mut *tx, principal, key, secret, now).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Enables or disables a key; takes effect on the next request.
    ///
    /// # Errors
    /// `NotFound` for an unknown key.
    async fn set_access_key_status(&self, key: &AccessKeyId, status: AccessKeyStatus) -> StoreResult<()> {
        self.store()
            .change_one(
                "UPDATE access_keys SET status = $1 WHERE id = $2",
                &[status.as_str().into(), key.as_str().into()],
                format!("AccessKey {key}"),
            )
            .await
    }

    /// Deletes a key.
    ///
    /// # Errors
    /// `NotFound` for an unknown key.
    async fn delete_access_key(&self, key: &AccessKeyId) -> StoreResult<()> {
        self.store()
            .change_one(
                "DELETE FROM access_keys WHERE id = $1",
                &[key.as_str().into()],
                format!("AccessKey {key}"),
            )
            .await
    }

    /// Replaces a key's stored secret (used to seal secrets stored before sealing existed).
    async fn replace_access_key_secret(&self, key: &AccessKeyId, secret: &str) -> StoreResult<()> {
        // A key deleted meanwhile needs no new secret: not an error.
        let params = [secret.into(), key.as_str().into()];
        self.store()
            .change_one(
                "UPDATE access_keys SET secret = $1 WHERE id = $2",
                &params,
                String::new(),
            )
            .await
            .or_else(|error| {
                if matches!(error, StoreError::NotFound(_)) {
                    Ok(())
                } else {
                    Err(error)
                }
            })
    }

    /// Every key with its stored secret, for resealing.
    async fn access_key_secrets(&self) -> StoreResult<Vec<(AccessKeyId, String)>> {
        let rows = self
            .store()
            .read_all("SELECT id, secret FROM access_keys ORDER BY id", &[])
            .await?;
        rows.into_iter()
            .map(|mut row| Ok((AccessKeyId::parse(&row.text(0)?).map_err(corrupt)?, row.text(1)?)))
            .collect()
    }

    /// Every account, oldest first.
    async fn accounts(&self) -> StoreResult<Vec<AccountSummary>> {
        let rows = self
            .store()
            .read_all("SELECT id, created_at FROM accounts ORDER BY created_at, id", &[])
            .await?;
        rows.into_iter()
            .map(|mut row| {
                Ok(AccountSummary {
                    id: account_from(&row.text(0)?)?,
                    created_at: parse_time(&row.text(1)?)?,
                })
            })
            .collect()
    }

    /// Every AccessKey (of one account, when given), without secrets.
    async fn access_keys(&self, account: Option<&AccountId>) -> StoreResult<Vec<AccessKeySummary>> {
        let rows = self
            .store()
            .read_all(
                "SELECT id, account_id, user_name, status, created_at FROM access_keys \
                 WHERE $1 IS NULL OR account_id = $1 ORDER BY created_at, id",
                &[account.map(AccountId::as_str).into()],
            )
            .await?;
        rows.into_iter()
            .map(|mut row| {
                Ok(AccessKeySummary {
                    id: AccessKeyId::parse(&row.text(0)?).map_err(corrupt)?,
                    principal: principal_from(&mut row, 1, 2)?,
                    status: AccessKeyStatus::from_stored(&row.text(3)?),
                    created_at: parse_time(&row.text(4)?)?,
                })
            })
            .collect()
    }

    /// Creates a RAM user in an account.
    ///
    /// # Errors
    /// `NotFound` for an unknown account, `Conflict` for a taken name.
    async fn create_ram_user(
        &self,
        account: &AccountId,
        name: &RamUserName,
        now: OffsetDateTime,
    ) -> StoreResult<RamUser> {
        let created = format_time(now)?;
        let created = created.as_str();
        self.store()
            .write(|mut tx| async move {
                require_account(&mut *tx, account).await?;
                let user_id = new_user_id();
                let inserted = tx
                .execute(
                    "INSERT INTO ram_users (account_id, name, user_id, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                    &[
                        account.as_str().into(),
                        name.as_str().into(),
                        user_id.as_str().into(),
                        created.into(),
                    ],
                )
                .await?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!("RAM user {name}")));
                }
                let user = RamUser {
                    account: account.clone(),
                    name: name.clone(),
                    user_id,
                    created_at: now,
                };
                Ok((tx, user))
            })
            .await
    }

    /// Deletes a RAM user with its AccessKeys and policy attachments.
    ///
    /// # Errors
    /// `NotFound` for an unknown user.
    async fn delete_ram_user(&self, account: &AccountId, name: &RamUserName) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                require_user(&mut *tx, self.store().dialect, account, name, Lock::Update).await?;
                let params = [account.as_str().into(), name.as_str().into()];
                for sql in [
                    "DELETE FROM access_keys WHERE account_id = $1 AND user_name = $2",
                    "DELETE FROM ram_users WHERE account_id = $1 AND name = $2",
                ] {
                    tx.execute(sql, &params).await?;
                }
                Ok((tx, ()))
            })
            .await
    }

    /// Every RAM user (of one account, when given).
    async fn ram_users(&self, account: Option<&AccountId>) -> StoreResult<Vec<RamUser>> {
        let rows = self.store()
            .read_all(
                "SELECT account_id, name, user_id, created_at FROM ram_users WHERE $1 IS NULL OR account_id = $1 \
                 ORDER BY account_id, name",
                &[account.map(AccountId::as_str).into()],
            )
            .await?;
        rows.into_iter()
            .map(|mut row| {
                Ok(RamUser {
                    account: account_from(&row.text(0)?)?,
                    name: user_from(&row.text(1)?)?,
                    user_id: row.text(2)?,
                    created_at: parse_time(&row.text(3)?)?,
                })
            })
            .collect()
    }

    /// Stores a validated policy document under a name.
    ///
    /// # Errors
    /// `NotFound` for an unknown account, `Conflict` for a taken name.
    async fn create_policy(
        &self,
        account: &AccountId,
        name: &str,
        document: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let created = format_time(now)?;
        let created = created.as_str();
        self.store()
            .write(|mut tx| async move {
                require_account(&mut *tx, account).await?;
                let inserted = tx
                .execute(
                    "INSERT INTO policies (account_id, name, document, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                    &[
                        account.as_str().into(),
                        name.into(),
                        document.into(),
                        created.into(),
                    ],
                )
                .await?;
                if inserted == 0 {
                    return Err(StoreError::Conflict(format!("policy {name}")));
                }
                Ok((tx, ()))
            })
            .await
    }

    /// Deletes a policy.
    ///
    /// # Errors
    /// `NotFound` for an unknown policy, `Conflict` while it is attached.
    async fn delete_policy(&self, account: &AccountId, name: &str) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                let params = [account.as_str().into(), name.into()];
                let locked = format!(
                    "SELECT name FROM policies WHERE account_id = $1 AND name = $2{}",
                    self.store().dialect.lock(Lock::Update)
                );
                if !tx.exists(&locked, &params).await? {
                    return Err(StoreError::NotFound(format!("policy {name}")));
                }
                let attached = tx
                    .count(
                        "SELECT COUNT(*) FROM policy_attachments WHERE account_id = $1 AND policy_name = $2",
                        &params,
                    )
                    .await?;
                if attached > 0 {
                    return Err(StoreError::Conflict(format!(
                        "policy {name} is attached to {attached} user(s); detach it first"
                    )));
                }
                tx.execute(
                    "DELETE FROM policies WHERE account_id = $1 AND name = $2",
                    &params,
                )
                .await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Every policy (of one account, when given), with its attachments.
    async fn policies(&self, account: Option<&AccountId>) -> StoreResult<Vec<StoredPolicy>> {
        let mut tx = self.store().session(Access::Read).await?;
        let filter = [account.map(AccountId::as_str).into()];
        let rows = tx
            .rows(
                "SELECT account_id, name, document, created_at FROM policies WHERE $1 IS NULL OR account_id = $1 \
                 ORDER BY account_id, name",
                &filter,
            )
            .await?;
        let mut attachments = tx
            .rows(
                "SELECT account_id, policy_name, user_name FROM policy_attachments \
                 WHERE $1 IS NULL OR account_id = $1 ORDER BY user_name",
                &filter,
            )
            .await?
            .into_iter()
            .map(|mut row| Ok((row.text(0)?, row.text(1)?, user_from(&row.text(2)?)?)))
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await?;
        rows.into_iter()
            .map(|mut row| {
                let (account, name) = (row.text(0)?, row.text(1)?);
                let attached_to = attachments
                    .iter_mut()
                    .filter(|(on, policy, _)| *on == account && *policy == name)
                    .map(|(_, _, user)| user.clone())
                    .collect();
                Ok(StoredPolicy {
                    account: account_from(&account)?,
                    name,
                    document: row.text(2)?,
                    attached_to,
                    created_at: parse_time(&row.text(3)?)?,
                })
            })
            .collect()
    }

    /// Attaches a policy to a user; attaching twice is a no-op.
    ///
    /// # Errors
    /// `NotFound` for an unknown user or policy.
    async fn attach_policy(&self, account: &AccountId, user: &RamUserName, policy: &str) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                require_user(&mut *tx, self.store().dialect, account, user, Lock::Share).await?;
                let params = [account.as_str().into(), policy.into(), user.as_str().into()];
                let sql = format!(
                    "SELECT 1 FROM policies WHERE account_id = $1 AND name = $2{}",
                    self.store().dialect.lock(Lock::Share)
                );
                if !tx.exists(&sql, &params[..2]).await? {
                    return Err(StoreError::NotFound(format!("policy {policy}")));
                }
                tx.execute(
                "INSERT INTO policy_attachments (account_id, policy_name, user_name) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &params,
            )
            .await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Detaches a policy from a user.
    ///
    /// # Errors
    /// `NotFound` when it was not attached.
    async fn detach_policy(&self, account: &AccountId, user: &RamUserName, policy: &str) -> StoreResult<()> {
        self.store().change_one(
            "DELETE FROM policy_attachments WHERE account_id = $1 AND user_name = $2 AND policy_name = $3",
            &[account.as_str().into(), user.as_str().into(), policy.into()],
            format!("attachment of policy {policy} to {user}"),
        )
        .await
    }

    /// Audit records matching the filter, newest first.
    async fn audit_entries(&self, filter: &AuditFilter) -> StoreResult<Vec<AuditEntry>> {
        let since = filter.since.map(audit_time).transpose()?;
        let rows = self.store()
            .read_all(
                "SELECT at, request_id, account_id, user_name, access_key_id, action, resource, source_ip, outcome, \
                 repeats FROM audit_log WHERE ($1 IS NULL OR account_id = $1) AND ($2 IS NULL OR action = $2) \
                 AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR at >= $4) ORDER BY seq DESC LIMIT $5",
                &[
                    filter.account.as_ref().map(AccountId::as_str).into(),
                    filter.action.as_deref().into(),
                    filter.outcome.as_deref().into(),
                    since.as_deref().into(),
                    i64::from(filter.limit).into(),
                ],
            )
            .await?;
        rows.into_iter()
            .map(|mut row| {
                Ok(AuditEntry {
                    at: parse_time(&row.text(0)?)?,
                    request_id: row.text(1)?,
                    account: row.maybe_text(2)?.as_deref().map(account_from).transpose()?,
                    user: row.maybe_text(3)?.as_deref().map(user_from).transpose()?,
                    access_key_id: row.maybe_text(4)?,
                    action: row.text(5)?,
                    resource: row.text(6)?,
                    source_ip: row.text(7)?,
                    outcome: row.text(8)?,
                    repeats: u32::try_from(row.int(9)?).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }

    /// Registers an instance.
    ///
    /// # Errors
    /// `NotFound` for an unknown owner or node, `Conflict` for a taken ID.
    async fn add_instance(&self, instance: &Instance) -> StoreResult<()> {
        let images = self.store();
        self.store()
            .write(|mut tx| async move {
                require_account(&mut *tx, &instance.owner).await?;
                require(
                    &mut *tx,
                    "SELECT 1 FROM nodes WHERE id = $1",
                    instance.node.as_str(),
                    "node",
                )
                .await?;
                if let Some(image) = &instance.image_id {
                    // Held until commit: a concurrent delete of the image waits and then sees this
                    // instance (or, if it went first, this instance names a deleted image).
                    images.image_by_id(&mut *tx, image, Some(Lock::Share)).await?;
                }
                insert_instance(&mut *tx, instance).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Registers a snapshot.
    ///
    /// # Errors
    /// `NotFound` for an unknown owner or node, `Conflict` for a taken ID.
    async fn add_snapshot(&self, snapshot: &Snapshot) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                require_account(&mut *tx, &snapshot.owner).await?;
                require(
                    &mut *tx,
                    "SELECT 1 FROM nodes WHERE id = $1",
                    snapshot.node.as_str(),
                    "node",
                )
                .await?;
                insert_snapshot(&mut *tx, snapshot).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Every registered instance and snapshot.
    async fn sources(&self) -> StoreResult<(Vec<Instance>, Vec<Snapshot>)> {
        let mut tx = self.store().session(Access::Read).await?;
        let instances = tx
            .rows(
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances ORDER BY id"),
                &[],
            )
            .await?
            .into_iter()
            .map(instance_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        let snapshots = tx
            .rows(
                &format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots ORDER BY id"),
                &[],
            )
            .await?
            .into_iter()
            .map(snapshot_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        tx.commit().await?;
        Ok((instances, snapshots))
    }

    /// Replaces every public image with `images` and adds `nodes` to the node list, atomically.
    async fn replace_catalog(&self, nodes: &[NodeId], images: &[Image]) -> StoreResult<()> {
        self.install_catalog(nodes, images, true).await.map(|_| ())
    }
}

impl AdminStore for Store {
    fn store(&self) -> &Store {
        self
    }
}

/// Writes a registered instance; `Conflict` when its ID is taken.
pub(crate) async fn insert_instance(
    tx: &mut dyn crate::engine::Session,
    instance: &Instance,
) -> StoreResult<()> {
    let disks: Vec<String> = instance.data_disks_gib.iter().map(u64::to_string).collect();
    let disks = disks.join(",");
    let inserted = tx
        .execute(
            "INSERT INTO instances (id, owner_id, node_id, image_id, platform, os_type, os_version, architecture, \
             compute_type, system_disk_gib, data_disks_gib, build_failure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
            &[
                instance.id.as_str().into(),
                instance.owner.as_str().into(),
                instance.node.as_str().into(),
                instance.image_id.as_ref().map(ImageId::as_str).into(),
                instance.platform.as_str().into(),
                instance.os_type.as_str().into(),
                instance.os_version.as_str().into(),
                instance.architecture.as_str().into(),
                instance.compute_type.as_str().into(),
                to_i64(instance.system_disk_gib, "disk size")?.into(),
                disks.as_str().into(),
                instance.build_failure.map(BuildFailure::as_str).into(),
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("instance {}", instance.id)));
    }
    Ok(())
}

/// Writes a registered snapshot; `Conflict` when its ID is taken.
pub(crate) async fn insert_snapshot(
    tx: &mut dyn crate::engine::Session,
    snapshot: &Snapshot,
) -> StoreResult<()> {
    let inserted = tx
        .execute(
            "INSERT INTO snapshots (id, owner_id, node_id, instance_id, platform, os_type, os_version, \
             architecture, size_gib, build_failure) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT DO NOTHING",
            &[
                snapshot.id.as_str().into(),
                snapshot.owner.as_str().into(),
                snapshot.node.as_str().into(),
                snapshot.instance_id.as_deref().into(),
                snapshot.platform.as_str().into(),
                snapshot.os_type.as_str().into(),
                snapshot.os_version.as_str().into(),
                snapshot.architecture.as_str().into(),
                to_i64(snapshot.size_gib, "snapshot size")?.into(),
                snapshot.build_failure.map(BuildFailure::as_str).into(),
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("snapshot {}", snapshot.id)));
    }
    Ok(())
}
