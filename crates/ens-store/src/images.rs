//! The image rules every write shares: inserting an image with its nodes and disks, finding
//! an image its owner may change, and keeping the listings and their counts exact.
//!
//! Listing design: DescribeImages must cost the same whatever the size of the catalog.
//! `image_listing` holds one row per (scope, node, image), where scope is `system` for
//! public images or the account that owns the image or has it shared in, and node `''` is
//! the listing over all nodes. Every listing is numbered densely (0, 1, ...) in image order,
//! so any page is one index seek, and `listing_counts` keeps each listing's size, so
//! TotalCount is one lookup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use ens_domain::rules::ensure_owner;
use ens_domain::{AccountId, BuildFailure, DiskDeviceMapping, Image, ImageError, ImageId, ImageStatus};

use crate::engine::{Access, Dialect, Lock, Param, Row, Session};
use crate::read_model::{Listing, SharesOf};
use crate::rows::{
    account_from, corrupt, format_time, image_from_row, millis, node_from, parse_time, to_i64, to_u64,
    ALL_NODES, IMAGE_COLUMNS, SYSTEM_SCOPE,
};
use crate::{NewImage, Store, StoreError, StoreResult};

/// Numbers the public listing densely per node, in image order. The public catalog is only
/// ever replaced whole, so its rows are numbered once after a load rather than one by one.
const NUMBER_PUBLIC_LISTING: &str = "UPDATE image_listing SET position = numbered.position \
     FROM (SELECT node_id, image_seq, row_number() OVER (PARTITION BY node_id ORDER BY image_seq) - 1 AS position \
           FROM image_listing WHERE scope = 'system') AS numbered \
     WHERE image_listing.scope = 'system' AND image_listing.node_id = numbered.node_id \
       AND image_listing.image_seq = numbered.image_seq";

/// The columns every insert of an image writes, in [`image_row`]'s order (a macro, so that
/// statements can be `concat!`ed at compile time).
macro_rules! image_insert_columns {
    () => {
        "id, name, owner_id, architecture, platform, os_type, size_gib, creation_time, snapshot_id, status, \
         instance_id, compute_type, os_version, description, build_due_at, build_failure, release_instance"
    };
}
pub(crate) use image_insert_columns;

/// The values of an image the store encodes rather than borrows.
pub(crate) struct EncodedImage {
    size: i64,
    created: String,
    due: Option<i64>,
}

impl EncodedImage {
    pub(crate) fn of(new: &NewImage) -> StoreResult<Self> {
        Ok(Self {
            size: to_i64(new.image.size_gib, "image size")?,
            created: format_time(new.image.creation_time)?,
            due: new.build_due_at.map(millis).transpose()?,
        })
    }
}

/// The values of `new` in [`image_insert_columns`]' order.
pub(crate) fn image_row<'a>(new: &'a NewImage, encoded: &'a EncodedImage) -> [Param<'a>; 17] {
    let image = &new.image;
    [
        image.id.as_str().into(),
        image.name.as_str().into(),
        image.owner.as_ref().map(AccountId::as_str).into(),
        image.architecture.as_str().into(),
        image.platform.as_str().into(),
        image.os_type.as_str().into(),
        encoded.size.into(),
        encoded.created.as_str().into(),
        image.snapshot_id.as_deref().into(),
        image.status.as_str().into(),
        image.instance_id.as_deref().into(),
        image.compute_type.as_str().into(),
        image.os_version.as_str().into(),
        image.description.as_str().into(),
        encoded.due.into(),
        new.build_failure.map(BuildFailure::as_str).into(),
        new.release_instance.as_deref().into(),
    ]
}

/// Changes to `listing_counts` gathered during a write transaction and applied at its end.
///
/// Applied last, sorted by (scope, node), so every transaction locks counter rows in the same
/// order and holds them only until commit: concurrent writers on PostgreSQL never deadlock on
/// counters, and hot ones (the public listing) are locked as briefly as possible.
#[derive(Default)]
pub(crate) struct CountChanges(BTreeMap<(String, String), i64>);

impl CountChanges {
    fn change(&mut self, scope: &str, node: &str, delta: i64) {
        *self.0.entry((scope.to_owned(), node.to_owned())).or_default() += delta;
    }

