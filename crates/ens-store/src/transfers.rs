//! Image files and the transfers that move them: what `ImportImage` and `ExportImage`
//! record, and the queue the server's transfer workers claim from.
//!
//! A transfer is one row per image and kind (the import that made the image, the latest
//! export). A running transfer is claimed for a lease by one worker; the worker renews the
//! lease while it copies and ends the transfer in the same transaction that records its
//! outcome, and only while it still holds the lease. A worker killed mid-way lets the lease
//! lapse and the next claim (on any replica) starts the copy again from the beginning, so
//! an image becomes `Available`, or an export `Exported`, only after a whole copy.

use std::time::Duration;

use ens_domain::rules::ensure_exportable;
use ens_domain::{
    AccountId, DiskDeviceMapping, ExportStatus, ImageExportInfo, ImageId, ImageOwnerAlias, ImageStatus,
    ObjectName, Page, PageRequest,
};
use time::OffsetDateTime;

use crate::engine::{Lock, Session};
use crate::images::{image_nodes, CountChanges};
use crate::rows::{corrupt, format_time, millis, parse_time, to_i64, to_u64};
use crate::{NewImage, Store, StoreError, StoreResult};

/// Longest failure reason kept (and shown to the owner).
const MAX_REASON_CHARS: usize = 256;

/// Which way a transfer copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// `ImportImage`: objects in a bucket become the image's files.
    Import,
    /// `ExportImage`: the image's system disk becomes an object in a bucket.
    Export,
}

impl TransferKind {
    /// The name records and the control API use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Import => "import",
            Self::Export => "export",
        }
    }

    fn parse(value: &str) -> StoreResult<Self> {
        match value {
            "import" => Ok(Self::Import),
            "export" => Ok(Self::Export),
            other => Err(StoreError::Corrupt(format!("transfer kind {other:?}"))),
        }
    }
}

/// A running transfer as a worker claimed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferJob {
    /// The image imported or exported.
    pub image_id: ImageId,
    /// Which way.
    pub kind: TransferKind,
    /// The account that asked for it.
    pub account: AccountId,
    /// The RequestId of the call that asked for it.
    pub request_id: String,
    /// An import's sources, one per disk (system disk first); an export's one target.
    pub objects: Vec<ObjectName>,
    /// How many times it has been claimed, this claim included: a transfer that keeps
    /// failing for a passing reason is given up after a few.
    pub attempts: u32,
}

/// One disk's file in the service's own image storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// 0 for the system disk, then the data disks in order.
    pub disk: u32,
    /// Its key in the image storage.
    pub key: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// Hex SHA-256 of its bytes, taken as they were copied in.
    pub sha256: String,
    /// The disk's virtual size in GiB, rounded up.
    pub size_gib: u64,
}

/// A transfer as recorded, for the people who asked for it: what ran, how it ended and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRecord {
    /// Which way.
    pub kind: TransferKind,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Why it failed, in words for the image's owner.
    pub reason: Option<String>,
    /// An export's `ExportedImageURL`.
    pub url: Option<String>,
    /// How many times it was claimed.
    pub attempts: u32,
    /// The objects read (an import) or written (an export).
    pub objects: Vec<ObjectName>,
    /// When it was asked for.
    pub created_at: OffsetDateTime,
    /// When it ended.
    pub finished_at: Option<OffsetDateTime>,
}

/// How a worker's attempt to record an outcome ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEnd {
    /// Recorded.
    Recorded,
    /// The worker no longer holds the transfer (its lease lapsed and another took it over,
    /// or a reset removed it): nothing was recorded, and what it copied is not referenced.
    Lost,
}

