//! The read model: what the common reads need, kept in memory so that they cost no
//! statement: the DescribeImages listings, each account's DescribeSelfImages set, the public
//! images DescribeImageInfos lists, the shares of each account's images, access keys and
//! RAM users' policies.
//!
//! Never stale, by construction:
//! - every write session is wrapped in [`Tracked`], which learns what the transaction
//!   changed (a scope, or, for anything it cannot place, everything) and, once the commit
//!   succeeded and before the write is acknowledged, drops what the model held of it;
//! - a load records a [`Ticket`] before it reads and installs its result only if nothing it
//!   covers was dropped meanwhile, so a load that raced a commit never installs the state
//!   from before it;
//! - other processes' writes arrive through a feed: on SQLite, a file beside the database
//!   where every committing process appends its origin (checked with one `stat` per read);
//!   on PostgreSQL, a notification sent in the writing transaction, so delivered only if it
//!   commits, and before a read answers the replica waits for a marker of its own (see
//!   [`Markers`]). While the PostgreSQL listener is down the model is not used at all, and
//!   it starts empty when the listener is back (notifications may have been missed).
//!
//! Memory is bounded: listings hold at most [`MAX_HELD_IMAGES`] images together; a listing
//! larger than half of that is never held, and is read from the tables instead.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use ens_domain::{AccessKeyId, Image};

use crate::engine::{Param, Row, Session};
use crate::rows::SYSTEM_SCOPE;
use crate::{StoreResult, StoredAccessKey};

/// The PostgreSQL notification channel changes are announced on.
const CHANNEL: &str = "ens_images_changes";

/// How far the request running in a task knows the model to be current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Freshness {
    /// Nothing checked yet.
    Unchecked,
    /// The model of `origin` holds every change committed before the request arrived once
    /// its listener has received `marker` (see [`Markers`]), which is not known yet: taken
    /// when a read first looked at the model without waiting ([`ReadModel::key_to_confirm`]).
    Since { origin: u64, marker: u64 },
    /// A read found every change committed before the request arrived taken in.
    Current,
}

tokio::task_local! {
    static REQUEST_FRESHNESS: Cell<Freshness>;
}

/// Runs `request` (one API call) so that its reads share one freshness check: once one of
/// them has every change committed before the request arrived (a marker, see [`Markers`], or
/// a look at the SQLite changes file), so have the others, which then check nothing.
pub async fn as_one_request<F: std::future::Future>(request: F) -> F::Output {
    REQUEST_FRESHNESS
        .scope(Cell::new(Freshness::Unchecked), request)
        .await
}

/// The request's freshness; `Unchecked` outside a request scope.
fn request_freshness() -> Freshness {
    REQUEST_FRESHNESS
        .try_with(Cell::get)
        .unwrap_or(Freshness::Unchecked)
}

fn set_request_freshness(freshness: Freshness) {
    // Nothing to record outside a request scope: each read then checks for itself.
    let _ = REQUEST_FRESHNESS.try_with(|cell| cell.set(freshness));
}

/// Longest a read waits for its marker (see [`Markers`]) before it goes to the store.
const MARKER_PATIENCE: Duration = Duration::from_secs(1);

/// Most images all held listings hold together (an image held by two listings counts twice).
pub(crate) const MAX_HELD_IMAGES: usize = 400_000;

/// Most access keys held, and most users whose policies are held; past it the set is
/// dropped whole and filled again as they are used.
const MAX_HELD_KEYS: usize = 100_000;

/// Most scopes whose version is tracked; past it every scope is dropped at once.
const MAX_TRACKED_SCOPES: usize = 1_000_000;

/// Size past which the SQLite changes file is replaced by an empty one.
const MAX_CHANGES_FILE_BYTES: u64 = 1 << 20;

/// Largest notification payload PostgreSQL takes is 8000 bytes; a longer list of scopes is
/// announced as a change of everything.
const MAX_PAYLOAD_BYTES: usize = 7_000;

/// What a committed transaction changed, as far as the read model is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// What is held of one scope (`system` or an account ID): its listings' members or the
    /// images they show, or, for an account, the shares of its images.
    Scope(String),
    /// Anything else the model holds may have changed: drop it all.
    Everything,
}

/// One listing as DescribeImages shows it: its images in order, each with its first node,
/// with what finds an image by ID, name or snapshot without a scan (the filters
/// DescribeImages takes).
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) images: Vec<Arc<Image>>,
    /// Positions by the hash of an image's ID, name or snapshot ID (tagged apart), in order;
    /// a hash only narrows the candidates, each of which is compared in full.
    positions: HashMap<u64, Vec<usize>>,
    /// Hashes with keys of this listing's own, so that nobody can choose names that collide.
    hasher: std::collections::hash_map::RandomState,
}

/// Which field of an image a [`Listing`] finds it by.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    Id,
    Name,
    Snapshot,
}

impl Listing {
    /// A listing of `images`, in that order.
    pub(crate) fn new(images: Vec<Arc<Image>>) -> Self {
        let hasher = std::collections::hash_map::RandomState::new();
        let mut positions: HashMap<u64, Vec<usize>> = HashMap::new();
        for (position, image) in images.iter().enumerate() {
            let mut add = |field, value: &str| {
                positions
                    .entry(Self::hash(&hasher, field, value))
                    .or_default()
                    .push(position);
            };
            add(Field::Id, image.id.as_str());
            add(Field::Name, &image.name);
            if let Some(snapshot) = &image.snapshot_id {
                add(Field::Snapshot, snapshot);
            }
        }
        Self {
            images,
            positions,
            hasher,
        }
    }

