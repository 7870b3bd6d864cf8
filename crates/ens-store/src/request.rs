//! [`RequestStore`] on [`Store`]: what a request reads and writes, written once for every
//! engine.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ens_domain::rules::{ensure_deletable, ensure_owner, ensure_shareable};
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, BuildFailure, ExportStatus, Image, ImageError, ImageExportInfo,
    ImageId, ImageQuery, ImageStatus, ImageView, Instance, NodeId, ObjectName, Page, PageRequest,
    RamUserName, Snapshot,
};
use time::OffsetDateTime;

use crate::engine::{Access, Lock, Param, Row, Session};
use crate::images::{image_nodes, is_shared_with, CountChanges, View};
use crate::read_model::{Field, Listing};
use crate::rows::{
    account_from, corrupt, failure_from, format_time, instance_from_row, millis, new_custom_image_id,
    parse_time, principal_from, snapshot_from_row, status_from, to_i64, to_u64, views, ALL_NODES,
    INSTANCE_COLUMNS, SNAPSHOT_COLUMNS, SYSTEM_SCOPE,
};
use crate::transfers::{queue_removal, ImageFile, TransferEnd, TransferJob, TransferRecord};
use crate::{
    AuditEntry, ImageShare, NewImage, NonceClaim, PoolStats, SelfImageQuery, Store, StoreError, StoreResult,
    StoredAccessKey,
};

/// Most images one call of [`RequestStore::advance_image_builds`] or
/// [`RequestStore::step_image_builds`] moves: bounds the transaction.
const BUILD_BATCH: i64 = 500;

/// The columns [`Building::from_row`] reads, in its order.
const BUILDING_COLUMNS: &str = "seq, id, owner_id, status, build_failure, release_instance";

/// An image in the build queue, as one build transition reads it.
struct Building {
    seq: i64,
    id: String,
    owner: Option<String>,
    status: ImageStatus,
    failure: Option<BuildFailure>,
    release_instance: Option<String>,
}

impl Building {
    /// Reads a row of [`BUILDING_COLUMNS`].
    fn from_row(mut row: Row) -> StoreResult<Self> {
        Ok(Self {
            seq: row.int(0)?,
            id: row.text(1)?,
            owner: row.maybe_text(2)?,
            status: status_from(&row.text(3)?)?,
            failure: failure_from(row.maybe_text(4)?)?,
            release_instance: row.maybe_text(5)?,
        })
    }
}

/// SQL conditions over `images i` with their text parameters, numbered `$1`, `$2`, ... as
/// they are added.
struct Conditions<'a> {
    clauses: Vec<String>,
    values: Vec<Param<'a>>,
}

impl<'a> Conditions<'a> {
    /// Starts with `first`, whose SQL may use `$1` (any number of times) for `value`.
    fn new(first: &str, value: &'a str) -> Self {
        Self {
            clauses: vec![first.to_owned()],
            values: vec![value.into()],
        }
    }

    /// Adds the clause `make(n)` whose parameter `$n` stands for `value`.
    fn push(&mut self, value: &'a str, make: impl FnOnce(usize) -> String) {
        self.values.push(value.into());
        self.clauses.push(make(self.values.len()));
    }

    /// The query [`Store::page_with_images`] runs for one page of `i.seq` in `order`, with
    /// its parameters: `(0, total, 0)`, then `(1, rank, seq)` for each image of the page.
    fn page_query(mut self, order: &str, page: PageRequest) -> StoreResult<(String, Vec<Param<'a>>)> {
        let matching = format!("FROM images i WHERE {}", self.clauses.join(" AND "));
        let next = self.values.len() + 1;
        self.values.extend::<[Param<'_>; 2]>([
            to_i64(page.limit(), "limit")?.into(),
            to_i64(page.offset(), "offset")?.into(),
        ]);
        let sql = format!(
            "SELECT 0, COUNT(*), 0 {matching} UNION ALL \
             SELECT 1, place, seq FROM (SELECT ROW_NUMBER() OVER (ORDER BY {order}) AS place, i.seq AS seq \
             {matching} ORDER BY {order} LIMIT ${next} OFFSET ${}) ranked",
            next + 1
        );
        Ok((sql, self.values))
    }
}

/// The totals of the public listing and the viewer's, and the entries of the page: one
/// statement, so one snapshot by itself. Listings are numbered densely from 0, so the page is
/// a range of positions: the public listing's first, then the viewer's. Rows are
/// `(0, public total, own total)`, then `(1, position, seq)` for public images and
/// `(2, position, seq)` for the viewer's, the query [`Store::page_with_images`] runs with the
/// page's images, and orders (a handful of rows, less than a sort in SQL costs). The read
/// model answers these pages; this is its fallback.
const LISTING_PAGE: &str = "\
     SELECT 0, COALESCE((SELECT count FROM listing_counts WHERE scope = 'system' AND node_id = $2), 0), \
               COALESCE((SELECT count FROM listing_counts WHERE scope = $1 AND node_id = $2), 0) \
     UNION ALL \
     SELECT 1, position, image_seq FROM image_listing \
      WHERE scope = 'system' AND node_id = $2 AND position >= $3 AND position < $3 + $4 \
     UNION ALL \
     SELECT 2, position, image_seq FROM image_listing \
      WHERE scope = $1 AND node_id = $2 \
        AND position >= $3 - COALESCE((SELECT count FROM listing_counts WHERE scope = 'system' AND node_id = $2), 0) \
        AND position < $3 + $4 - COALESCE((SELECT count FROM listing_counts WHERE scope = 'system' AND node_id = $2), 0)";

