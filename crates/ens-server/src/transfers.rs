//! The transfer worker: copies the bytes `ImportImage` and `ExportImage` asked for, and
//! removes the files nothing refers to any more.
//!
//! The calls themselves only record a transfer and answer at once; each replica runs one
//! worker that claims recorded transfers from the store for a lease, renews the lease while
//! it copies, and records the outcome in the transaction that ends the transfer. A replica
//! killed mid-copy stops renewing; once its lease lapses any replica, itself after a
//! restart included, starts that copy again from the beginning. Failures of the storage
//! (network, a full disk) are tried again the same way, a few times; failures of the content
//! (no such object, not a qcow2 image, truncated) end the transfer at once with a reason the
//! image's owner can read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ens_domain::ObjectName;
use ens_objects::{Buckets, ImportLimits, TransferError};
use ens_policy::image_arn;
use ens_protocol::Action;
use ens_store::{AuditEntry, ImageFile, RequestStore, TransferEnd, TransferJob, TransferKind};
use tokio::sync::Notify;

use crate::AppState;

/// How transfers run; the defaults suit production, tests shorten the lease.
#[derive(Debug, Clone)]
pub struct TransferSettings {
    /// How long a claim holds a transfer without renewal; a killed replica's transfers wait
    /// this long before another takes them over.
    pub lease: Duration,
    /// How often an idle worker looks for transfers other replicas recorded (its own
    /// replica's calls wake it at once).
    pub poll: Duration,
    /// Claims of one transfer before a storage failure ends it.
    pub max_attempts: u32,
    /// Transfers one server runs at once.
    pub concurrent: usize,
    /// Bounds on imported objects.
    pub import_limits: ImportLimits,
    /// How often image files nothing refers to are looked for and removed.
    pub sweep_every: Duration,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(1),
            max_attempts: 5,
            concurrent: 4,
            import_limits: ImportLimits::default(),
            sweep_every: Duration::from_secs(600),
        }
    }
}

/// Object storage and the worker's wake-up call, shared by the handlers and the worker.
pub struct Transfers {
    /// The operator's buckets and the image files.
    pub buckets: Buckets,
    /// How transfers run.
    pub settings: TransferSettings,
    /// Rung when this replica records a transfer, so its worker starts without waiting
    /// for its next poll.
    wake: Notify,
    /// This worker's name in leases: unique per process, so a restarted server does not
    /// mistake its predecessor's claims for its own.
    worker: String,
}

impl std::fmt::Debug for Transfers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfers")
            .field("settings", &self.settings)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl Transfers {
    /// Transfers over `buckets`.
    #[must_use]
    pub fn new(buckets: Buckets, settings: TransferSettings) -> Self {
        Self {
            buckets,
            settings,
            wake: Notify::new(),
            worker: format!("transfer-{}", uuid::Uuid::new_v4()),
        }
    }

    /// Tells the worker a transfer was recorded.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Most deleted images' files removed per sweep round.
const REMOVALS_PER_ROUND: u32 = 100;

/// Runs transfers as long as the server serves, up to `concurrent` at once (so a long import
/// does not hold up a small export), and sweeps files nothing refers to at start and every
/// `sweep_every`.
pub(crate) async fn run(state: AppState) {
    let Some(transfers) = state.transfers.clone() else {
        return;
    };
    let store = Arc::clone(&state.store);
    let mut running = tokio::task::JoinSet::new();
    let mut last_sweep: Option<tokio::time::Instant> = None;
    loop {
        if last_sweep.is_none_or(|at| at.elapsed() >= transfers.settings.sweep_every) {
            last_sweep = Some(tokio::time::Instant::now());
            sweep(store.as_ref(), &transfers).await;
        }
        while running.len() < transfers.settings.concurrent {
            let claimed = store
                .claim_transfer(&transfers.worker, (state.clock)(), transfers.settings.lease)
                .await;
            match claimed {
                Ok(Some(job)) => {
                    let (state, transfers) = (state.clone(), Arc::clone(&transfers));
                    running.spawn(async move { run_job(&state, &transfers, &job).await });
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, "claiming a transfer failed");
                    break;
                }
            }
        }
        // Deleted images' files go as soon as nothing reads them.
        remove_deleted(store.as_ref(), &transfers).await;
        tokio::select! {
            () = transfers.wake.notified() => {}
            () = tokio::time::sleep(transfers.settings.poll) => {}
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
}

/// Runs one claimed transfer while renewing its lease; stops copying as soon as the lease
/// is lost (another replica took the transfer over, or a reset removed it).
async fn run_job(state: &AppState, transfers: &Transfers, job: &TransferJob) {
    let store = state.store.as_ref();
    let renew = async {
        let mut ticker = tokio::time::interval(transfers.settings.lease / 3);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            match store
                .renew_transfer(job, &transfers.worker, (state.clock)(), transfers.settings.lease)
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, image = %job.image_id, "renewing a transfer's lease failed")
                }
            }
        }
    };
    let copy = async {
        match job.kind {
            TransferKind::Import => import(state, transfers, job).await,
            TransferKind::Export => export(state, transfers, job).await,
        }
    };
    tokio::select! {
        () = copy => {}
        () = renew => {
            tracing::warn!(image = %job.image_id, kind = ?job.kind, "transfer taken over by another worker; copy abandoned");
        }
    }
}