    fn hash(hasher: &std::collections::hash_map::RandomState, field: Field, value: &str) -> u64 {
        use std::hash::BuildHasher;
        hasher.hash_one((field as u8, value))
    }

    /// The images whose `field` may be `value`, in listing order (the caller compares).
    pub(crate) fn candidates(&self, field: Field, value: &str) -> impl Iterator<Item = &Arc<Image>> {
        self.positions
            .get(&Self::hash(&self.hasher, field, value))
            .into_iter()
            .flatten()
            .filter_map(|position| self.images.get(*position))
    }
}

/// What [`ReadModel::install_listing`] and [`ReadModel::install_key`] compare to tell whether
/// what a load read may be stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    epoch: u64,
    version: u64,
}

#[derive(Default)]
struct Held {
    /// Bumped when everything is dropped.
    epoch: u64,
    /// Bumped per scope when that scope's listings are dropped.
    versions: HashMap<String, u64>,
    /// Scope, then a view's key (a node ID, `''` for every node, or a view beside the
    /// listings: `crate::images::View`), to what it holds.
    listings: HashMap<String, HashMap<String, Arc<Listing>>>,
    /// Images the listings hold together.
    images: usize,
    keys: HashMap<AccessKeyId, StoredAccessKey>,
    /// The policy documents attached to a RAM user, by account and user name.
    policies: HashMap<(String, String), Arc<Vec<String>>>,
    /// The shares of an account's images (scope: the owner), by image ID.
    shares: HashMap<String, Arc<SharesOf>>,
    /// Every known node (scope `system`: only the catalog load adds nodes, and it rewrites
    /// the public images too), for the `EnsRegionId` check of each filtered DescribeImages.
    nodes: Option<Arc<HashSet<String>>>,
}

/// The shares of one account's images, by image ID, each image's in DescribeImageSharePermission
/// order (oldest first, then by account).
pub(crate) type SharesOf = HashMap<String, Vec<crate::ImageShare>>;

impl Held {
    fn ticket(&self, scope: Option<&str>) -> Ticket {
        Ticket {
            epoch: self.epoch,
            version: scope
                .and_then(|scope| self.versions.get(scope))
                .copied()
                .unwrap_or(0),
        }
    }

    fn drop_scope(&mut self, scope: &str) {
        if self.versions.len() >= MAX_TRACKED_SCOPES && !self.versions.contains_key(scope) {
            self.drop_everything();
            return;
        }
        *self.versions.entry(scope.to_owned()).or_insert(0) += 1;
        self.shares.remove(scope);
        if scope == SYSTEM_SCOPE {
            self.nodes = None;
        }
        if let Some(listings) = self.listings.remove(scope) {
            let held: usize = listings.values().map(|listing| listing.images.len()).sum();
            self.images = self.images.saturating_sub(held);
        }
    }

    fn drop_everything(&mut self) {
        // Versions restart with the new epoch: tickets compare both.
        *self = Self {
            epoch: self.epoch + 1,
            ..Self::default()
        };
    }
}

/// Where other processes' changes come from.
enum Feed {
    /// SQLite: the changes file every committing process appends its origin to.
    File(ChangesFile),
    /// PostgreSQL: notifications, read by a listener task (see [`Markers`]).
    Postgres(Markers),
}

/// How a PostgreSQL replica knows it has every change committed before a read began:
/// PostgreSQL delivers notifications in commit order, so once a listener receives a marker
/// of its own, sent after the read began, it has received every change committed before
/// that. Markers are numbered in the order their sending begins, so any marker numbered
/// above the last one begun when the read began will do, whichever arrives first.
///
/// Most markers ride on a statement the replica sends anyway: each batch of nonce claims
/// carries one ([`ReadModel::statement_marker`]), and a request that looked at the model
/// before its claim ([`ReadModel::key_to_confirm`]) waits for that one. Reads that find no
/// such marker on its way wake a sender of markers alone; reads waiting at once share one.
struct Markers {
    /// Whether the listener listens; the model is unused otherwise.
    live: AtomicBool,
    /// The last marker whose sending has begun.
    started: AtomicU64,
    /// The highest marker a read waits for.
    wanted: AtomicU64,
    /// The highest marker of this origin the listener has received.
    received: tokio::sync::watch::Sender<u64>,
    /// Wakes the marker sender.
    wake: Arc<tokio::sync::Notify>,
}