    pub(crate) async fn apply(self, tx: &mut dyn Session) -> StoreResult<()> {
        for ((scope, node), delta) in self.0.into_iter().filter(|(_, delta)| *delta != 0) {
            tx.execute(
                "INSERT INTO listing_counts (scope, node_id, count) VALUES ($1, $2, $3) \
                 ON CONFLICT (scope, node_id) DO UPDATE SET count = listing_counts.count + excluded.count",
                &[scope.as_str().into(), node.as_str().into(), delta.into()],
            )
            .await?;
        }
        Ok(())
    }
}

impl Store {
    /// Holds an account listing's counter row until the transaction ends, so concurrent
    /// writers number that listing one after the other. SQLite's one writer needs nothing.
    async fn lock_listing(&self, tx: &mut dyn Session, scope: &str, node: &str) -> StoreResult<()> {
        if self.dialect == Dialect::Sqlite {
            return Ok(());
        }
        let params = [scope.into(), node.into()];
        tx.execute(
            "INSERT INTO listing_counts (scope, node_id, count) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING",
            &params,
        )
        .await?;
        let sql = format!(
            "SELECT 1 FROM listing_counts WHERE scope = $1 AND node_id = $2{}",
            self.dialect.lock(Lock::Update)
        );
        tx.rows(&sql, &params).await.map(drop)
    }

    /// Adds image `seq` to the listings of `scope` (all nodes and each of `nodes`), counting
    /// the rows added. New images come last, so adding one is a seek; an older image shared
    /// later moves the rows after it down by one. Public rows are numbered after the load.
    pub(crate) async fn add_to_listings(
        &self,
        tx: &mut dyn Session,
        counts: &mut CountChanges,
        scope: &str,
        seq: i64,
        nodes: &[String],
    ) -> StoreResult<()> {
        let mut sorted: Vec<&str> = nodes.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        for node in std::iter::once(ALL_NODES).chain(sorted) {
            let params = [scope.into(), node.into(), seq.into()];
            let position = if scope == SYSTEM_SCOPE {
                None
            } else {
                self.lock_listing(tx, scope, node).await?;
                let mut place = tx
                    .row(
                        "SELECT EXISTS (SELECT 1 FROM image_listing WHERE scope = $1 AND node_id = $2 AND image_seq = $3), \
                         (SELECT position FROM image_listing WHERE scope = $1 AND node_id = $2 AND image_seq > $3 \
                          ORDER BY image_seq LIMIT 1), \
                         (SELECT COALESCE(MAX(position) + 1, 0) FROM image_listing WHERE scope = $1 AND node_id = $2)",
                        &params,
                    )
                    .await?
                    .unwrap_or_default();
                if place.int(0)? != 0 {
                    continue;
                }
                let later = place.maybe_int(1)?;
                if later.is_some() {
                    tx.execute(
                        "UPDATE image_listing SET position = position + 1 \
                         WHERE scope = $1 AND node_id = $2 AND image_seq > $3",
                        &params,
                    )
                    .await?;
                }
                Some(later.map_or_else(|| place.int(2), Ok)?)
            };
            let inserted = tx
                .execute(
                    "INSERT INTO image_listing (scope, node_id, image_seq, position) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                    &[scope.into(), node.into(), seq.into(), position.into()],
                )
                .await?;
            counts.change(scope, node, to_i64(inserted, "row count")?);
        }
        Ok(())
    }

    /// Removes image `seq` from every listing of `scope`, counting the rows removed and
    /// closing the gaps they leave in the numbering.
    pub(crate) async fn remove_from_listings(
        &self,
        tx: &mut dyn Session,
        counts: &mut CountChanges,
        scope: &str,
        seq: i64,
    ) -> StoreResult<()> {
        let mut nodes = tx
            .texts(
                "SELECT node_id FROM image_listing WHERE scope = $1 AND image_seq = $2",
                &[scope.into(), seq.into()],
            )
            .await?;
        nodes.sort_unstable();
        for node in nodes {
            self.lock_listing(tx, scope, &node).await?;
            let removed = tx
                .row(
                    "DELETE FROM image_listing WHERE scope = $1 AND node_id = $2 AND image_seq = $3 RETURNING position",
                    &[scope.into(), node.as_str().into(), seq.into()],
                )
                .await?;
            let Some(mut removed) = removed else { continue };
            if let Some(position) = removed.maybe_int(0)? {
                tx.execute(
                    "UPDATE image_listing SET position = position - 1 \
                     WHERE scope = $1 AND node_id = $2 AND position > $3",
                    &[scope.into(), node.as_str().into(), position.into()],
                )
                .await?;
            }
            counts.change(scope, &node, -1);
        }
        Ok(())
    }