/// Copies every disk of an import into the image files, then records them; on a failure
/// of the content, removes what was copied and records the reason.
async fn import(state: &AppState, transfers: &Transfers, job: &TransferJob) {
    let image_files = transfers.buckets.image_files();
    // A claim after the first starts from nothing: what an earlier holder copied (a whole
    // disk, or an upload it was killed in) goes first.
    if job.attempts > 1 {
        if let Err(error) = image_files.discard(job.image_id.as_str()).await {
            tracing::warn!(%error, image = %job.image_id, "clearing an earlier import's bytes failed; it will be tried again");
            return;
        }
    }
    let mut files = Vec::with_capacity(job.objects.len());
    for (disk, object) in job.objects.iter().enumerate() {
        let copied = match transfers.buckets.resolve(&object.region, &object.bucket) {
            Ok(bucket) => {
                image_files
                    .import(
                        &bucket,
                        &object.key,
                        job.image_id.as_str(),
                        disk,
                        &transfers.settings.import_limits,
                    )
                    .await
            }
            Err(error) => Err(TransferError::Bucket(error)),
        };
        match copied {
            Ok(file) => files.push(ImageFile {
                disk: u32::try_from(disk).unwrap_or(u32::MAX),
                key: file.key,
                bytes: file.bytes,
                sha256: file.sha256,
                size_gib: file.size_gib,
            }),
            Err(error) => {
                let reason = describe_failure(job.objects.len(), disk, object, &error);
                if error.is_retryable() && job.attempts < transfers.settings.max_attempts {
                    // Left to lapse: the lease is the pause before the next attempt.
                    tracing::warn!(image = %job.image_id, attempt = job.attempts, %reason, "import failed; it will be tried again");
                    return;
                }
                if let Err(error) = image_files.discard(job.image_id.as_str()).await {
                    tracing::warn!(%error, image = %job.image_id, "removing a failed import's bytes failed; the sweep will");
                }
                record(state, transfers, job, Outcome::Failed(&reason)).await;
                return;
            }
        }
    }
    record(state, transfers, job, Outcome::Imported(&files)).await;
}

/// Writes an image's system disk to the export's object: the imported file, or for an
/// image made by `CreateImage` an empty qcow2 of its size.
async fn export(state: &AppState, transfers: &Transfers, job: &TransferJob) {
    let Some(target) = job.objects.first() else {
        record(
            state,
            transfers,
            job,
            Outcome::Failed("the export names no object"),
        )
        .await;
        return;
    };
    let source = match export_source(state, job).await {
        Ok(Some(source)) => source,
        Ok(None) => {
            record(
                state,
                transfers,
                job,
                Outcome::Failed("the image was deleted before its export"),
            )
            .await;
            return;
        }
        Err(error) => {
            // The lease lapses and the export runs again.
            tracing::warn!(%error, image = %job.image_id, "reading the image to export failed");
            return;
        }
    };
    let written = match transfers.buckets.resolve(&target.region, &target.bucket) {
        Ok(bucket) => {
            let image_files = transfers.buckets.image_files();
            match source {
                ExportSource::File(key) => image_files.export(&key, &bucket, &target.key).await,
                ExportSource::Sparse(bytes) => image_files.export_bytes(bytes, &bucket, &target.key).await,
                ExportSource::Unexportable(reason) => {
                    record(state, transfers, job, Outcome::Failed(&reason)).await;
                    return;
                }
            }
        }
        Err(error) => Err(TransferError::Bucket(error)),
    };
    match written {
        Ok(bytes) => {
            tracing::info!(image = %job.image_id, bucket = %target.bucket, key = %target.key, bytes, "image exported");
            record(state, transfers, job, Outcome::Exported).await;
        }
        Err(error) if error.is_retryable() && job.attempts < transfers.settings.max_attempts => {
            tracing::warn!(image = %job.image_id, attempt = job.attempts, %error, "export failed; it will be tried again");
        }
        Err(error) => record(state, transfers, job, Outcome::Failed(&error.to_string())).await,
    }
}

/// What an export writes.
enum ExportSource {
    /// The key of the imported system disk in the image files.
    File(String),
    /// An empty qcow2 of the system disk's size, for an image without files.
    Sparse(Bytes),
    /// Why the image has no file to write.
    Unexportable(String),
}