/// The model; one per [`crate::Store`], shared by its clones.
pub(crate) struct ReadModel {
    held: RwLock<Held>,
    /// Identifies this process's store in the feed, so that its own changes, already
    /// applied at commit, are not applied twice.
    origin: u64,
    feed: Feed,
    /// One load at a time: concurrent requests missing the same listing wait for the first
    /// load instead of each reading it.
    loading: tokio::sync::Mutex<()>,
    /// The PostgreSQL listener task, stopped with the store.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Set by [`crate::Store::read_tables_only`]: the model answers nothing.
    bypassed: AtomicBool,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl ReadModel {
    /// A model for a SQLite store at `database` (the changes file is created beside it).
    pub(crate) fn for_sqlite(database: &Path) -> Self {
        let mut path = database.as_os_str().to_owned();
        path.push(".changes");
        Self::with_feed(Feed::File(ChangesFile::new(PathBuf::from(path))))
    }

    /// A model for a PostgreSQL store: unused until [`Self::listen`] listens.
    pub(crate) fn for_postgres() -> Self {
        Self::with_feed(Feed::Postgres(Markers {
            live: AtomicBool::new(false),
            started: AtomicU64::new(0),
            wanted: AtomicU64::new(0),
            received: tokio::sync::watch::Sender::new(0),
            wake: Arc::new(tokio::sync::Notify::new()),
        }))
    }

    fn with_feed(feed: Feed) -> Self {
        let model = Self {
            held: RwLock::default(),
            origin: rand::random::<u64>() | 1,
            feed,
            loading: tokio::sync::Mutex::new(()),
            listener: Mutex::new(None),
            bypassed: AtomicBool::new(false),
        };
        if let Feed::File(file) = &model.feed {
            file.start(model.origin);
        }
        model
    }

    /// Whether the model may answer a read of the current request, once it holds every change
    /// committed before the request arrived: on SQLite, after taking in other processes'
    /// changes; on PostgreSQL, once the listener received a marker sent after the request
    /// arrived (see [`Markers`]), which it waits for, at most [`MARKER_PATIENCE`]. Outside a
    /// request scope, the request is this call. `false` sends the read to the store.
    pub(crate) async fn ready(&self) -> bool {
        if self.bypassed.load(Ordering::Acquire) {
            return false;
        }
        let freshness = request_freshness();
        if freshness == Freshness::Current {
            return true;
        }
        let Feed::Postgres(markers) = &self.feed else {
            // One look at the changes file per request: its later reads began after it.
            let usable = self.usable_now();
            if usable {
                set_request_freshness(Freshness::Current);
            }
            return usable;
        };
        if !markers.live.load(Ordering::Acquire) {
            return false;
        }
        let marker = match freshness {
            Freshness::Since { origin, marker } if origin == self.origin => marker,
            // A marker whose sending begins after this load is sent after the read began.
            _ => markers.started.load(Ordering::Acquire) + 1,
        };
        let mut received = markers.received.subscribe();
        // Once a marker numbered `marker` or above has begun, usually carried by the
        // request's nonce claim (see `Self::statement_marker`), it only has to arrive.
        if markers.started.load(Ordering::Acquire) < marker {
            markers.wanted.fetch_max(marker, Ordering::AcqRel);
            markers.wake.notify_one();
        }
        let arrived = tokio::time::timeout(MARKER_PATIENCE, received.wait_for(|last| *last >= marker)).await;
        let current = matches!(arrived, Ok(Ok(_))) && markers.live.load(Ordering::Acquire);
        if current {
            set_request_freshness(Freshness::Current);
        }
        current
    }

    /// The access key `id` as held, without waiting to know the model current: for a
    /// PostgreSQL replica, where knowing costs a marker's round trip, so that a request
    /// checks its signature with it while its nonce claim carries the marker. The caller
    /// must confirm it with a read made after the claim, which then waits for nothing more
    /// (see [`Freshness::Since`]). `None` where the model is not in use, or where a
    /// confirmed read costs no more (SQLite).
    pub(crate) fn key_to_confirm(&self, id: &AccessKeyId) -> Option<StoredAccessKey> {
        let Feed::Postgres(markers) = &self.feed else {
            return None;
        };
        if !markers.live.load(Ordering::Acquire) || self.bypassed.load(Ordering::Acquire) {
            return None;
        }
        if request_freshness() == Freshness::Unchecked {
            set_request_freshness(Freshness::Since {
                origin: self.origin,
                marker: markers.started.load(Ordering::Acquire) + 1,
            });
        }
        self.key(id)
    }

    /// A marker for a statement this store is about to send to PostgreSQL, as
    /// `(channel, payload, number)`, the first two for `pg_notify`: every request's nonce
    /// claim carries one, so that a busy replica sends no marker of its own. `None` where the
    /// model is not in use.
    pub(crate) fn statement_marker(&self) -> Option<(&'static str, String, u64)> {
        let Feed::Postgres(markers) = &self.feed else {
            return None;
        };
        if !markers.live.load(Ordering::Acquire) {
            return None;
        }
        let marker = markers.started.fetch_add(1, Ordering::AcqRel) + 1;
        Some((CHANNEL, marker_payload(self.origin, marker), marker))
    }

    /// Waits until the listener has received marker `number` (at most [`MARKER_PATIENCE`],
    /// and not at all while it is down). The nonce claims that carried it wait here once,
    /// together, before their requests go on: each request then finds the model current
    /// without a wait of its own, one wake-up instead of two.
    pub(crate) async fn marker_arrival(&self, number: u64) {
        let Feed::Postgres(markers) = &self.feed else {
            return;
        };
        if !markers.live.load(Ordering::Acquire) {
            return;
        }
        let mut received = markers.received.subscribe();
        let _ = tokio::time::timeout(MARKER_PATIENCE, received.wait_for(|last| *last >= number)).await;
    }

    /// [`Self::ready`] where no wait is needed (SQLite); on PostgreSQL, whether it listens.
    fn usable_now(&self) -> bool {
        match &self.feed {
            Feed::Postgres(markers) => markers.live.load(Ordering::Acquire),
            Feed::File(file) => match file.foreign_changes(self.origin) {
                Ok(false) => true,
                Ok(true) => {
                    self.apply(&[Change::Everything]);
                    true
                }
                Err(error) => {
                    tracing::debug!(%error, "the changes file cannot be read: reading the store instead");
                    false
                }
            },
        }
    }

    /// The listing of `scope` on `node`, when held.
    pub(crate) fn listing(&self, scope: &str, node: &str) -> Option<Arc<Listing>> {
        read(&self.held).listings.get(scope)?.get(node).cloned()
    }

    /// What a load of `scope`'s listings (or, with `None`, of keys) must record before it reads.
    pub(crate) fn ticket(&self, scope: Option<&str>) -> Ticket {
        read(&self.held).ticket(scope)
    }

    /// Holds `listing` unless something it covers was dropped since `ticket` was taken, or it
    /// is too large to hold; returns it either way, for the request that loaded it.
    pub(crate) fn install_listing(
        &self,
        scope: &str,
        node: &str,
        ticket: Ticket,
        listing: Listing,
    ) -> Arc<Listing> {
        let listing = Arc::new(listing);
        let size = listing.images.len();
        if size > MAX_HELD_IMAGES / 2 {
            return listing;
        }
        let mut held = write(&self.held);
        if held.ticket(Some(scope)) != ticket {
            return listing;
        }
        if held.images + size > MAX_HELD_IMAGES {
            // Start over rather than track use: listings in use come back on their next read.
            held.images = 0;
            held.listings.clear();
        }
        let replaced = held
            .listings
            .entry(scope.to_owned())
            .or_default()
            .insert(node.to_owned(), Arc::clone(&listing));
        held.images = (held.images + size).saturating_sub(replaced.map_or(0, |old| old.images.len()));
        listing
    }

    /// The access key `id`, when held.
    pub(crate) fn key(&self, id: &AccessKeyId) -> Option<StoredAccessKey> {
        read(&self.held).keys.get(id).cloned()
    }

    /// Holds `key` unless anything was dropped since `ticket` was taken.
    pub(crate) fn install_key(&self, ticket: Ticket, key: &StoredAccessKey) {
        let mut held = write(&self.held);
        if held.ticket(None) != ticket {
            return;
        }
        if held.keys.len() >= MAX_HELD_KEYS {
            held.keys.clear();
        }
        held.keys.insert(key.id.clone(), key.clone());
    }

    /// The policy documents attached to `user` of `account`, when held.
    pub(crate) fn policies(&self, account: &str, user: &str) -> Option<Arc<Vec<String>>> {
        read(&self.held)
            .policies
            .get(&(account.to_owned(), user.to_owned()))
            .cloned()
    }

    /// Holds the policy documents of `user` unless anything was dropped since `ticket`.
    pub(crate) fn install_policies(
        &self,
        ticket: Ticket,
        account: &str,
        user: &str,
        documents: Arc<Vec<String>>,
    ) {
        let mut held = write(&self.held);
        if held.ticket(None) != ticket {
            return;
        }
        if held.policies.len() >= MAX_HELD_KEYS {
            held.policies.clear();
        }
        held.policies
            .insert((account.to_owned(), user.to_owned()), documents);
    }

    /// The shares of `owner`'s images, when held.
    pub(crate) fn shares(&self, owner: &str) -> Option<Arc<SharesOf>> {
        read(&self.held).shares.get(owner).cloned()
    }

    /// Holds the shares of `owner`'s images unless its scope was dropped since `ticket`.
    pub(crate) fn install_shares(&self, owner: &str, ticket: Ticket, shares: Arc<SharesOf>) {
        let mut held = write(&self.held);
        if held.ticket(Some(owner)) != ticket {
            return;
        }
        if held.shares.len() >= MAX_HELD_KEYS {
            held.shares.clear();
        }
        held.shares.insert(owner.to_owned(), shares);
    }

    /// Every known node, when held.
    pub(crate) fn nodes(&self) -> Option<Arc<HashSet<String>>> {
        read(&self.held).nodes.clone()
    }

    /// Holds the known nodes unless scope `system` was dropped since `ticket`.
    pub(crate) fn install_nodes(&self, ticket: Ticket, nodes: Arc<HashSet<String>>) {
        let mut held = write(&self.held);
        if held.ticket(Some(SYSTEM_SCOPE)) == ticket {
            held.nodes = Some(nodes);
        }
    }

    /// Answers nothing from now on (see [`crate::Store::read_tables_only`]).
    pub(crate) fn bypass(&self) {
        self.bypassed.store(true, Ordering::Release);
    }

    /// Serializes loads (see the field).
    pub(crate) async fn load_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.loading.lock().await
    }