impl Store {
    /// Stores `new` (status `Creating`, on every known node) with its import from `sources`,
    /// in one transaction, under a fresh ID; returns the ID.
    pub(crate) async fn start_import(
        &self,
        new: &NewImage,
        sources: &[ObjectName],
        request_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<ImageId> {
        let created = format_time(now)?;
        let created = created.as_str();
        for _ in 0..5 {
            let mut image = new.clone();
            image.image.id = ImageId::parse(&crate::rows::new_custom_image_id()).map_err(corrupt)?;
            let template = &image;
            let outcome = self
                .write(|mut tx| async move {
                    let mut image = template.clone();
                    let nodes = tx.texts("SELECT id FROM nodes ORDER BY id", &[]).await?;
                    image.image.nodes = nodes
                        .iter()
                        .map(|node| crate::rows::node_from(node))
                        .collect::<StoreResult<_>>()?;
                    let mut counts = CountChanges::default();
                    self.insert_image(&mut *tx, &mut counts, &image).await?;
                    counts.apply(&mut *tx).await?;
                    let id = image.image.id.as_str();
                    let owner = image
                        .image
                        .owner
                        .as_ref()
                        .ok_or_else(|| StoreError::Invalid("an imported image has an owner".into()))?;
                    insert_transfer(
                        &mut *tx,
                        id,
                        TransferKind::Import,
                        owner,
                        request_id,
                        None,
                        created,
                    )
                    .await?;
                    insert_objects(&mut *tx, id, TransferKind::Import, sources).await?;
                    Ok((tx, ()))
                })
                .await;
            match outcome {
                Ok(()) => return Ok(image.image.id),
                Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Conflict("fresh image ID".into()))
    }

    /// Claims the oldest running transfer nobody holds (or whose holder's lease lapsed)
    /// for `worker` until `now + lease`.
    pub(crate) async fn claim_transfer(
        &self,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> StoreResult<Option<TransferJob>> {
        let (now_ms, until) = (millis(now)?, millis(now + lease)?);
        let sql = format!(
            "SELECT image_id, kind, account_id, attempts, request_id FROM image_transfers \
             WHERE state = 'running' AND (lease_until IS NULL OR lease_until < $1) \
             ORDER BY created_at, image_id LIMIT 1{}",
            self.dialect.lock(Lock::UpdateSkipLocked)
        );
        let sql = sql.as_str();
        // Workers poll every second on every replica: most polls find nothing, and a read
        // tells so without taking the write lock (SQLite) or a transaction (PostgreSQL).
        let mut look = self.session(crate::engine::Access::ReadOne).await?;
        let due = look
            .exists(
                "SELECT 1 FROM image_transfers WHERE state = 'running' AND (lease_until IS NULL OR lease_until < $1)",
                &[now_ms.into()],
            )
            .await?;
        drop(look);
        if !due {
            return Ok(None);
        }
        self.write(|mut tx| async move {
            let Some(mut row) = tx.row(sql, &[now_ms.into()]).await? else {
                return Ok((tx, None));
            };
            let (image, kind, account) = (row.text(0)?, row.text(1)?, row.text(2)?);
            let attempts = row.int(3)?.saturating_add(1);
            let request_id = row.text(4)?;
            tx.execute(
                "UPDATE image_transfers SET lease_owner = $1, lease_until = $2, attempts = $3 \
                 WHERE image_id = $4 AND kind = $5",
                &[
                    worker.into(),
                    until.into(),
                    attempts.into(),
                    image.as_str().into(),
                    kind.as_str().into(),
                ],
            )
            .await?;
            let objects = tx
                .rows(
                    "SELECT region, bucket, object_key FROM image_transfer_objects \
                     WHERE image_id = $1 AND kind = $2 ORDER BY disk",
                    &[image.as_str().into(), kind.as_str().into()],
                )
                .await?
                .into_iter()
                .map(|mut row| {
                    Ok(ObjectName {
                        region: row.text(0)?,
                        bucket: row.text(1)?,
                        key: row.text(2)?,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let job = TransferJob {
                image_id: ImageId::parse(&image).map_err(corrupt)?,
                kind: TransferKind::parse(&kind)?,
                account: crate::rows::account_from(&account)?,
                request_id,
                objects,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            };
            Ok((tx, Some(job)))
        })
        .await
    }

    /// Extends `worker`'s lease on a transfer to `now + lease`; `false` when it no longer
    /// holds it.
    pub(crate) async fn renew_transfer(
        &self,
        job: &TransferJob,
        worker: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> StoreResult<bool> {
        let until = millis(now + lease)?;
        self.write(|mut tx| async move {
            let renewed = tx
                .execute(
                    "UPDATE image_transfers SET lease_until = $1 \
                     WHERE image_id = $2 AND kind = $3 AND state = 'running' AND lease_owner = $4",
                    &[
                        until.into(),
                        job.image_id.as_str().into(),
                        job.kind.as_str().into(),
                        worker.into(),
                    ],
                )
                .await?;
            Ok((tx, renewed == 1))
        })
        .await
    }

    /// Ends `worker`'s import of `job.image_id` with its files: the image takes their sizes
    /// and disks, becomes `Available` and joins its owner's listings, in one transaction.
    pub(crate) async fn finish_import(
        &self,
        job: &TransferJob,
        worker: &str,
        files: &[ImageFile],
        now: OffsetDateTime,
    ) -> StoreResult<TransferEnd> {
        let finished = format_time(now)?;
        let (finished, id) = (finished.as_str(), job.image_id.as_str());
        let image_sql = format!(
            "SELECT seq, owner_id FROM images WHERE id = $1 AND status = $2{}",
            self.dialect.lock(Lock::Update)
        );
        let image_sql = image_sql.as_str();
        self.write(|mut tx| async move {
            if !held(&mut *tx, self, job, worker).await? {
                return Ok((tx, TransferEnd::Lost));
            }
            let image = tx
                .row(image_sql, &[id.into(), ImageStatus::Creating.as_str().into()])
                .await?;
            let Some(mut image) = image else {
                // The image was deleted (or reset away) while its bytes were copied: the
                // import ends without one, and its files go.
                end_transfer(&mut *tx, job, "failed", Some("the image was deleted during the import"), finished)
                    .await?;
                queue_removal(&mut *tx, id, now).await?;
                return Ok((tx, TransferEnd::Recorded));
            };
            let (seq, owner) = (image.int(0)?, image.text(1)?);
            let system_gib = files.first().map_or(0, |file| file.size_gib);
            tx.execute(
                "UPDATE images SET status = $1, size_gib = $2 WHERE seq = $3",
                &[ImageStatus::Available.as_str().into(), to_i64(system_gib, "image size")?.into(), seq.into()],
            )
            .await?;
            tx.execute("DELETE FROM image_disks WHERE image_seq = $1", &[seq.into()])
                .await?;
            tx.execute("DELETE FROM image_files WHERE image_id = $1", &[id.into()])
                .await?;
            for file in files {
                let disk = DiskDeviceMapping {
                    disk_type: if file.disk == 0 { "system" } else { "data" }.into(),
                    size_gib: file.size_gib,
                    format: "qcow2".into(),
                    image_id: id.to_owned(),
                };
                tx.execute(
                    "INSERT INTO image_disks (image_seq, position, disk_type, size_gib, format, file_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        seq.into(),
                        i64::from(file.disk).into(),
                        disk.disk_type.as_str().into(),
                        to_i64(disk.size_gib, "disk size")?.into(),
                        disk.format.as_str().into(),
                        disk.image_id.as_str().into(),
                    ],
                )
                .await?;
                tx.execute(
                    "INSERT INTO image_files (image_id, disk, object_key, byte_size, sha256) VALUES ($1, $2, $3, $4, $5)",
                    &[
                        id.into(),
                        i64::from(file.disk).into(),
                        file.key.as_str().into(),
                        to_i64(file.bytes, "file size")?.into(),
                        file.sha256.as_str().into(),
                    ],
                )
                .await?;
            }
            let mut counts = CountChanges::default();
            let nodes = image_nodes(&mut *tx, seq).await?;
            self.add_to_listings(&mut *tx, &mut counts, &owner, seq, &nodes)
                .await?;
            counts.apply(&mut *tx).await?;
            end_transfer(&mut *tx, job, "done", None, finished).await?;
            Ok((tx, TransferEnd::Recorded))
        })
        .await
    }

    /// Ends `worker`'s transfer as failed for `reason`. A failed import leaves its image
    /// `Upload_failed` with the reason as its description; a failed export leaves the
    /// image's export `ExportError`.
    pub(crate) async fn fail_transfer(
        &self,
        job: &TransferJob,
        worker: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> StoreResult<TransferEnd> {
        let finished = format_time(now)?;
        let reason: String = reason.chars().take(MAX_REASON_CHARS).collect();
        let (finished, reason) = (finished.as_str(), reason.as_str());
        self.write(|mut tx| async move {
            if !held(&mut *tx, self, job, worker).await? {
                return Ok((tx, TransferEnd::Lost));
            }
            if job.kind == TransferKind::Import {
                tx.execute(
                    "UPDATE images SET status = $1, description = $2 WHERE id = $3 AND status = $4",
                    &[
                        ImageStatus::UploadFailed.as_str().into(),
                        format!("Import failed: {reason}").as_str().into(),
                        job.image_id.as_str().into(),
                        ImageStatus::Creating.as_str().into(),
                    ],
                )
                .await?;
            }
            end_transfer(&mut *tx, job, "failed", Some(reason), finished).await?;
            Ok((tx, TransferEnd::Recorded))
        })
        .await
    }

    /// Starts an export of `owner`'s image `id` to `target` (replacing the record of the
    /// previous one), to be announced at `url`.
    pub(crate) async fn start_export(
        &self,
        owner: &AccountId,
        id: &ImageId,
        target: &ObjectName,
        url: &str,
        request_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let created = format_time(now)?;
        let created = created.as_str();
        let state_sql = format!(
            "SELECT state FROM image_transfers WHERE image_id = $1 AND kind = 'export'{}",
            self.dialect.lock(Lock::Update)
        );
        let state_sql = state_sql.as_str();
        self.write(|mut tx| async move {
            let (_, image) = self.owned_image(&mut *tx, owner, id, Some(Lock::Update)).await?;
            let state = tx.row(state_sql, &[id.as_str().into()]).await?;
            let exporting = match state {
                Some(mut row) => row.text(0)? == "running",
                None => false,
            };
            ensure_exportable(&image, exporting)?;
            let key = id.as_str();
            tx.execute(
                "DELETE FROM image_transfer_objects WHERE image_id = $1 AND kind = 'export'",
                &[key.into()],
            )
            .await?;
            tx.execute(
                "DELETE FROM image_transfers WHERE image_id = $1 AND kind = 'export'",
                &[key.into()],
            )
            .await?;
            insert_transfer(
                &mut *tx,
                key,
                TransferKind::Export,
                owner,
                request_id,
                Some(url),
                created,
            )
            .await?;
            insert_objects(&mut *tx, key, TransferKind::Export, std::slice::from_ref(target)).await?;
            Ok((tx, ()))
        })
        .await
    }

    /// Ends `worker`'s export: the object is complete in its bucket.
    pub(crate) async fn finish_export(
        &self,
        job: &TransferJob,
        worker: &str,
        now: OffsetDateTime,
    ) -> StoreResult<TransferEnd> {
        let finished = format_time(now)?;
        let finished = finished.as_str();
        self.write(|mut tx| async move {
            if !held(&mut *tx, self, job, worker).await? {
                return Ok((tx, TransferEnd::Lost));
            }
            end_transfer(&mut *tx, job, "done", None, finished).await?;
            Ok((tx, TransferEnd::Recorded))
        })
        .await
    }

    /// The export status of `owner`'s image `id`.
    pub(crate) async fn export_status(&self, owner: &AccountId, id: &ImageId) -> StoreResult<ExportStatus> {
        let mut tx = self.session(crate::engine::Access::Read).await?;
        self.owned_image(&mut *tx, owner, id, None).await?;
        let state = tx
            .texts(
                "SELECT state FROM image_transfers WHERE image_id = $1 AND kind = 'export'",
                &[id.as_str().into()],
            )
            .await?;
        tx.commit().await?;
        export_status_of(state.first().map(String::as_str))
    }

    /// `DescribeExportImageInfo`: `owner`'s custom images, oldest first, each with its export.
    pub(crate) async fn export_infos(
        &self,
        owner: &AccountId,
        image_id: Option<&ImageId>,
        image_name: Option<&str>,
        page: PageRequest,
    ) -> StoreResult<Page<ImageExportInfo>> {
        let from = "FROM images i LEFT JOIN image_transfers t ON t.image_id = i.id AND t.kind = 'export' \
                    WHERE i.owner_id = $1 AND ($2 IS NULL OR i.id = $2) AND ($3 IS NULL OR i.name = $3)";
        let filters = [
            owner.as_str().into(),
            image_id.map(ImageId::as_str).into(),
            image_name.into(),
        ];
        let mut params = filters.to_vec();
        params.push(to_i64(page.limit(), "limit")?.into());
        params.push(to_i64(page.offset(), "offset")?.into());
        // One statement, so one round trip and one snapshot: the count joined to the page,
        // a row of NULLs beside it when the page is empty.
        let sql = format!(
            "SELECT c.total, p.id, p.name, p.architecture, p.platform, p.creation_time, p.state, p.url \
             FROM (SELECT COUNT(*) AS total {from}) c LEFT JOIN ( \
               SELECT i.seq, i.id, i.name, i.architecture, i.platform, i.creation_time, t.state, t.url \
               {from} ORDER BY i.seq LIMIT $4 OFFSET $5) p ON true \
             ORDER BY p.seq"
        );
        let mut tx = self.session(crate::engine::Access::ReadOne).await?;
        let rows = tx.rows(&sql, &params).await?;
        let mut total = 0;
        let mut items = Vec::with_capacity(rows.len());
        for mut row in rows {
            total = to_u64(row.int(0)?, "count")?;
            let Some(image_id) = row.maybe_text(1)? else {
                continue;
            };
            let state = row.maybe_text(6)?;
            items.push(ImageExportInfo {
                image_id: ImageId::parse(&image_id).map_err(corrupt)?,
                image_name: row.text(2)?,
                alias: ImageOwnerAlias::SelfOwned,
                architecture: row.text(3)?,
                platform: row.text(4)?,
                creation_time: parse_time(&row.text(5)?)?,
                status: export_status_of(state.as_deref())?,
                url: row.maybe_text(7)?,
            });
        }
        Ok(Page {
            items,
            total_count: total,
            request: page,
        })
    }

    /// The import and the latest export of image `id`, import first.
    pub(crate) async fn image_transfers(&self, id: &ImageId) -> StoreResult<Vec<TransferRecord>> {
        let mut tx = self.session(crate::engine::Access::Read).await?;
        let rows = tx
            .rows(
                "SELECT kind, state, reason, url, attempts, created_at, finished_at FROM image_transfers \
                 WHERE image_id = $1 ORDER BY kind DESC",
                &[id.as_str().into()],
            )
            .await?;
        let objects = tx
            .rows(
                "SELECT kind, region, bucket, object_key FROM image_transfer_objects WHERE image_id = $1 \
                 ORDER BY kind, disk",
                &[id.as_str().into()],
            )
            .await?;
        tx.commit().await?;
        let mut named: Vec<(TransferKind, ObjectName)> = Vec::with_capacity(objects.len());
        for mut row in objects {
            named.push((
                TransferKind::parse(&row.text(0)?)?,
                ObjectName {
                    region: row.text(1)?,
                    bucket: row.text(2)?,
                    key: row.text(3)?,
                },
            ));
        }
        rows.into_iter()
            .map(|mut row| {
                let kind = TransferKind::parse(&row.text(0)?)?;
                Ok(TransferRecord {
                    kind,
                    state: row.text(1)?,
                    reason: row.maybe_text(2)?,
                    url: row.maybe_text(3)?,
                    attempts: u32::try_from(row.int(4)?).map_err(corrupt)?,
                    objects: named
                        .iter()
                        .filter(|(of, _)| *of == kind)
                        .map(|(_, object)| object.clone())
                        .collect(),
                    created_at: parse_time(&row.text(5)?)?,
                    finished_at: row.maybe_text(6)?.as_deref().map(parse_time).transpose()?,
                })
            })
            .collect()
    }

    /// The files of image `id`, by disk.
    pub(crate) async fn image_files(&self, id: &ImageId) -> StoreResult<Vec<ImageFile>> {
        let mut tx = self.session(crate::engine::Access::ReadOne).await?;
        let rows = tx
            .rows(
                "SELECT f.disk, f.object_key, f.byte_size, f.sha256, COALESCE(d.size_gib, 0) \
                 FROM image_files f LEFT JOIN images i ON i.id = f.image_id \
                 LEFT JOIN image_disks d ON d.image_seq = i.seq AND d.position = f.disk \
                 WHERE f.image_id = $1 ORDER BY f.disk",
                &[id.as_str().into()],
            )
            .await?;
        rows.into_iter()
            .map(|mut row| {
                Ok(ImageFile {
                    disk: u32::try_from(row.int(0)?).map_err(corrupt)?,
                    key: row.text(1)?,
                    bytes: to_u64(row.int(2)?, "file size")?,
                    sha256: row.text(3)?,
                    size_gib: to_u64(row.int(4)?, "disk size")?,
                })
            })
            .collect()
    }

    /// Images whose files are queued for removal and no longer read by a running transfer,
    /// oldest first, at most `limit`.
    pub(crate) async fn file_removals_due(&self, limit: u32) -> StoreResult<Vec<String>> {
        let mut tx = self.session(crate::engine::Access::ReadOne).await?;
        tx.texts(
            "SELECT r.image_id FROM image_file_removals r WHERE NOT EXISTS (SELECT 1 FROM image_transfers t \
             WHERE t.image_id = r.image_id AND t.state = 'running') ORDER BY r.queued_at, r.image_id LIMIT $1",
            &[i64::from(limit).into()],
        )
        .await
    }

    /// Forgets the files of `image` once their bytes are gone.
    pub(crate) async fn files_removed(&self, image: &str) -> StoreResult<()> {
        self.write(|mut tx| async move {
            tx.execute("DELETE FROM image_files WHERE image_id = $1", &[image.into()])
                .await?;
            tx.execute(
                "DELETE FROM image_file_removals WHERE image_id = $1",
                &[image.into()],
            )
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    /// Whether anything still refers to files of image `image`: its file records, a queued
    /// removal or a running transfer. Folders in the image storage that nothing refers to are
    /// leftovers (a reset, a transfer killed mid-way) and may be removed.
    pub(crate) async fn image_files_referenced(&self, image: &str) -> StoreResult<bool> {
        let mut tx = self.session(crate::engine::Access::ReadOne).await?;
        tx.exists(
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM image_files WHERE image_id = $1) \
             OR EXISTS (SELECT 1 FROM image_file_removals WHERE image_id = $1) \
             OR EXISTS (SELECT 1 FROM image_transfers WHERE image_id = $1 AND state = 'running')",
            &[image.into()],
        )
        .await
    }
}

/// Queues the files of image `id` for removal (in the transaction that deletes it).
pub(crate) async fn queue_removal(tx: &mut dyn Session, id: &str, now: OffsetDateTime) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO image_file_removals (image_id, queued_at) SELECT $1, $2 \
         WHERE EXISTS (SELECT 1 FROM image_files WHERE image_id = $1) ON CONFLICT (image_id) DO NOTHING",
        &[id.into(), millis(now)?.into()],
    )
    .await?;
    // A finished transfer of a deleted image is history nobody can ask for any more.
    tx.execute(
        "DELETE FROM image_transfer_objects WHERE image_id = $1 AND EXISTS (SELECT 1 FROM image_transfers t \
         WHERE t.image_id = $1 AND t.kind = image_transfer_objects.kind AND t.state <> 'running')",
        &[id.into()],
    )
    .await?;
    tx.execute(
        "DELETE FROM image_transfers WHERE image_id = $1 AND state <> 'running'",
        &[id.into()],
    )
    .await?;
    Ok(())
}

async fn insert_transfer(
    tx: &mut dyn Session,
    image: &str,
    kind: TransferKind,
    account: &AccountId,
    request_id: &str,
    url: Option<&str>,
    created: &str,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO image_transfers (image_id, kind, account_id, request_id, state, url, created_at) \
         VALUES ($1, $2, $3, $4, 'running', $5, $6)",
        &[
            image.into(),
            kind.as_str().into(),
            account.as_str().into(),
            request_id.into(),
            url.into(),
            created.into(),
        ],
    )
    .await?;
    Ok(())
}

async fn insert_objects(
    tx: &mut dyn Session,
    image: &str,
    kind: TransferKind,
    objects: &[ObjectName],
) -> StoreResult<()> {
    for (disk, object) in objects.iter().enumerate() {
        tx.execute(
            "INSERT INTO image_transfer_objects (image_id, kind, disk, region, bucket, object_key) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                image.into(),
                kind.as_str().into(),
                to_i64(disk as u64, "disk")?.into(),
                object.region.as_str().into(),
                object.bucket.as_str().into(),
                object.key.as_str().into(),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Whether `worker` still holds `job` (locking the row until the transaction ends).
async fn held(tx: &mut dyn Session, store: &Store, job: &TransferJob, worker: &str) -> StoreResult<bool> {
    let sql = format!(
        "SELECT 1 FROM image_transfers WHERE image_id = $1 AND kind = $2 AND state = 'running' \
         AND lease_owner = $3{}",
        store.dialect.lock(Lock::Update)
    );
    tx.exists(
        &sql,
        &[
            job.image_id.as_str().into(),
            job.kind.as_str().into(),
            worker.into(),
        ],
    )
    .await
}

async fn end_transfer(
    tx: &mut dyn Session,
    job: &TransferJob,
    state: &str,
    reason: Option<&str>,
    finished: &str,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE image_transfers SET state = $1, reason = $2, finished_at = $3, lease_owner = NULL, \
         lease_until = NULL WHERE image_id = $4 AND kind = $5",
        &[
            state.into(),
            reason.into(),
            finished.into(),
            job.image_id.as_str().into(),
            job.kind.as_str().into(),
        ],
    )
    .await?;
    Ok(())
}

fn export_status_of(state: Option<&str>) -> StoreResult<ExportStatus> {
    match state {
        None => Ok(ExportStatus::Unexported),
        Some("running") => Ok(ExportStatus::Exporting),
        Some("done") => Ok(ExportStatus::Exported),
        Some("failed") => Ok(ExportStatus::ExportError),
        Some(other) => Err(StoreError::Corrupt(format!("transfer state {other:?}"))),
    }
}