/// DescribeImageSharePermission where the read model cannot answer, in one statement: image
/// `$1` as the ownership rule reads it, then one page of its shares with account `$3` (or
/// any, NULL), oldest first. Rows are `(0, owner, NULL, share count, shared with caller
/// $2)` for the image, if it exists, then `(1, account, created_at, rank, 0)` per share.
const SHARES_PAGE: &str = "\
     WITH target AS MATERIALIZED (SELECT seq, owner_id FROM images WHERE id = $1) \
     SELECT 0, t.owner_id, NULL, \
            (SELECT COUNT(*) FROM image_shares s WHERE s.image_seq = t.seq AND ($3 IS NULL OR s.account_id = $3)), \
            CASE WHEN EXISTS (SELECT 1 FROM image_shares s WHERE s.image_seq = t.seq AND s.account_id = $2) \
                 THEN 1 ELSE 0 END \
       FROM target t \
     UNION ALL \
     SELECT 1, account_id, created_at, place, 0 FROM ( \
       SELECT s.account_id, s.created_at, ROW_NUMBER() OVER (ORDER BY s.created_at, s.account_id) AS place \
         FROM image_shares s JOIN target t ON s.image_seq = t.seq \
        WHERE $3 IS NULL OR s.account_id = $3 \
        ORDER BY s.created_at, s.account_id LIMIT $4 OFFSET $5) page";

/// The TotalCount of a page from [`Store::page_with_images`]: the sum of its row of part 0
/// (the two listings' totals for [`LISTING_PAGE`], the count and 0 for a filtered page).
fn total_of(totals: &[(i64, i64)]) -> StoreResult<u64> {
    let (first, second) = totals.first().copied().unwrap_or((0, 0));
    to_u64(first.saturating_add(second), "count")
}

/// Filtered DescribeImages: an exact ID, name or snapshot narrows the candidates through an
/// index, so the cost grows with the matches, not with the catalog. Returns the query of
/// [`Store::page_with_images`] and its parameters.
fn filtered_page(query: &ImageQuery) -> StoreResult<(String, Vec<Param<'_>>)> {
    let mut conditions = Conditions::new(
        "i.status = 'Available' AND (i.owner_id IS NULL OR i.owner_id = $1 OR EXISTS (SELECT 1 FROM image_shares s \
         WHERE s.image_seq = i.seq AND s.account_id = $1))",
        query.viewer.as_str(),
    );
    if let Some(id) = &query.image_id {
        conditions.push(id.as_str(), |n| format!("i.id = ${n}"));
    }
    if let Some(name) = &query.image_name {
        conditions.push(name, |n| format!("i.name = ${n}"));
    }
    if let Some(snapshot) = &query.snapshot_id {
        conditions.push(snapshot, |n| format!("i.snapshot_id = ${n}"));
    }
    if let Some(node) = &query.node {
        conditions.push(node.as_str(), |n| {
            format!("EXISTS (SELECT 1 FROM image_nodes n WHERE n.image_seq = i.seq AND n.node_id = ${n})")
        });
    }
    conditions.page_query("(i.owner_id IS NOT NULL), i.seq", query.page)
}

/// The images of `listing` matching the exact filters of `query` (at least one is set), in
/// listing order.
fn filter_listing<'a>(listing: &'a Listing, query: &'a ImageQuery) -> impl Iterator<Item = &'a Arc<Image>> {
    let (field, value) = match (&query.image_id, &query.image_name, &query.snapshot_id) {
        (Some(id), _, _) => (Field::Id, id.as_str()),
        (None, Some(name), _) => (Field::Name, name.as_str()),
        (None, None, Some(snapshot)) => (Field::Snapshot, snapshot.as_str()),
        (None, None, None) => (Field::Id, ""),
    };
    listing.candidates(field, value).filter(move |image| {
        query.image_id.as_ref().is_none_or(|id| image.id == *id)
            && query.image_name.as_ref().is_none_or(|name| image.name == *name)
            && query
                .snapshot_id
                .as_ref()
                .is_none_or(|snapshot| image.snapshot_id.as_ref() == Some(snapshot))
    })
}

/// The page `request` of the items `matching`, each copied out with `copy`, and how many
/// match in all.
fn counted_page<S, T>(
    matching: Vec<&S>,
    request: PageRequest,
    copy: impl Fn(&S) -> T,
) -> StoreResult<(Vec<T>, u64)> {
    let total = u64::try_from(matching.len()).map_err(corrupt)?;
    let items = matching
        .into_iter()
        .skip(usize::try_from(request.offset()).unwrap_or(usize::MAX))
        .take(usize::try_from(request.limit()).unwrap_or(usize::MAX))
        .map(copy)
        .collect();
    Ok((items, total))
}

/// Images `offset..offset + limit` of the public listing followed by the viewer's.
fn page_of(public: &[Arc<Image>], own: &[Arc<Image>], offset: u64, limit: u64) -> Vec<Arc<Image>> {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(limit).unwrap_or(usize::MAX));
    let part = |images: &[Arc<Image>], skipped: usize| {
        let from = start.saturating_sub(skipped).min(images.len());
        let to = end.saturating_sub(skipped).min(images.len());
        images[from..to].to_vec()
    };
    let mut page = part(public, 0);
    page.extend(part(own, public.len()));
    page
}

impl Store {
    /// Ends the current build step of `image` in `tx`: the one build transition, which the
    /// background advancer and the lifecycle clock's steps both make, so they cannot
    /// disagree. The image takes its next status (`ImageStatus::after_build_step`); still
    /// building, its next step ends at `next_due` (ms); `Available`, it joins the listings
    /// and the instance it was made from is released when `CreateImage` asked for that. An
    /// image with no step left only leaves the queue. Returns the new status, or `None` when nothing moved: no step
    /// left, or another writer changed the status since it was read.
    async fn end_build_step(
        &self,
        tx: &mut dyn Session,
        counts: &mut CountChanges,
        image: &Building,
        next_due: i64,
    ) -> StoreResult<Option<ImageStatus>> {
        // The status shows in its owner's DescribeSelfImages (a building image is never
        // shared), and an image becoming Available joins the owner's listings.
        let scope = image.owner.as_deref().unwrap_or(SYSTEM_SCOPE);
        tx.touch(Some(scope));
        let Some(next) = image.status.after_build_step(image.failure) else {
            tx.execute(
                "UPDATE images SET build_due_at = NULL WHERE seq = $1",
                &[image.seq.into()],
            )
            .await?;
            return Ok(None);
        };
        let due_at = next.is_building().then_some(next_due);
        let changed = tx
            .execute(
                "UPDATE images SET status = $1, build_due_at = $2 WHERE seq = $3 AND status = $4",
                &[
                    next.as_str().into(),
                    due_at.into(),
                    image.seq.into(),
                    image.status.as_str().into(),
                ],
            )
            .await?;
        if changed == 0 {
            // Another writer changed the status since it was read: not ours to move.
            return Ok(None);
        }
        if next == ImageStatus::Available {
            let nodes = image_nodes(&mut *tx, image.seq).await?;
            self.add_to_listings(&mut *tx, counts, scope, image.seq, &nodes)
                .await?;
            if let Some(instance) = &image.release_instance {
                tx.execute("DELETE FROM instances WHERE id = $1", &[instance.as_str().into()])
                    .await?;
            }
        }
        Ok(Some(next))
    }