    /// Drops what `changes` cover.
    pub(crate) fn apply(&self, changes: &[Change]) {
        let mut held = write(&self.held);
        for change in changes {
            match change {
                Change::Everything => held.drop_everything(),
                Change::Scope(scope) => held.drop_scope(scope),
            }
        }
    }

    /// Drops everything after a change made outside any session (a database put back from
    /// a page copy), and tells other processes.
    pub(crate) fn everything_changed(&self) {
        self.apply(&[Change::Everything]);
        self.announce_after_commit();
    }

    /// Announces `changes` to other processes, before the commit (PostgreSQL: the
    /// notification is delivered only if the transaction commits).
    async fn announce_before_commit(&self, session: &mut dyn Session, changes: &[Change]) -> StoreResult<()> {
        if matches!(self.feed, Feed::Postgres(_)) {
            let payload = payload(self.origin, changes);
            session
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[CHANNEL.into(), payload.as_str().into()],
                )
                .await?;
        }
        Ok(())
    }

    /// Announces a committed change to other processes (SQLite: the changes file).
    fn announce_after_commit(&self) {
        if let Feed::File(file) = &self.feed {
            if let Err(error) = file.append(self.origin) {
                tracing::warn!(
                    %error,
                    "the changes file cannot be written: another server process on this store may answer from \
                     what it read before this write until its next one"
                );
            }
        }
    }

    /// Starts the PostgreSQL listener over `pool`; the model is used once it listens.
    pub(crate) fn listen(self: &Arc<Self>, pool: sqlx::PgPool) {
        let options = pool.connect_options().as_ref().clone();
        let wake = match &self.feed {
            Feed::Postgres(markers) => Arc::clone(&markers.wake),
            Feed::File(_) => return,
        };
        let model = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            tokio::join!(listen(model.clone(), pool), send_markers(model, wake, options));
        });
        if let Some(old) = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task)
        {
            old.abort();
        }
    }

    /// Stops the listener and waits until its connection is closed.
    pub(crate) async fn stop(&self) {
        let task = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            // An aborted task ends with a cancellation error: that is the expected end.
            let _ = task.await;
        }
        if let Feed::Postgres(markers) = &self.feed {
            markers.live.store(false, Ordering::Release);
        }
    }

    fn set_live(&self, now_live: bool) {
        if let Feed::Postgres(markers) = &self.feed {
            // Whatever was held may have missed notifications while nobody listened.
            self.apply(&[Change::Everything]);
            markers.live.store(now_live, Ordering::Release);
            if now_live {
                // Markers sent while nobody listened are lost; a read waiting for one may go
                // on, since everything it can find was loaded after this point.
                let started = markers.started.load(Ordering::Acquire);
                markers.received.send_modify(|last| *last = (*last).max(started));
            }
        }
    }

    /// Applies a notification: another process's changes, or one of this origin's markers.
    fn receive(&self, payload: &str) {
        match parse_payload(payload) {
            Some((origin, Notification::Marker(marker))) => {
                if let (true, Feed::Postgres(markers)) = (origin == self.origin, &self.feed) {
                    markers.received.send_if_modified(|last| {
                        let newer = marker > *last;
                        *last = (*last).max(marker);
                        newer
                    });
                }
            }
            Some((origin, _)) if origin == self.origin => {}
            Some((_, Notification::Changes(changes))) => self.apply(&changes),
            None => self.apply(&[Change::Everything]),
        }
    }
}