/// The bytes an export writes, or `None` when the image no longer exists.
async fn export_source(
    state: &AppState,
    job: &TransferJob,
) -> Result<Option<ExportSource>, ens_store::StoreError> {
    let files = state.store.image_files(&job.image_id).await?;
    if let Some(system) = files.into_iter().next() {
        return Ok(Some(ExportSource::File(system.key)));
    }
    let Some(view) = state.store.visible_image(&job.account, &job.image_id).await? else {
        return Ok(None);
    };
    let image = view.image;
    let system_gib = image
        .disk_device_mappings
        .iter()
        .find(|disk| disk.disk_type.eq_ignore_ascii_case("system"))
        .map_or(image.size_gib, |disk| disk.size_gib)
        .max(1);
    Ok(Some(
        match ens_objects::qcow2::sparse_image(system_gib.saturating_mul(1 << 30)) {
            Ok(bytes) => ExportSource::Sparse(Bytes::from(bytes)),
            Err(error) => {
                ExportSource::Unexportable(format!("a disk of {system_gib} GiB has no qcow2 form: {error}"))
            }
        },
    ))
}

/// What a transfer ended with.
enum Outcome<'a> {
    Imported(&'a [ImageFile]),
    Exported,
    Failed(&'a str),
}

/// Records `outcome` if this worker still holds the transfer.
async fn record(state: &AppState, transfers: &Transfers, job: &TransferJob, outcome: Outcome<'_>) {
    let store = state.store.as_ref();
    let (worker, now) = (transfers.worker.as_str(), (state.clock)());
    let failed = matches!(outcome, Outcome::Failed(_));
    let recorded = match outcome {
        Outcome::Imported(files) => store.finish_import(job, worker, files, now).await,
        Outcome::Exported => store.finish_export(job, worker, now).await,
        Outcome::Failed(reason) => {
            tracing::info!(image = %job.image_id, kind = ?job.kind, %reason, "transfer failed");
            store.fail_transfer(job, worker, reason, now).await
        }
    };
    match recorded {
        Ok(TransferEnd::Recorded) => audit(state, job, failed).await,
        Ok(TransferEnd::Lost) => {
            tracing::warn!(image = %job.image_id, kind = ?job.kind, "transfer ended elsewhere; outcome not recorded");
        }
        // The lease lapses and the transfer runs again.
        Err(error) => tracing::warn!(%error, image = %job.image_id, "recording a transfer's outcome failed"),
    }
}

/// Outcome of a transfer's end in the audit: the call was audited when it was answered;
/// this record, under the call's RequestId, says how the copy ended.
const TRANSFER_FAILED: &str = "TransferFailed";

/// Audits the end of `job` (see [`TRANSFER_FAILED`]); the reason itself is in the
/// transfer's record and the log, not the audit.
async fn audit(state: &AppState, job: &TransferJob, failed: bool) {
    let action = match job.kind {
        TransferKind::Import => Action::ImportImage,
        TransferKind::Export => Action::ExportImage,
    };
    let entry = AuditEntry {
        at: (state.clock)(),
        request_id: job.request_id.clone(),
        account: Some(job.account.clone()),
        user: None,
        access_key_id: None,
        action: action.as_str().to_owned(),
        resource: image_arn(None, job.account.as_str(), job.image_id.as_str()),
        source_ip: String::new(),
        outcome: if failed { TRANSFER_FAILED } else { "Success" }.to_owned(),
        repeats: 1,
    };
    if let Err(error) = state.store.record_audits(&[entry]).await {
        tracing::warn!(%error, image = %job.image_id, "auditing a transfer's end failed");
    }
}

/// The owner's reason for a failed disk: which object, when there are several, and why.
fn describe_failure(disks: usize, disk: usize, object: &ObjectName, error: &TransferError) -> String {
    if disks > 1 {
        format!("disk {disk} ({}/{}): {error}", object.bucket, object.key)
    } else {
        error.to_string()
    }
}

/// Removes the files of deleted images that no transfer reads any more.
async fn remove_deleted(store: &dyn RequestStore, transfers: &Transfers) {
    let due = match store.file_removals_due(REMOVALS_PER_ROUND).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "listing image files to remove failed");
            return;
        }
    };
    for image in due {
        match transfers.buckets.image_files().discard(&image).await {
            Ok(()) => {
                if let Err(error) = store.files_removed(&image).await {
                    tracing::warn!(%error, %image, "recording removed image files failed");
                }
            }
            Err(error) => tracing::warn!(%error, %image, "removing a deleted image's files failed"),
        }
    }
}

/// Removes deleted images' files, then every image folder nothing refers to: leftovers of
/// resets, restores and copies killed mid-way.
async fn sweep(store: &dyn RequestStore, transfers: &Transfers) {
    remove_deleted(store, transfers).await;
    let image_files = transfers.buckets.image_files();
    let folders = match image_files.image_ids().await {
        Ok(folders) => folders,
        Err(error) => {
            tracing::warn!(%error, "listing image files failed");
            return;
        }
    };
    let mut removed = 0_u64;
    for image in folders {
        match store.image_files_referenced(&image).await {
            Ok(true) => {}
            Ok(false) => match image_files.discard(&image).await {
                Ok(()) => removed += 1,
                Err(error) => tracing::warn!(%error, %image, "removing unreferenced image files failed"),
            },
            Err(error) => {
                tracing::warn!(%error, "checking image files failed");
                return;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "image files nothing referred to were removed");
    }
}