    /// Writes one image with its nodes and disks, and lists it if it is `Available`.
    pub(crate) async fn insert_image(
        &self,
        tx: &mut dyn Session,
        counts: &mut CountChanges,
        new: &NewImage,
    ) -> StoreResult<i64> {
        let image = &new.image;
        if image.nodes.is_empty() {
            return Err(StoreError::Invalid(format!(
                "image {} is available on no node",
                image.id
            )));
        }
        let encoded = EncodedImage::of(new)?;
        let inserted = tx
            .row(
                concat!(
                    "INSERT INTO images (",
                    image_insert_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                     ON CONFLICT (id) DO NOTHING RETURNING seq"
                ),
                &image_row(new, &encoded),
            )
            .await?;
        let Some(mut inserted) = inserted else {
            return Err(StoreError::Conflict(format!("image {}", image.id)));
        };
        let seq = inserted.int(0)?;
        let mut nodes = Vec::with_capacity(image.nodes.len());
        for (position, node) in image.nodes.iter().enumerate() {
            if !tx
                .exists("SELECT 1 FROM nodes WHERE id = $1", &[node.as_str().into()])
                .await?
            {
                return Err(StoreError::NotFound(format!("node {node}")));
            }
            tx.execute(
                "INSERT INTO image_nodes (image_seq, position, node_id) VALUES ($1, $2, $3)",
                &[
                    seq.into(),
                    to_i64(position as u64, "node position")?.into(),
                    node.as_str().into(),
                ],
            )
            .await?;
            nodes.push(node.as_str().to_owned());
        }
        for (position, disk) in image.disk_device_mappings.iter().enumerate() {
            tx.execute(
                "INSERT INTO image_disks (image_seq, position, disk_type, size_gib, format, file_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    seq.into(),
                    to_i64(position as u64, "disk position")?.into(),
                    disk.disk_type.as_str().into(),
                    to_i64(disk.size_gib, "disk size")?.into(),
                    disk.format.as_str().into(),
                    disk.image_id.as_str().into(),
                ],
            )
            .await?;
        }
        if image.status == ImageStatus::Available {
            let scope = image.owner.as_ref().map_or(SYSTEM_SCOPE, AccountId::as_str);
            self.add_to_listings(tx, counts, scope, seq, &nodes).await?;
        }
        Ok(seq)
    }

    /// Numbers the public listing after its images were inserted (see [`NUMBER_PUBLIC_LISTING`]).
    pub(crate) async fn number_public_listing(tx: &mut dyn Session) -> StoreResult<()> {
        tx.execute(NUMBER_PUBLIC_LISTING, &[]).await.map(drop)
    }

    /// The image row with this ID (no nodes or disks), whoever owns it, locked as asked.
    pub(crate) async fn image_by_id(
        &self,
        tx: &mut dyn Session,
        id: &ImageId,
        lock: Option<Lock>,
    ) -> StoreResult<Option<(i64, Image)>> {
        let sql = format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1{}",
            lock.map_or("", |lock| self.dialect.lock(lock))
        );
        tx.row(&sql, &[id.as_str().into()])
            .await?
            .map(image_from_row)
            .transpose()
    }

    /// The image of `owner` with this ID, after the ownership rule. With a lock, the image
    /// row stays locked until the transaction ends, so every rule checked afterwards
    /// (shares, instances, status) still holds when it commits.
    pub(crate) async fn owned_image(
        &self,
        tx: &mut dyn Session,
        owner: &AccountId,
        id: &ImageId,
        lock: Option<Lock>,
    ) -> StoreResult<(i64, Image)> {
        let Some((seq, image)) = self.image_by_id(tx, id, lock).await? else {
            return Err(ImageError::NotFound.into());
        };
        let shared = is_shared_with(tx, seq, owner).await?;
        ensure_owner(image.owner.as_ref(), owner, shared)?;
        Ok((seq, image))
    }

    /// Runs `page`, a query whose rows are `(part, place, item)`, with the image whose `seq` is
    /// `item` (disks included, every node or only the first) beside each row of a part other
    /// than 0, in one statement: one round trip and one snapshot for a page, its totals and
    /// its images, where the read model cannot answer. Returns the `(place, item)` of the rows
    /// of part 0 and the images of the others in `(part, place)` order.
    pub(crate) async fn page_with_images(
        &self,
        page: &str,
        params: &[Param<'_>],
        every_node: bool,
    ) -> StoreResult<(Vec<(i64, i64)>, Vec<Image>)> {
        let nodes = self.dialect.json_array_of(
            "n.node_id",
            &format!(
                "image_nodes n WHERE n.image_seq = i.seq{}",
                if every_node { "" } else { " AND n.position = 0" }
            ),
            "n.position",
        );
        let disks = self.dialect.json_array_of(
            &self
                .dialect
                .json_tuple("d.disk_type, d.size_gib, d.format, d.file_id"),
            "image_disks d WHERE d.image_seq = i.seq",
            "d.position",
        );
        let sql = format!(
            "WITH page (part, place, item) AS MATERIALIZED ({page}) \
             SELECT page.part, page.place, page.item, {IMAGE_COLUMNS}, {nodes}, {disks} \
             FROM page LEFT JOIN images i ON page.part <> 0 AND i.seq = page.item"
        );
        let mut tx = self.session(Access::ReadOne).await?;
        let rows = tx.rows(&sql, params).await?;
        let mut zero = Vec::new();
        let mut images = Vec::with_capacity(rows.len());
        for mut row in rows {
            let (part, place, item) = (row.int(0)?, row.int(1)?, row.int(2)?);
            if part == 0 {
                zero.push((place, item));
            } else if row.maybe_int(3)?.is_some() {
                let image = Row(row.0.split_off(3));
                images.push(((part, place), full_image_from_row(image)?));
            }
        }
        images.sort_unstable_by_key(|(order, _)| *order);
        Ok((zero, images.into_iter().map(|(_, image)| image).collect()))
    }

    /// Loads images (disks included) for `seqs`, in that order, with every node or only the
    /// first. Each statement has one shape whatever the number of images, so it stays prepared.
    pub(crate) async fn load_images(
        &self,
        tx: &mut dyn Session,
        seqs: &[i64],
        every_node: bool,
    ) -> StoreResult<Vec<Image>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut images = self.load_from_tables(tx, seqs, every_node).await?;
        Ok(seqs.iter().filter_map(|seq| images.remove(seq)).collect())
    }

    /// Images `seqs` read from the tables (three statements whatever their number).
    async fn load_from_tables(
        &self,
        tx: &mut dyn Session,
        seqs: &[i64],
        every_node: bool,
    ) -> StoreResult<HashMap<i64, Image>> {
        let list = [Param::Ints(seqs)];
        let mut images: HashMap<i64, Image> = HashMap::with_capacity(seqs.len());
        let sql = format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE {}",
            self.dialect.in_list("seq", 1)
        );
        for row in tx.rows(&sql, &list).await? {
            let (seq, image) = image_from_row(row)?;
            images.insert(seq, image);
        }
        let nodes = format!(
            "SELECT image_seq, node_id FROM image_nodes WHERE {}{} ORDER BY image_seq, position",
            self.dialect.in_list("image_seq", 1),
            if every_node { "" } else { " AND position = 0" }
        );
        let nodes = tx.rows(&nodes, &list).await?;
        let disks = format!(
            "SELECT image_seq, disk_type, size_gib, format, file_id FROM image_disks WHERE {} \
             ORDER BY image_seq, position",
            self.dialect.in_list("image_seq", 1)
        );
        let disks = tx.rows(&disks, &list).await?;
        attach_parts(&mut images, nodes, disks)?;
        Ok(images)
    }

    /// A view of `scope` from the read model, loaded into it when missing; the caller has
    /// checked that the model may answer now ([`crate::read_model::ReadModel::ready`]).
    pub(crate) async fn held_view(&self, scope: &str, view: View<'_>) -> StoreResult<Arc<Listing>> {
        let key = view.key();
        if let Some(listing) = self.read_model.listing(scope, key) {
            return Ok(listing);
        }
        let _turn = self.read_model.load_turn().await;
        if let Some(listing) = self.read_model.listing(scope, key) {
            return Ok(listing);
        }
        // Taken before the read: a change committed after it makes the load stale and the
        // model refuses to hold it.
        let ticket = self.read_model.ticket(Some(scope));
        let mut tx = self.session(Access::Read).await?;
        let listing = match view {
            View::Listing { node } => self.load_listing(&mut *tx, scope, node).await?,
            View::SelfImages => {
                let seqs = tx
                    .ints(
                        "SELECT seq FROM images WHERE owner_id = $1 \
                         UNION SELECT image_seq FROM image_shares WHERE account_id = $1 ORDER BY 1",
                        &[scope.into()],
                    )
                    .await?;
                every_node(self.load_images(&mut *tx, &seqs, true).await?)
            }
            View::PublicEveryNode => {
                let seqs = tx
                    .ints("SELECT seq FROM images WHERE owner_id IS NULL ORDER BY seq", &[])
                    .await?;
                every_node(self.load_images(&mut *tx, &seqs, true).await?)
            }
        };
        tx.commit().await?;
        Ok(self.read_model.install_listing(scope, key, ticket, listing))
    }

    /// The shares of `owner`'s images from the read model, loaded into it when missing; the
    /// caller has checked that the model may answer now.
    pub(crate) async fn held_shares(&self, owner: &str) -> StoreResult<Arc<SharesOf>> {
        if let Some(shares) = self.read_model.shares(owner) {
            return Ok(shares);
        }
        let _turn = self.read_model.load_turn().await;
        if let Some(shares) = self.read_model.shares(owner) {
            return Ok(shares);
        }
        let ticket = self.read_model.ticket(Some(owner));
        let mut tx = self.session(Access::Read).await?;
        let rows = tx
            .rows(
                "SELECT i.id, s.account_id, s.created_at FROM image_shares s JOIN images i ON i.seq = s.image_seq \
                 WHERE i.owner_id = $1 ORDER BY i.seq, s.created_at, s.account_id",
                &[owner.into()],
            )
            .await?;
        tx.commit().await?;
        let mut shares = SharesOf::new();
        for mut row in rows {
            shares.entry(row.text(0)?).or_default().push(crate::ImageShare {
                account: account_from(&row.text(1)?)?,
                created_at: parse_time(&row.text(2)?)?,
            });
        }
        let shares = Arc::new(shares);
        self.read_model.install_shares(owner, ticket, Arc::clone(&shares));
        Ok(shares)
    }

    /// Every known node from the read model, loaded into it when missing; the caller has
    /// checked that the model may answer now.
    pub(crate) async fn held_nodes(&self) -> StoreResult<Arc<HashSet<String>>> {
        if let Some(nodes) = self.read_model.nodes() {
            return Ok(nodes);
        }
        let _turn = self.read_model.load_turn().await;
        if let Some(nodes) = self.read_model.nodes() {
            return Ok(nodes);
        }
        let ticket = self.read_model.ticket(Some(SYSTEM_SCOPE));
        let mut tx = self.session(Access::Read).await?;
        let nodes: HashSet<String> = tx.texts("SELECT id FROM nodes", &[]).await?.into_iter().collect();
        tx.commit().await?;
        let nodes = Arc::new(nodes);
        self.read_model.install_nodes(ticket, Arc::clone(&nodes));
        Ok(nodes)
    }

    /// Reads the listing of `scope` on `node` whole, in order (three statements whatever its
    /// size), each image with its first node.
    async fn load_listing(&self, tx: &mut dyn Session, scope: &str, node: &str) -> StoreResult<Listing> {
        const FROM: &str = "FROM image_listing l JOIN images i ON i.seq = l.image_seq";
        const WHERE: &str = "WHERE l.scope = $1 AND l.node_id = $2";
        let params = [scope.into(), node.into()];
        let columns = IMAGE_COLUMNS
            .split(", ")
            .map(|column| format!("i.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut order = Vec::new();
        let mut images: HashMap<i64, Image> = HashMap::new();
        for row in tx
            .rows(
                &format!("SELECT {columns} {FROM} {WHERE} ORDER BY l.position"),
                &params,
            )
            .await?
        {
            let (seq, image) = image_from_row(row)?;
            order.push(seq);
            images.insert(seq, image);
        }
        let nodes = format!(
            "SELECT n.image_seq, n.node_id {FROM} JOIN image_nodes n ON n.image_seq = i.seq AND n.position = 0 {WHERE}"
        );
        let nodes = tx.rows(&nodes, &params).await?;
        let disks = format!(
            "SELECT d.image_seq, d.disk_type, d.size_gib, d.format, d.file_id {FROM} \
             JOIN image_disks d ON d.image_seq = i.seq {WHERE} ORDER BY d.image_seq, d.position"
        );
        let disks = tx.rows(&disks, &params).await?;
        attach_parts(&mut images, nodes, disks)?;
        Ok(Listing::new(
            order
                .iter()
                .filter_map(|seq| images.remove(seq))
                .map(Arc::new)
                .collect(),
        ))
    }
}

/// What the read model holds of a scope, beside its listings.
#[derive(Debug, Clone, Copy)]
pub(crate) enum View<'a> {
    /// The DescribeImages listing on `node` (`ALL_NODES` for every node), each image with its
    /// first node.
    Listing { node: &'a str },
    /// DescribeSelfImages: an account's own and shared-in images in any status, in image
    /// order, each with every node.
    SelfImages,
    /// DescribeImageInfos: every public image, in image order, each with every node (scope
    /// `system`).
    PublicEveryNode,
}

impl View<'_> {
    /// The key the view is held under within its scope: a node ID for a listing, else a
    /// name no node ID can take.
    fn key(&self) -> &str {
        match self {
            Self::Listing { node } => node,
            Self::SelfImages => "#self-images",
            Self::PublicEveryNode => "#public-every-node",
        }
    }
}