impl Drop for ReadModel {
    fn drop(&mut self) {
        if let Some(task) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

/// `origin changes...`: `*` for everything, else one scope per line.
fn payload(origin: u64, changes: &[Change]) -> String {
    let mut text = format!("{origin:x}");
    for change in changes {
        match change {
            Change::Everything => return format!("{origin:x}\n*"),
            Change::Scope(scope) => {
                text.push('\n');
                text.push_str(scope);
            }
        }
    }
    if text.len() > MAX_PAYLOAD_BYTES {
        return format!("{origin:x}\n*");
    }
    text
}

/// `origin\n#marker`: a marker of that origin (see [`Markers`]).
fn marker_payload(origin: u64, marker: u64) -> String {
    format!("{origin:x}\n#{marker}")
}

/// What a notification on [`CHANNEL`] carries.
#[derive(Debug, PartialEq, Eq)]
enum Notification {
    Changes(Vec<Change>),
    /// `origin\n#n`: marker `n` of that origin (see [`Markers`]).
    Marker(u64),
}

fn parse_payload(payload: &str) -> Option<(u64, Notification)> {
    let mut lines = payload.split('\n');
    let origin = u64::from_str_radix(lines.next()?, 16).ok()?;
    let rest: Vec<&str> = lines.collect();
    if let [marker] = rest.as_slice() {
        if let Some(number) = marker.strip_prefix('#') {
            return Some((origin, Notification::Marker(number.parse().ok()?)));
        }
    }
    let changes = rest
        .into_iter()
        .map(|line| match line {
            "*" => Change::Everything,
            scope => Change::Scope(scope.to_owned()),
        })
        .collect();
    Some((origin, Notification::Changes(changes)))
}

/// Sends the markers reads wait for, one at a time, each covering every read waiting when
/// it is sent, on a connection of its own whose commits do not wait for the disk (a
/// marker needs no durability).
async fn send_markers(
    model: Weak<ReadModel>,
    wake: Arc<tokio::sync::Notify>,
    options: sqlx::postgres::PgConnectOptions,
) {
    use sqlx::Connection as _;
    let mut connection: Option<sqlx::PgConnection> = None;
    loop {
        // Armed before the check, so a wake-up given after the check is not lost.
        let woken = wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let payload = {
            let Some(strong) = model.upgrade() else { return };
            let Feed::Postgres(markers) = &strong.feed else {
                return;
            };
            if markers.wanted.load(Ordering::Acquire) <= markers.started.load(Ordering::Acquire) {
                None
            } else {
                let marker = markers.started.fetch_add(1, Ordering::AcqRel) + 1;
                Some((marker, marker_payload(strong.origin, marker)))
            }
        };
        let Some((marker, payload)) = payload else {
            woken.await;
            continue;
        };
        let sent = async {
            if connection.is_none() {
                let mut fresh = sqlx::PgConnection::connect_with(&options).await?;
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut fresh)
                    .await?;
                connection = Some(fresh);
            }
            match connection.as_mut() {
                Some(open) => sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(&payload)
                    .execute(open)
                    .await
                    .map(drop),
                None => Ok(()),
            }
        }
        .await;
        if let Err(error) = sent {
            tracing::warn!(%error, "cannot send a read marker; reads go to the database meanwhile");
            connection = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        // The next marker goes once this one is back: the reads arriving meanwhile all
        // share it, so a busy replica sends one marker per round trip, not one per read.
        let Some(mut received) = model.upgrade().and_then(|strong| match &strong.feed {
            Feed::Postgres(markers) => Some(markers.received.subscribe()),
            Feed::File(_) => None,
        }) else {
            return;
        };
        let _ = tokio::time::timeout(MARKER_PATIENCE, received.wait_for(|last| *last >= marker)).await;
    }
}

/// Listens for changes until the model is dropped, reconnecting after a lost connection
/// (the model is unused meanwhile).
async fn listen(model: Weak<ReadModel>, pool: sqlx::PgPool) {
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for other replicas' changes; reading the store meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        match model.upgrade() {
            Some(model) => model.set_live(true),
            None => return,
        }
        loop {
            let received = listener.try_recv().await;
            let Some(model) = model.upgrade() else { return };
            match received {
                Ok(Some(notification)) => model.receive(notification.payload()),
                Ok(None) | Err(_) => {
                    tracing::warn!("lost the connection listening for other replicas' changes; reading the store until it is back");
                    model.set_live(false);
                    break;
                }
            }
        }
    }
}