    async fn create_image_once(&self, new: &NewImage) -> StoreResult<()> {
        self.write(|mut tx| async move {
            let mut counts = CountChanges::default();
            tx.touch(Some(
                new.image.owner.as_ref().map_or(SYSTEM_SCOPE, AccountId::as_str),
            ));
            self.insert_image(&mut *tx, &mut counts, new).await?;
            // Born Available: the upload is already over, so release the build instance now.
            if let (ens_domain::ImageStatus::Available, Some(instance)) =
                (new.image.status, &new.release_instance)
            {
                tx.execute("DELETE FROM instances WHERE id = $1", &[instance.as_str().into()])
                    .await?;
            }
            counts.apply(&mut *tx).await?;
            Ok((tx, ()))
        })
        .await
    }
}

/// What a request and the server's background tasks need of storage.
///
/// Every write is one transaction: acknowledged means committed.
#[async_trait]
pub trait RequestStore: Send + Sync + 'static {
    /// The store whose rules these are; a test double may override any method instead.
    fn store(&self) -> &Store;

    /// Connection pool usage now, when the engine pools connections.
    fn pool_stats(&self) -> Option<PoolStats> {
        self.store().engine.pool_stats()
    }

    /// Whether the record of used SignatureNonces was lost when the store opened, so that
    /// requests signed before then must be refused until their clock window has passed.
    fn nonce_history_lost(&self) -> bool {
        self.store().engine.nonce_history_lost()
    }

    /// See [`crate::engine::Engine::nonces_are_local`].
    fn nonces_are_local(&self) -> bool {
        self.store().engine.nonces_are_local()
    }

    /// See [`crate::engine::Engine::mark_nonce_record`].
    ///
    /// # Errors
    /// When the mark cannot be made.
    fn mark_nonce_record(&self, complete: bool) -> StoreResult<()> {
        self.store().engine.mark_nonce_record(complete)
    }

    /// Records that server `replica` is alive at `now` and returns how many replicas were
    /// alive in the last `window` (itself included). Per-replica limits, such as the
    /// request rate, are divided by this count.
    async fn heartbeat(&self, replica: &str, now: OffsetDateTime, window: Duration) -> StoreResult<u32> {
        let (now_ms, since) = (millis(now)?, millis(now - window)?);
        self.store().write(|mut tx| async move {
            tx.execute(
                "INSERT INTO replica_heartbeats (replica, last_seen) VALUES ($1, $2) ON CONFLICT (replica) DO UPDATE \
                 SET last_seen = CASE WHEN excluded.last_seen > replica_heartbeats.last_seen \
                 THEN excluded.last_seen ELSE replica_heartbeats.last_seen END",
                &[replica.into(), now_ms.into()],
            )
            .await?;
            // Replicas silent for a whole window are gone (a restarted server announces
            // itself under a new name); forgetting them keeps the table small.
            tx.execute("DELETE FROM replica_heartbeats WHERE last_seen < $1", &[since.into()])
                .await?;
            let live = tx
                .count("SELECT COUNT(*) FROM replica_heartbeats WHERE last_seen >= $1", &[since.into()])
                .await?;
            Ok((tx, u32::try_from(live.max(1)).map_err(corrupt)?))
        })
        .await
    }

    /// Looks up a key by ID, whatever its status.
    async fn access_key(&self, id: &AccessKeyId) -> StoreResult<Option<StoredAccessKey>> {
        let model = &self.store().read_model;
        let usable = model.ready().await;
        if let Some(key) = model.key(id).filter(|_| usable) {
            return Ok(Some(key));
        }
        let ticket = model.ticket(None);
        let mut tx = self.store().session(Access::ReadOne).await?;
        let row = tx
            .row(
                "SELECT account_id, user_name, secret, status FROM access_keys WHERE id = $1",
                &[id.as_str().into()],
            )
            .await?;
        row.map(|mut row| {
            Ok(StoredAccessKey {
                id: id.clone(),
                principal: principal_from(&mut row, 0, 1)?,
                secret: row.text(2)?,
                status: AccessKeyStatus::from_stored(&row.text(3)?),
            })
        })
        .transpose()
        .inspect(|key| {
            if let (true, Some(key)) = (usable, key) {
                model.install_key(ticket, key);
            }
        })
    }

    /// The key `id` as this replica holds it, when confirming it after the request's nonce
    /// claim costs less than reading it current now (PostgreSQL, where being current takes
    /// a marker's round trip and the claim carries one): the caller checks the signature with
    /// it, claims the nonce, then confirms it with [`Self::access_key`], which waits for
    /// nothing more. `None`: read it with [`Self::access_key`] now.
    fn access_key_to_confirm(&self, id: &AccessKeyId) -> Option<StoredAccessKey> {
        self.store().read_model.key_to_confirm(id)
    }

    /// Records each claimed nonce as used with its key until its `expires_at`, all in one
    /// round trip: the server gathers the claims of concurrent requests into one call.
    /// Returns, in order, whether each claim won; `false` means the nonce was already
    /// recorded and has not expired at `now` (a replay). The claims must be distinct.
    async fn claim_nonces(&self, claims: &[NonceClaim], now: OffsetDateTime) -> StoreResult<Vec<bool>> {
        self.store().claim_nonce_batch(claims, now).await
    }

    /// Records claims the server decided itself (in its index of the record), refusing none:
    /// the cheapest write that lets a restart, or the record deciding later, refuse their
    /// replays. The claims must be distinct.
    async fn record_nonces(&self, claims: &[NonceClaim]) -> StoreResult<()> {
        self.store().log_nonce_batch(claims).await
    }

    /// Moves the claims [`Self::record_nonces`] logged to where [`Self::claim_nonces`] looks:
    /// what a server must do before it lets the record decide claims its index does not
    /// hold. The server's index holds whatever it logged itself, so only a start needs it.
    async fn fold_nonce_log(&self) -> StoreResult<()> {
        self.store().fold_nonce_log().await
    }

    /// Whether `claim`'s nonce is on record and unexpired at `now`, without writing: how
    /// replay protection goes on while the record cannot be written.
    async fn nonce_in_use(&self, claim: &NonceClaim, now: OffsetDateTime) -> StoreResult<bool> {
        self.store().nonce_on_record(claim, now).await
    }

    /// Every nonce on record and unexpired at `now`, as `(digest, expires_at)` with the
    /// digest of [`crate::nonce_digest`] and the expiry in Unix seconds: what a server whose
    /// store is its own loads once to decide claims in memory.
    async fn recorded_nonces(&self, now: OffsetDateTime) -> StoreResult<Vec<(i64, i64)>> {
        self.store().unexpired_nonces(now).await
    }

    /// Forgets nonces whose replay window has passed; returns how many.
    async fn prune_nonces(&self, now: OffsetDateTime) -> StoreResult<u64> {
        self.store().prune_nonce_record(now).await
    }

    /// The documents of every policy attached to a user, from the read model (dropped on
    /// any change of users, policies or attachments).
    async fn user_policy_documents(
        &self,
        account: &AccountId,
        user: &RamUserName,
    ) -> StoreResult<Arc<Vec<String>>> {
        let model = &self.store().read_model;
        let usable = model.ready().await;
        if let Some(documents) = model.policies(account.as_str(), user.as_str()).filter(|_| usable) {
            return Ok(documents);
        }
        let ticket = model.ticket(None);
        let mut tx = self.store().session(Access::ReadOne).await?;
        let documents = Arc::new(
            tx.texts(
                "SELECT p.document FROM policy_attachments a JOIN policies p \
                 ON p.account_id = a.account_id AND p.name = a.policy_name \
                 WHERE a.account_id = $1 AND a.user_name = $2 ORDER BY p.name",
                &[account.as_str().into(), user.as_str().into()],
            )
            .await?,
        );
        if usable {
            model.install_policies(ticket, account.as_str(), user.as_str(), Arc::clone(&documents));
        }
        Ok(documents)
    }

    /// Appends audit entries, all in one write: the server gathers the entries of
    /// concurrent requests into one call.
    async fn record_audits(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        self.store().insert_audits(entries).await
    }

    /// Forgets audit records from before `before`, a bounded number per transaction so that
    /// writers never wait long behind it; returns how many were removed.
    async fn prune_audit(&self, before: OffsetDateTime) -> StoreResult<u64> {
        const PER_TRANSACTION: i64 = 5_000;
        let before = crate::rows::audit_time(before)?;
        let mut removed = 0;
        loop {
            let mut tx = self.store().session(Access::Write).await?;
            let count = tx
                .execute(
                    "DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE at < $1 LIMIT $2)",
                    &[before.as_str().into(), PER_TRANSACTION.into()],
                )
                .await?;
            tx.commit().await?;
            removed += count;
            if i64::try_from(count).unwrap_or(i64::MAX) < PER_TRANSACTION {
                return Ok(removed);
            }
        }
    }

    /// Whether a public catalog has been loaded (the server is ready once it has).
    async fn has_catalog(&self) -> StoreResult<bool> {
        let mut tx = self.store().session(Access::ReadOne).await?;
        tx.exists("SELECT 1 FROM store_metadata WHERE name = 'catalog_loaded'", &[])
            .await
    }

    /// Whether `node` is a known ENS node.
    async fn node_exists(&self, node: &NodeId) -> StoreResult<bool> {
        let store = self.store();
        if store.read_model.ready().await {
            return Ok(store.held_nodes().await?.contains(node.as_str()));
        }
        let mut tx = store.session(Access::ReadOne).await?;
        tx.exists("SELECT 1 FROM nodes WHERE id = $1", &[node.as_str().into()])
            .await
    }

    /// A registered instance.
    async fn instance(&self, id: &str) -> StoreResult<Option<Instance>> {
        let mut tx = self.store().session(Access::ReadOne).await?;
        let sql = format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1");
        tx.row(&sql, &[id.into()])
            .await?
            .map(instance_from_row)
            .transpose()
    }

    /// A registered snapshot.
    async fn snapshot(&self, id: &str) -> StoreResult<Option<Snapshot>> {
        let mut tx = self.store().session(Access::ReadOne).await?;
        let sql = format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots WHERE id = $1");
        tx.row(&sql, &[id.into()])
            .await?
            .map(snapshot_from_row)
            .transpose()
    }

    /// Stores a new custom image under a fresh ID and returns it.
    async fn create_image(&self, mut new: NewImage) -> StoreResult<Image> {
        // A collision among 36^25 IDs is next to impossible; a few retries make it harmless.
        let disks = new.image.disk_device_mappings.clone();
        for _ in 0..5 {
            new.image.id = ImageId::parse(&new_custom_image_id()).map_err(corrupt)?;
            for (disk, template) in new.image.disk_device_mappings.iter_mut().zip(&disks) {
                if template.image_id.is_empty() {
                    disk.image_id = new.image.id.as_str().to_owned();
                }
            }
            match self.store().create_image_once(&new).await {
                Ok(()) => return Ok(new.image),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Conflict("fresh image ID".into()))
    }

    /// Ends the build step of every image whose step is due at `now` (at most 500 a call,
    /// earliest due first): the background advancer's work. An image still building after
    /// it has its next step end `step` later. Each transition happens once, whoever calls
    /// this. Returns how many images moved.
    async fn advance_image_builds(&self, now: OffsetDateTime, step: Duration) -> StoreResult<u64> {
        let (now_ms, next_due) = (millis(now)?, millis(now + step)?);
        let store = self.store();
        // Rows another replica is advancing right now are skipped, not waited for: that
        // replica moves them, and they are no longer due once it commits.
        let due_sql = format!(
            "SELECT {BUILDING_COLUMNS} FROM images \
             WHERE build_due_at IS NOT NULL AND build_due_at <= $1 ORDER BY build_due_at, seq LIMIT $2{}",
            store.dialect.lock(Lock::UpdateSkipLocked)
        );
        let due_sql = due_sql.as_str();
        store
            .write(|mut tx| async move {
                let mut counts = CountChanges::default();
                let due = tx.rows(due_sql, &[now_ms.into(), BUILD_BATCH.into()]).await?;
                let mut moved = 0;
                for row in due {
                    let image = Building::from_row(row)?;
                    if store
                        .end_build_step(&mut *tx, &mut counts, &image, next_due)
                        .await?
                        .is_some()
                    {
                        moved += 1;
                    }
                }
                counts.apply(&mut *tx).await?;
                Ok((tx, moved))
            })
            .await
    }

    /// Moves every image still building in a scope `steps` build steps on now, whatever
    /// their due time: the lifecycle clock of the control API, so a test decides when a
    /// build moves instead of waiting for it. The scope is the images of `account`, the
    /// image `image`, both (that image if `account` owns it) or, with neither, every image.
    /// Each step is the advancer's own transition ([`Self::advance_image_builds`]); an image
    /// that ends (`Available` or a failure status) stops there, and one still building has
    /// its next step end `step` after `now`, so the advancer carries on from there. At most
    /// 500 images a call, oldest first; rows another replica is moving are waited for.
    /// Returns each image that moved with its status now, oldest first.
    ///
    /// # Errors
    /// `NotFound` when `image` names no image at all.
    async fn step_image_builds(
        &self,
        account: Option<&AccountId>,
        image: Option<&ImageId>,
        steps: u32,
        now: OffsetDateTime,
        step: Duration,
    ) -> StoreResult<Vec<(ImageId, ImageStatus)>> {
        let next_due = millis(now + step)?;
        let store = self.store();
        let (account, image) = (account.map(AccountId::as_str), image.map(ImageId::as_str));
        let scope_sql = format!(
            "SELECT {BUILDING_COLUMNS} FROM images WHERE build_due_at IS NOT NULL \
             AND ($1 IS NULL OR owner_id = $1) AND ($2 IS NULL OR id = $2) ORDER BY seq LIMIT $3{}",
            store.dialect.lock(Lock::Update)
        );
        let scope_sql = scope_sql.as_str();
        store
            .write(|mut tx| async move {
                let mut counts = CountChanges::default();
                let rows = tx
                    .rows(scope_sql, &[account.into(), image.into(), BUILD_BATCH.into()])
                    .await?;
                if let (true, Some(id)) = (rows.is_empty(), image) {
                    if !tx
                        .exists("SELECT 1 FROM images WHERE id = $1", &[id.into()])
                        .await?
                    {
                        return Err(StoreError::NotFound(format!("image {id}")));
                    }
                }
                let mut moved = Vec::new();
                for row in rows {
                    let mut building = Building::from_row(row)?;
                    let mut stepped = false;
                    for _ in 0..steps {
                        let Some(next) = store
                            .end_build_step(&mut *tx, &mut counts, &building, next_due)
                            .await?
                        else {
                            break;
                        };
                        (building.status, stepped) = (next, true);
                        if !next.is_building() {
                            break;
                        }
                    }
                    if stepped {
                        moved.push((ImageId::parse(&building.id).map_err(corrupt)?, building.status));
                    }
                }
                counts.apply(&mut *tx).await?;
                Ok((tx, moved))
            })
            .await
    }

    /// Starts the current step of every image still building afresh: it ends `step` after
    /// `now` (a step due later keeps its time). The lifecycle clock calls this when it is
    /// unfrozen, so builds held while it was frozen go on at their normal pace rather than
    /// all moving at the advancer's next tick. Returns how many images were rescheduled.
    async fn restart_image_builds(&self, now: OffsetDateTime, step: Duration) -> StoreResult<u64> {
        let next_due = millis(now + step)?;
        self.store()
            .write(|mut tx| async move {
                tx.touch(None);
                let changed = tx
                    .execute(
                        "UPDATE images SET build_due_at = $1 WHERE build_due_at IS NOT NULL AND build_due_at < $1",
                        &[next_due.into()],
                    )
                    .await?;
                Ok((tx, changed))
            })
            .await
    }

    /// Chooses how the build of image `id` ends, overriding what its source said: failing
    /// at `failure`'s step, or, with `None`, `Available`. The per-image outcome of the
    /// lifecycle clock. Returns the image's status.
    ///
    /// # Errors
    /// `NotFound` for an unknown image; `Invalid` for an image no longer building, or one
    /// already past the step asked to fail (an `Uploading` image cannot fail to pack).
    async fn set_image_build_failure(
        &self,
        id: &ImageId,
        failure: Option<BuildFailure>,
    ) -> StoreResult<ImageStatus> {
        let sql = format!(
            "SELECT status, build_due_at FROM images WHERE id = $1{}",
            self.store().dialect.lock(Lock::Update)
        );
        let sql = sql.as_str();
        self.store()
            .write(|mut tx| async move {
                let mut row = tx
                    .row(sql, &[id.as_str().into()])
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("image {id}")))?;
                let status = status_from(&row.text(0)?)?;
                let queued = row.maybe_int(1)?.is_some();
                if !queued || status.after_build_step(None).is_none() {
                    return Err(StoreError::Invalid(format!(
                        "image {id} is {}: only an image still building has an outcome to choose",
                        status.as_str()
                    )));
                }
                if (status, failure) == (ImageStatus::Uploading, Some(BuildFailure::Pack)) {
                    return Err(StoreError::Invalid(format!(
                        "image {id} is already packed (Uploading): it can fail to upload, not to pack"
                    )));
                }
                tx.touch(None);
                tx.execute(
                    "UPDATE images SET build_failure = $1 WHERE id = $2",
                    &[failure.map(BuildFailure::as_str).into(), id.as_str().into()],
                )
                .await?;
                Ok((tx, status))
            })
            .await
    }

    /// An image `viewer` can see (public, own or shared-in), in any status, with every node.
    async fn visible_image(&self, viewer: &AccountId, id: &ImageId) -> StoreResult<Option<ImageView>> {
        let mut tx = self.store().session(Access::Read).await?;
        let Some((seq, image)) = self.store().image_by_id(&mut *tx, id, None).await? else {
            return Ok(None);
        };
        let visible = match &image.owner {
            None => true,
            Some(owner) if owner == viewer => true,
            Some(_) => is_shared_with(&mut *tx, seq, viewer).await?,
        };
        if !visible {
            return Ok(None);
        }
        let images = self.store().load_images(&mut *tx, &[seq], true).await?;
        tx.commit().await?;
        Ok(views(images.into_iter().map(Arc::new), viewer, None).pop())
    }

    /// Renames an image of `owner`.
    ///
    /// # Errors
    /// `StoreError::Image` when a rule of `ens_domain::rules` refuses it.
    async fn rename_image(&self, owner: &AccountId, id: &ImageId, name: &str) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                let (seq, _) = self
                    .store()
                    .owned_image(&mut *tx, owner, id, Some(Lock::Update))
                    .await?;
                // The image shows in its owner's listings and those of every account it is
                // shared with.
                let shared_with = tx
                    .texts(
                        "SELECT account_id FROM image_shares WHERE image_seq = $1",
                        &[seq.into()],
                    )
                    .await?;
                tx.touch(Some(owner.as_str()));
                for account in &shared_with {
                    tx.touch(Some(account));
                }
                tx.execute(
                    "UPDATE images SET name = $1 WHERE seq = $2",
                    &[name.into(), seq.into()],
                )
                .await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Deletes an image of `owner`, atomically with the rule checks.
    ///
    /// # Errors
    /// `StoreError::Image` when a rule of `ens_domain::rules` refuses it.
    async fn delete_image(&self, owner: &AccountId, id: &ImageId) -> StoreResult<()> {
        self.store()
            .write(|mut tx| async move {
                let mut counts = CountChanges::default();
                // The lock makes concurrent shares, renames and instance registrations of this
                // image wait; each statement below then sees what they committed.
                let (seq, image) = self
                    .store()
                    .owned_image(&mut *tx, owner, id, Some(Lock::Update))
                    .await?;
                let shares = tx
                    .count(
                        "SELECT COUNT(*) FROM image_shares WHERE image_seq = $1",
                        &[seq.into()],
                    )
                    .await?;
                // The first-registered instance that runs the image is the one named.
                let used_by = tx
                    .texts(
                        "SELECT id FROM instances WHERE image_id = $1 ORDER BY seq LIMIT 1",
                        &[id.as_str().into()],
                    )
                    .await?;
                ensure_deletable(&image, shares, used_by.first().map(String::as_str))?;
                // Not shared (the rule above): only its owner's listings show it.
                tx.touch(Some(owner.as_str()));
                self.store()
                    .remove_from_listings(&mut *tx, &mut counts, owner.as_str(), seq)
                    .await?;
                tx.execute("DELETE FROM images WHERE seq = $1", &[seq.into()])
                    .await?;
                queue_removal(&mut *tx, id.as_str(), OffsetDateTime::now_utc()).await?;
                counts.apply(&mut *tx).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Adds and removes share targets of an image of `owner`, atomically.
    ///
    /// # Errors
    /// `StoreError::Image` when a rule of `ens_domain::rules` refuses it.
    async fn modify_image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        add: &[AccountId],
        remove: &[AccountId],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let created = format_time(now)?;
        let created = created.as_str();
        let images = self.store();
        self.store().write(|mut tx| async move {
            let mut counts = CountChanges::default();
            let (seq, image) = images.owned_image(&mut *tx, owner, id, Some(Lock::Update)).await?;
            // Only the listings of the accounts added or removed change, and the owner's
            // record of its shares.
            tx.touch(Some(owner.as_str()));
            for account in add.iter().chain(remove) {
                tx.touch(Some(account.as_str()));
            }
            for account in add {
                if !tx.exists("SELECT 1 FROM accounts WHERE id = $1", &[account.as_str().into()]).await? {
                    return Err(ImageError::UnknownAccount(account.clone()).into());
                }
            }
            for account in remove {
                let removed = tx
                    .execute(
                        "DELETE FROM image_shares WHERE image_seq = $1 AND account_id = $2",
                        &[seq.into(), account.as_str().into()],
                    )
                    .await?;
                if removed > 0 {
                    images.remove_from_listings(&mut *tx, &mut counts, account.as_str(), seq).await?;
                }
            }
            if !add.is_empty() {
                let mut after = tx
                    .count("SELECT COUNT(*) FROM image_shares WHERE image_seq = $1", &[seq.into()])
                    .await?;
                for account in add {
                    if !is_shared_with(&mut *tx, seq, account).await? {
                        after += 1;
                    }
                }
                ensure_shareable(&image, add, after)?;
                let nodes = image_nodes(&mut *tx, seq).await?;
                for account in add {
                    let inserted = tx
                        .execute(
                            "INSERT INTO image_shares (image_seq, account_id, created_at) VALUES ($1, $2, $3) \
                             ON CONFLICT DO NOTHING",
                            &[seq.into(), account.as_str().into(), created.into()],
                        )
                        .await?;
                    if inserted > 0 {
                        images.add_to_listings(&mut *tx, &mut counts, account.as_str(), seq, &nodes).await?;
                    }
                }
            }
            counts.apply(&mut *tx).await?;
            Ok((tx, ()))
        })
        .await
    }

    /// One page of the accounts an image of `owner` is shared with, oldest share first.
    ///
    /// # Errors
    /// `StoreError::Image` when the caller does not own the image.
    async fn image_shares(
        &self,
        owner: &AccountId,
        id: &ImageId,
        account: Option<&AccountId>,
        page: PageRequest,
    ) -> StoreResult<Page<ImageShare>> {
        let store = self.store();
        if store.read_model.ready().await {
            // The owner's rule as `owned_image` applies it: own images and shared-in ones are
            // in the caller's DescribeSelfImages set, public ones in the public set.
            let visible = store.held_view(owner.as_str(), View::SelfImages).await?;
            let found = visible
                .candidates(Field::Id, id.as_str())
                .find(|image| image.id == *id);
            match found {
                Some(image) => {
                    ensure_owner(image.owner.as_ref(), owner, image.owner.as_ref() != Some(owner))?
                }
                None => {
                    let public = store.held_view(SYSTEM_SCOPE, View::PublicEveryNode).await?;
                    if public
                        .candidates(Field::Id, id.as_str())
                        .any(|image| image.id == *id)
                    {
                        return Err(ImageError::PublicImage.into());
                    }
                    return Err(ImageError::NotFound.into());
                }
            }
            let shares = store.held_shares(owner.as_str()).await?;
            let matching: Vec<&ImageShare> = shares
                .get(id.as_str())
                .into_iter()
                .flatten()
                .filter(|share| account.is_none_or(|account| share.account == *account))
                .collect();
            let (items, total_count) = counted_page(matching, page, ImageShare::clone)?;
            return Ok(Page {
                items,
                total_count,
                request: page,
            });
        }
        let filter = account.map(AccountId::as_str);
        let mut tx = self.store().session(Access::ReadOne).await?;
        let rows = tx
            .rows(
                SHARES_PAGE,
                &[
                    id.as_str().into(),
                    owner.as_str().into(),
                    filter.into(),
                    to_i64(page.limit(), "limit")?.into(),
                    to_i64(page.offset(), "offset")?.into(),
                ],
            )
            .await?;
        let mut image = None;
        let mut shares = Vec::with_capacity(rows.len());
        for mut row in rows {
            if row.int(0)? == 0 {
                let image_owner = row.maybe_text(1)?.as_deref().map(account_from).transpose()?;
                image = Some((image_owner, row.int(3)?, row.int(4)? != 0));
            } else {
                let share = ImageShare {
                    account: account_from(&row.text(1)?)?,
                    created_at: parse_time(&row.text(2)?)?,
                };
                shares.push((row.int(3)?, share));
            }
        }
        let Some((image_owner, total, shared)) = image else {
            return Err(ImageError::NotFound.into());
        };
        ensure_owner(image_owner.as_ref(), owner, shared)?;
        shares.sort_unstable_by_key(|(place, _)| *place);
        let items = shares.into_iter().map(|(_, share)| share).collect();
        let total = to_u64(total, "count")?;
        Ok(Page {
            items,
            total_count: total,
            request: page,
        })
    }

    /// One page of the caller's own and shared-in custom images, in any status, each with
    /// every node.
    async fn describe_self_images(&self, query: &SelfImageQuery) -> StoreResult<Page<ImageView>> {
        let store = self.store();
        if store.read_model.ready().await {
            let held = store.held_view(query.viewer.as_str(), View::SelfImages).await?;
            // The same matches as the SQL below: ASCII case folded, `%` and `_` literal.
            let folded = |text: &Option<String>| text.as_ref().map(|text| text.to_ascii_lowercase());
            let (id_part, name_part) = (
                folded(&query.image_id_contains),
                folded(&query.image_name_contains),
            );
            let contains = |text: &str, part: &Option<String>| {
                part.as_ref()
                    .is_none_or(|part| text.to_ascii_lowercase().contains(part.as_str()))
            };
            let matching: Vec<&Arc<Image>> = held
                .images
                .iter()
                .filter(|image| {
                    contains(image.id.as_str(), &id_part)
                        && contains(&image.name, &name_part)
                        && query
                            .snapshot_id
                            .as_ref()
                            .is_none_or(|snapshot| image.snapshot_id.as_ref() == Some(snapshot))
                })
                .collect();
            let (images, total_count) = counted_page(matching, query.page, Arc::clone)?;
            return Ok(Page {
                items: views(images, &query.viewer, None),
                total_count,
                request: query.page,
            });
        }
        let mut conditions = Conditions::new(
            "i.seq IN (SELECT seq FROM images WHERE owner_id = $1 \
             UNION ALL SELECT image_seq FROM image_shares WHERE account_id = $1)",
            query.viewer.as_str(),
        );
        if let Some(id) = &query.image_id_contains {
            conditions.push(id, |n| self.store().dialect.contains_folded("i.id", n));
        }
        if let Some(name) = &query.image_name_contains {
            conditions.push(name, |n| self.store().dialect.contains_folded("i.name", n));
        }
        if let Some(snapshot) = &query.snapshot_id {
            conditions.push(snapshot, |n| format!("i.snapshot_id = ${n}"));
        }
        let (sql, params) = conditions.page_query("i.seq", query.page)?;
        let (totals, images) = self.store().page_with_images(&sql, &params, true).await?;
        Ok(Page {
            items: views(images.into_iter().map(Arc::new), &query.viewer, None),
            total_count: total_of(&totals)?,
            request: query.page,
        })
    }

    /// Every public image, with an OS type filter (case-insensitive), each with every node.
    async fn public_images(&self, os_type: Option<&str>) -> StoreResult<Vec<Image>> {
        let store = self.store();
        if store.read_model.ready().await {
            let held = store.held_view(SYSTEM_SCOPE, View::PublicEveryNode).await?;
            return Ok(held
                .images
                .iter()
                .filter(|image| os_type.is_none_or(|os_type| image.os_type.eq_ignore_ascii_case(os_type)))
                .map(|image| Image::clone(image))
                .collect());
        }
        let sql = format!(
            "SELECT 1, seq, seq FROM images WHERE owner_id IS NULL AND ($1 IS NULL OR lower(os_type) = {})",
            self.store().dialect.lower_param(1)
        );
        let (_, images) = self
            .store()
            .page_with_images(&sql, &[os_type.into()], true)
            .await?;
        Ok(images)
    }

    /// One page of the images `query.viewer` may see, matching the query.
    ///
    /// Only `Available` images are listed. Order: public images first, then the viewer's own
    /// and shared-in images, each group in the order the images entered the store. An item
    /// names one node (`RegionId`), so each image carries only its first node: public images
    /// can each be on dozens.
    async fn describe_images(&self, query: &ImageQuery) -> StoreResult<Page<ImageView>> {
        let store = self.store();
        let filtered = query.image_id.is_some() || query.image_name.is_some() || query.snapshot_id.is_some();
        let node = query.node.as_ref().map_or(ALL_NODES, NodeId::as_str);
        let (offset, limit) = (query.page.offset(), query.page.limit());
        let page = |images, total_count| Page {
            items: views(images, &query.viewer, query.node.as_ref()),
            total_count,
            request: query.page,
        };
        if store.read_model.ready().await {
            let public = store.held_view(SYSTEM_SCOPE, View::Listing { node }).await?;
            let own = store
                .held_view(query.viewer.as_str(), View::Listing { node })
                .await?;
            if !filtered {
                let total = u64::try_from(public.images.len() + own.images.len()).map_err(corrupt)?;
                return Ok(page(page_of(&public.images, &own.images, offset, limit), total));
            }
            // The filters' order is the listings' own: public images first, each group in
            // image order; an exact ID, name or snapshot narrows through the listing's index.
            let matching: Vec<&Arc<Image>> = [&public, &own]
                .into_iter()
                .flat_map(|listing| filter_listing(listing, query))
                .collect();
            let (images, total) = counted_page(matching, query.page, Arc::clone)?;
            return Ok(page(images, total));
        }
        let (totals, images) = if filtered {
            let (sql, params) = filtered_page(query)?;
            store.page_with_images(&sql, &params, false).await?
        } else {
            let params = [
                query.viewer.as_str().into(),
                node.into(),
                to_i64(offset, "offset")?.into(),
                to_i64(limit, "limit")?.into(),
            ];
            store.page_with_images(LISTING_PAGE, &params, false).await?
        };
        Ok(page(
            images.into_iter().map(Arc::new).collect(),
            total_of(&totals)?,
        ))
    }

    /// `ImportImage`: stores `new` as `Creating` on every known node, with its import from
    /// `sources` (one object per disk, system disk first) queued for a transfer worker, in
    /// one transaction; `request_id` is the call's, which the audit of the import's end keeps. Returns the new image's ID.
    async fn start_import(
        &self,
        new: &NewImage,
        sources: &[ObjectName],
        request_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<ImageId> {
        self.store().start_import(new, sources, request_id, now).await
    }

    /// Claims the oldest running transfer nobody holds, or whose holder's lease lapsed,
    /// for `worker` until `now + lease`: how imports and exports survive a server killed
    /// mid-way, on any replica.
    async fn claim_transfer(
        &self,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> StoreResult<Option<TransferJob>> {
        self.store().claim_transfer(worker, now, lease).await
    }

    /// Extends `worker`'s lease on `job`; `false` when it no longer holds it and must stop.
    async fn renew_transfer(
        &self,
        job: &TransferJob,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> StoreResult<bool> {
        self.store().renew_transfer(job, worker, now, lease).await
    }

    /// Ends an import with the image's files: the image becomes `Available` with their
    /// sizes and disks, in the transaction that ends the transfer.
    async fn finish_import(
        &self,
        job: &TransferJob,
        worker: &str,
        files: &[ImageFile],
        now: OffsetDateTime,
    ) -> StoreResult<TransferEnd> {
        self.store().finish_import(job, worker, files, now).await
    }

    /// Ends a transfer as failed for `reason`, which the image's owner sees.
    async fn fail_transfer(
        &self,
        job: &TransferJob,
        worker: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> StoreResult<TransferEnd> {
        self.store().fail_transfer(job, worker, reason, now).await
    }

    /// `ExportImage`: queues an export of `owner`'s image to `target`, announced at `url`.
    ///
    /// # Errors
    /// `StoreError::Image` when a rule refuses it (not the owner's, not `Available`, an
    /// export already running).
    async fn start_export(
        &self,
        owner: &AccountId,
        id: &ImageId,
        target: &ObjectName,
        url: &str,
        request_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.store()
            .start_export(owner, id, target, url, request_id, now)
            .await
    }

    /// Ends an export: its object is complete in the bucket.
    async fn finish_export(
        &self,
        job: &TransferJob,
        worker: &str,
        now: OffsetDateTime,
    ) -> StoreResult<TransferEnd> {
        self.store().finish_export(job, worker, now).await
    }

    /// `DescribeExportImageStatus` of `owner`'s image.
    async fn export_status(&self, owner: &AccountId, id: &ImageId) -> StoreResult<ExportStatus> {
        self.store().export_status(owner, id).await
    }

    /// `DescribeExportImageInfo`: `owner`'s custom images with their exports.
    async fn export_infos(
        &self,
        owner: &AccountId,
        image_id: Option<&ImageId>,
        image_name: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<ImageExportInfo>> {
        self.store().export_infos(owner, image_id, image_name, page).await
    }

    /// The import and the latest export of image `id`, with how they ended and why: the
    /// owner's view of a failure, which no API response model has a field for.
    async fn image_transfers(&self, id: &ImageId) -> StoreResult<Vec<TransferRecord>> {
        self.store().image_transfers(id).await
    }

    /// The files image `id` is made of, system disk first; none for an image made by
    /// `CreateImage` (its file is made when exported).
    async fn image_files(&self, id: &ImageId) -> StoreResult<Vec<ImageFile>> {
        self.store().image_files(id).await
    }

    /// Deleted images whose files nothing reads any more, at most `limit`.
    async fn file_removals_due(&self, limit: u32) -> StoreResult<Vec<String>> {
        self.store().file_removals_due(limit).await
    }

    /// Forgets the files of `image` once their bytes are gone.
    async fn files_removed(&self, image: &str) -> StoreResult<()> {
        self.store().files_removed(image).await
    }

    /// Whether anything refers to files of `image` (see `Store::image_files_referenced`).
    async fn image_files_referenced(&self, image: &str) -> StoreResult<bool> {
        self.store().image_files_referenced(image).await
    }
}

impl RequestStore for Store {
    fn store(&self) -> &Store {
        self
    }
}