fn every_node(images: Vec<Image>) -> Listing {
    Listing::new(images.into_iter().map(Arc::new).collect())
}

/// An image read with [`IMAGE_COLUMNS`], then its nodes and its disks as the JSON arrays
/// [`Store::page_with_images`] selects.
fn full_image_from_row(mut row: Row) -> StoreResult<Image> {
    let parts = IMAGE_COLUMNS.split(',').count();
    let (nodes, disks) = (row.text(parts)?, row.text(parts + 1)?);
    let (_, mut image) = image_from_row(row)?;
    let nodes: Vec<String> = serde_json::from_str(&nodes).map_err(corrupt)?;
    image.nodes = nodes
        .iter()
        .map(|node| node_from(node))
        .collect::<StoreResult<_>>()?;
    let disks: Vec<(String, i64, String, String)> = serde_json::from_str(&disks).map_err(corrupt)?;
    image.disk_device_mappings = disks
        .into_iter()
        .map(|(disk_type, size_gib, format, image_id)| {
            Ok(DiskDeviceMapping {
                disk_type,
                size_gib: to_u64(size_gib, "disk size")?,
                format,
                image_id,
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(image)
}

/// Adds to `images` their nodes (rows of `image_seq, node_id`) and disks (rows of
/// `image_seq, disk_type, size_gib, format, file_id`), each in row order.
fn attach_parts(images: &mut HashMap<i64, Image>, nodes: Vec<Row>, disks: Vec<Row>) -> StoreResult<()> {
    for mut row in nodes {
        if let Some(image) = images.get_mut(&row.int(0)?) {
            image.nodes.push(node_from(&row.text(1)?)?);
        }
    }
    for mut row in disks {
        if let Some(image) = images.get_mut(&row.int(0)?) {
            image.disk_device_mappings.push(DiskDeviceMapping {
                disk_type: row.text(1)?,
                size_gib: to_u64(row.int(2)?, "disk size")?,
                format: row.text(3)?,
                image_id: row.text(4)?,
            });
        }
    }
    Ok(())
}

/// Whether image `seq` is shared with `account`.
pub(crate) async fn is_shared_with(tx: &mut dyn Session, seq: i64, account: &AccountId) -> StoreResult<bool> {
    tx.exists(
        "SELECT 1 FROM image_shares WHERE image_seq = $1 AND account_id = $2",
        &[seq.into(), account.as_str().into()],
    )
    .await
}

/// The nodes of image `seq`, in order.
pub(crate) async fn image_nodes(tx: &mut dyn Session, seq: i64) -> StoreResult<Vec<String>> {
    tx.texts(
        "SELECT node_id FROM image_nodes WHERE image_seq = $1 ORDER BY position",
        &[seq.into()],
    )
    .await
}