/// The SQLite changes file: a log of 8-byte origins, one per committed change, which only
/// grows until it is replaced (a new inode) by an empty one.
struct ChangesFile {
    path: PathBuf,
    /// The inode and length read last, up to which every record has been taken in.
    seen: Mutex<(u64, u64)>,
    appender: Mutex<Option<File>>,
}

impl ChangesFile {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            seen: Mutex::new((0, 0)),
            appender: Mutex::new(None),
        }
    }

    /// Takes the file as it is now as seen (what the model starts from is read after this).
    fn start(&self, origin: u64) {
        if std::fs::metadata(&self.path).is_err() {
            // A process that cannot create it reads the store on every request instead.
            let _ = self.append(origin);
        }
        if let Ok(metadata) = std::fs::metadata(&self.path) {
            *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = (metadata.ino(), metadata.len());
        }
    }

    /// Whether another origin appended since the last call.
    fn foreign_changes(&self, origin: u64) -> std::io::Result<bool> {
        let metadata = std::fs::metadata(&self.path)?;
        let now = (metadata.ino(), metadata.len());
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if now == *seen || (now.0 == seen.0 && now.1 < seen.1) {
            // Unchanged, or a `stat` that another thread's later one already took in.
            return Ok(false);
        }
        let foreign = if now.0 == seen.0 {
            !self.only_origin(seen.1, now.1, origin)?
        } else {
            true
        };
        *seen = now;
        Ok(foreign)
    }

    /// Whether the records from `from` to `to` were all appended by `origin`.
    fn only_origin(&self, from: u64, to: u64, origin: u64) -> std::io::Result<bool> {
        let length = to - from;
        if length % 8 != 0 || length > 64 * 1024 {
            return Ok(false);
        }
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(from))?;
        let mut records = vec![0; usize::try_from(length).unwrap_or(0)];
        file.read_exact(&mut records)?;
        Ok(records
            .chunks_exact(8)
            .all(|record| record == origin.to_le_bytes()))
    }

    fn append(&self, origin: u64) -> std::io::Result<()> {
        let mut appender = self.appender.lock().unwrap_or_else(PoisonError::into_inner);
        let file = match appender.as_mut() {
            Some(file) => file,
            None => appender.insert(OpenOptions::new().create(true).append(true).open(&self.path)?),
        };
        file.write_all(&origin.to_le_bytes())?;
        if file.metadata()?.len() >= MAX_CHANGES_FILE_BYTES {
            // A new inode tells readers to drop everything once; the old file stays open
            // nowhere after this.
            let mut fresh = self.path.as_os_str().to_owned();
            fresh.push(".new");
            File::create(&fresh)?;
            std::fs::rename(&fresh, &self.path)?;
            *appender = None;
        }
        Ok(())
    }
}

/// Tables whose writes change what the model holds: a write to one in a transaction that
/// named no scope drops everything.
const WATCHED: &[&str] = &[
    "images",
    "image_listing",
    "listing_counts",
    "image_shares",
    "image_nodes",
    "image_disks",
    "nodes",
    "access_keys",
    "accounts",
    "ram_users",
    "policies",
    "policy_attachments",
];

/// Whether `sql` writes one of the [`WATCHED`] tables.
fn writes_watched(sql: &str) -> bool {
    let statement = sql.trim_start();
    let verb = statement.get(..6).map(str::to_ascii_uppercase);
    if !matches!(verb.as_deref(), Some("INSERT" | "UPDATE" | "DELETE")) {
        return false;
    }
    statement
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| WATCHED.contains(&word))
}

/// A write session that tells the read model what it changed once it commits.
pub(crate) struct Tracked {
    inner: Box<dyn Session>,
    model: Arc<ReadModel>,
    changes: Vec<Change>,
    /// Whether the store named the scopes this transaction changes (see [`Session::touch`]).
    scoped: bool,
    /// Whether a statement wrote a watched table.
    wrote_watched: bool,
}

impl Tracked {
    pub(crate) fn new(inner: Box<dyn Session>, model: Arc<ReadModel>) -> Self {
        Self {
            inner,
            model,
            changes: Vec::new(),
            scoped: false,
            wrote_watched: false,
        }
    }
}

#[async_trait]
impl Session for Tracked {
    async fn rows(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<Vec<Row>> {
        self.wrote_watched |= writes_watched(sql);
        self.inner.rows(sql, params).await
    }

    async fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> StoreResult<u64> {
        self.wrote_watched |= writes_watched(sql);
        self.inner.execute(sql, params).await
    }

    fn touch(&mut self, scope: Option<&str>) {
        self.scoped = true;
        if let Some(scope) = scope {
            let change = Change::Scope(scope.to_owned());
            if !self.changes.contains(&change) {
                self.changes.push(change);
            }
        }
    }

    async fn commit(self: Box<Self>) -> StoreResult<()> {
        let Self {
            mut inner,
            model,
            mut changes,
            scoped,
            wrote_watched,
        } = *self;
        if wrote_watched && !scoped {
            changes = vec![Change::Everything];
        }
        if changes.is_empty() {
            return inner.commit().await;
        }
        model.announce_before_commit(&mut *inner, &changes).await?;
        inner.commit().await?;
        model.apply(&changes);
        model.announce_after_commit();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_writes_are_recognised() {
        assert!(writes_watched("UPDATE images SET name = $1 WHERE seq = $2"));
        assert!(writes_watched("  delete from access_keys WHERE id = $1"));
        assert!(writes_watched("INSERT INTO image_listing (scope) VALUES ($1)"));
        assert!(!writes_watched("INSERT INTO audit_log (seq) VALUES ($1)"));
        assert!(!writes_watched("SELECT 1 FROM images"));
        assert!(!writes_watched("UPDATE image_transfers SET lease = $1"));
        assert!(writes_watched(
            "DELETE FROM policy_attachments WHERE account_id = $1"
        ));
        assert!(writes_watched("DELETE FROM ram_users WHERE account_id = $1"));
    }

    #[test]
    fn payloads_round_trip_and_overflow_to_everything() {
        let changes = vec![Change::Scope("system".into()), Change::Scope("1234".into())];
        assert_eq!(
            parse_payload(&payload(42, &changes)),
            Some((42, Notification::Changes(changes)))
        );
        let many: Vec<Change> = (0..2_000)
            .map(|n| Change::Scope(format!("account-{n}")))
            .collect();
        assert_eq!(
            parse_payload(&payload(7, &many)),
            Some((7, Notification::Changes(vec![Change::Everything])))
        );
        assert_eq!(parse_payload("2a\n#17"), Some((42, Notification::Marker(17))));
        assert_eq!(parse_payload("not hex"), None);
    }

    /// A request that looked at the model before its nonce claim ([`ReadModel::key_to_confirm`])
    /// waits for a marker numbered from that look: the claim's own, or any later one, and
    /// not one begun before it.
    #[tokio::test]
    async fn a_request_that_looked_before_its_claim_waits_for_a_marker_begun_after_the_look() {
        let model = ReadModel::for_postgres();
        let Feed::Postgres(markers) = &model.feed else {
            panic!("a PostgreSQL model has markers");
        };
        markers.live.store(true, Ordering::Release);
        // Marker 4 has begun before the request and is still on its way.
        markers.started.store(4, Ordering::Release);
        markers.received.send_replace(3);
        let key = AccessKeyId::parse("AKALICE").unwrap();
        as_one_request(async {
            assert!(model.key_to_confirm(&key).is_none(), "nothing is held");
            let (channel, claims_marker, _) = model.statement_marker().unwrap();
            assert_eq!(channel, CHANNEL);
            assert_eq!(
                parse_payload(&claims_marker),
                Some((model.origin, Notification::Marker(5)))
            );
            let ready = model.ready();
            tokio::pin!(ready);
            model.receive(&marker_payload(model.origin, 4));
            let early = tokio::time::timeout(Duration::from_millis(50), &mut ready).await;
            assert!(early.is_err(), "a marker begun before the look does not do");
            model.receive(&claims_marker);
            assert!(ready.await);
            assert_eq!(request_freshness(), Freshness::Current);
        })
        .await;
        // The claim carried the marker: nobody asked the sender for one.
        assert!(markers.wanted.load(Ordering::Acquire) <= markers.started.load(Ordering::Acquire));
        as_one_request(async {
            model.key_to_confirm(&key);
            let (_, first, _) = model.statement_marker().unwrap();
            let (_, later, _) = model.statement_marker().unwrap();
            // Claims commit in any order: a later marker arriving first does as well.
            model.receive(&later);
            assert!(model.ready().await);
            model.receive(&first);
        })
        .await;
    }

    #[tokio::test]
    async fn a_batch_waits_for_the_marker_it_carried_unless_nobody_listens() {
        let model = ReadModel::for_postgres();
        let Feed::Postgres(markers) = &model.feed else {
            panic!("a PostgreSQL model has markers");
        };
        // Not listening: nothing will arrive, and nothing is waited for.
        let idle = tokio::time::timeout(Duration::from_millis(50), model.marker_arrival(1)).await;
        assert!(idle.is_ok());
        markers.live.store(true, Ordering::Release);
        let (_, payload, number) = model.statement_marker().unwrap();
        let arrival = model.marker_arrival(number);
        tokio::pin!(arrival);
        let early = tokio::time::timeout(Duration::from_millis(50), &mut arrival).await;
        assert!(early.is_err(), "the marker has not arrived yet");
        model.receive(&payload);
        tokio::time::timeout(Duration::from_millis(50), arrival)
            .await
            .unwrap();
        // The requests of the batch then find the model current without a wait.
        as_one_request(async {
            set_request_freshness(Freshness::Since {
                origin: model.origin,
                marker: number,
            });
            let ready = tokio::time::timeout(Duration::from_millis(50), model.ready()).await;
            assert_eq!(ready.ok(), Some(true));
        })
        .await;
    }

    fn listing(size: usize) -> Listing {
        Listing::new(Vec::with_capacity(size))
    }

    fn image(id: &str, name: &str, snapshot: Option<&str>) -> Arc<Image> {
        Arc::new(Image {
            id: ens_domain::ImageId::parse(id).expect("an image ID"),
            name: name.into(),
            owner: None,
            architecture: "x86_64".into(),
            platform: "centos".into(),
            os_type: "linux".into(),
            size_gib: 20,
            creation_time: time::OffsetDateTime::UNIX_EPOCH,
            snapshot_id: snapshot.map(str::to_owned),
            nodes: Vec::new(),
            disk_device_mappings: Vec::new(),
            status: ens_domain::ImageStatus::Available,
            instance_id: None,
            compute_type: "ens_vm".into(),
            os_version: "7.9".into(),
            description: String::new(),
        })
    }

    #[test]
    fn a_listing_finds_its_images_by_id_name_and_snapshot_in_order() {
        let listing = Listing::new(vec![
            image("m-one", "web", Some("sp-1")),
            image("m-two", "db", None),
            image("m-three", "web", Some("sp-1")),
        ]);
        let ids = |field, value| {
            listing
                .candidates(field, value)
                .map(|image| image.id.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Field::Name, "web"), ["m-one", "m-three"]);
        assert_eq!(ids(Field::Id, "m-two"), ["m-two"]);
        assert_eq!(ids(Field::Snapshot, "sp-1"), ["m-one", "m-three"]);
        // A field's values never answer for another field's.
        assert!(ids(Field::Name, "m-two").is_empty());
        assert!(ids(Field::Snapshot, "web").is_empty());
        assert!(ids(Field::Name, "WEB").is_empty(), "matching is exact");
    }

    #[test]
    fn a_load_that_raced_a_change_is_not_held() {
        let model = ReadModel::for_postgres();
        let ticket = model.ticket(Some("a"));
        model.apply(&[Change::Scope("a".into())]);
        model.install_listing("a", "*", ticket, listing(0));
        assert!(model.listing("a", "*").is_none());

        let ticket = model.ticket(Some("a"));
        model.apply(&[Change::Scope("b".into())]);
        model.install_listing("a", "*", ticket, listing(0));
        assert!(
            model.listing("a", "*").is_some(),
            "another scope's change does not matter"
        );

        model.apply(&[Change::Everything]);
        assert!(model.listing("a", "*").is_none());
        model.install_listing("a", "*", ticket, listing(0));
        assert!(
            model.listing("a", "*").is_none(),
            "a ticket from before everything was dropped"
        );
    }

    #[test]
    fn changes_from_another_process_are_seen_through_the_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database = dir.path().join("store.db");
        let mine = ReadModel::for_sqlite(&database);
        let other = ReadModel::for_sqlite(&database);
        let ticket = mine.ticket(Some("a"));
        mine.install_listing("a", "*", ticket, listing(0));
        assert!(mine.usable_now());
        mine.announce_after_commit();
        assert!(mine.usable_now());
        assert!(mine.listing("a", "*").is_some(), "its own appends change nothing");
        other.announce_after_commit();
        assert!(mine.usable_now());
        assert!(
            mine.listing("a", "*").is_none(),
            "another origin's append drops everything"
        );
    }
}
