//! Synthetic catalogs for benchmarks: a million custom images over thousands of accounts,
//! written in a handful of set-based `INSERT ... SELECT` statements inside one transaction,
//! because one round trip per row would take hours on SQLite.
//!
//! Every row is derived from its index and the seed, so a catalog is the same on every run
//! and on both backends, and a test or a benchmark can name any of its rows:
//!
//! - accounts: index 0 is the heavy account, `1..=accounts` the ordinary ones. Their IDs are
//!   `88`, the seed on 6 digits and the index on 10 digits: 18 digits, where the cloud's (and
//!   `admin account create`'s) random IDs have 16, so a generated ID never meets one; a second
//!   catalog in the same store needs another seed (reusing one fails with `Conflict`).
//! - images: index `i` in `0..images`. The first `heavy_images` belong to the heavy account;
//!   the others are dealt to the ordinary accounts in contiguous blocks, as even as can be, in
//!   account order, so image order is owner order and every index grows with the rows. ID:
//!   `m-gen`, the seed on 6 digits, `i` on 16 digits (the cloud's `m-` + 25 lower-case
//!   alphanumerics); name: `app-<owner>-<k>` with `k` the image's rank in its owner's
//!   images on 6 digits. Each image has one system disk and 1 to 3 consecutive nodes of the
//!   store's node list; its OS varies with its owner and rank.
//! - instances: one per account (`i-gen`, seed, account index), running the OS of the
//!   account's first image, so CreateImage works for every generated account.
//! - shares: share `s` shares image `s * images / shares` (one share per image at most) with
//!   an ordinary account other than its owner.
//!
//! Listings follow the store's invariant: an account's scope lists its own images and the
//! images shared with it, on the all-nodes key and on each node of the image, and every row
//! carries its dense 0-based position in image order within its (scope, node); counts are
//! the exact row counts. The generated accounts are new, so their listings start empty.
//!
//! Rows are written in key order, so most index maintenance is appending: a series or a range
//! scan of the new images delivers them so, and image nodes are ordered explicitly (SQLite
//! gets that order free from its loop; PostgreSQL joins the node list by hashing or merging,
//! and a sort costs less than inserting out of order). The one real sort numbers the
//! listings (a window over about three rows per image); on PostgreSQL the per-row foreign
//! key checks cost as much again.
//!
//! The SQL inlines numbers only (sizes, bounds, the seed and strings made of its digits),
//! never text from outside, so nothing here can be injected.

use ens_domain::{AccountId, ImageId, NodeId};
use time::OffsetDateTime;

use crate::engine::{Access, Dialect, Session};
use crate::rows::{account_from, corrupt, node_from};
use crate::{Store, StoreError, StoreResult};

/// Most images one call may generate: keeps every derived number far inside `i64` and the
/// image index inside its 16 digits.
const MAX_IMAGES: u64 = 100_000_000;
/// Most ordinary accounts one call may generate (the index has 10 digits).
const MAX_ACCOUNTS: u64 = 100_000_000;
/// Largest seed (it has 6 digits in every generated ID).
const MAX_SEED: u64 = 999_999;

/// The operating systems generated images and instances run:
/// (architecture, platform, os_type, os_version, compute_type, system disk GiB).
const VARIANTS: &[(&str, &str, &str, &str, &str, u64)] = &[
    ("x86_64", "centos", "linux", "7.9", "ens_vm", 20),
    ("x86_64", "ubuntu", "linux", "22.04", "ens_vm", 20),
    ("x86_64", "ubuntu", "linux", "20.04", "ens_vm", 30),
    ("x86_64", "debian", "linux", "11", "ens_vm", 20),
    ("x86_64", "alios", "linux", "3", "ens_vm", 40),
    ("arm64", "ubuntu", "linux", "22.04", "arm_vm", 20),
    ("x86_64", "rhel", "linux", "8.6", "ens_vm", 30),
    ("x86_64", "windows", "windows", "2019", "ens_vm", 40),
];

/// The shape of a synthetic catalog (see the module documentation for what each row is).
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    /// Custom images in total, the heavy account's included.
    pub images: u64,
    /// Ordinary accounts, which share the images the heavy account does not own.
    pub accounts: u64,
    /// Images owned by the one heavy account: the worst case of an account's own listing.
    pub heavy_images: u64,
    /// Image shares, each from an image's owner to another ordinary account.
    pub shares: u64,
    /// Chooses the IDs and the spread; the same seed gives the same catalog.
    pub seed: u64,
    /// When the catalog is made: the accounts' and shares' creation time. Images were
    /// created one second apart, the last one a second before this.
    pub now: OffsetDateTime,
}

impl GenerateSpec {
    /// Checks that the shape can be generated.
    ///
    /// # Errors
    /// `Invalid` naming the rule broken.
    pub fn validate(&self) -> StoreResult<()> {
        let Self {
            images,
            accounts,
            heavy_images: heavy,
            shares,
            seed,
            ..
        } = *self;
        let rules = [
            (images > MAX_IMAGES, format!("at most {MAX_IMAGES} images, asked for {images}")),
            (accounts > MAX_ACCOUNTS, format!("at most {MAX_ACCOUNTS} accounts, asked for {accounts}")),
            (seed > MAX_SEED, format!("the seed is at most {MAX_SEED}, got {seed}")),
            (
                heavy > images,
                format!("heavy images ({heavy}) are counted in the images ({images}) and cannot outnumber them"),
            ),
            (
                images > heavy && accounts == 0,
                format!(
                    "{} images are left after the heavy account's, but there is no ordinary account to own them",
                    images.saturating_sub(heavy)
                ),
            ),
            (
                shares > 0 && accounts < 2,
                format!(
                    "{shares} shares need at least 2 ordinary accounts (an image is never shared with its owner), \
                     got {accounts}"
                ),
            ),
            (shares > images, format!("at most one share per image: {shares} shares for {images} images")),
        ];
        if let Some((_, broken)) = rules.into_iter().find(|(broken, _)| *broken) {
            return Err(StoreError::Invalid(broken));
        }
        Ok(())
    }

    /// The heavy account's ID.
    ///
    /// # Errors
    /// `Invalid` for a seed over the limit.
    pub fn heavy_account(&self) -> StoreResult<AccountId> {
        self.account(0)
    }

    /// The ID of ordinary account `index` (0-based, below `accounts`).
    ///
    /// # Errors
    /// `Invalid` for a seed or an index over the limit.
    pub fn ordinary_account(&self, index: u64) -> StoreResult<AccountId> {
        if index >= self.accounts {
            return Err(StoreError::Invalid(format!(
                "ordinary account {index} of {}",
                self.accounts
            )));
        }
        self.account(index + 1)
    }

    /// The ID of image `index` (0-based, below `images`).
    ///
    /// # Errors
    /// `Invalid` for a seed or an index over the limit.
    pub fn image_id(&self, index: u64) -> StoreResult<ImageId> {
        if index >= self.images {
            return Err(StoreError::Invalid(format!("image {index} of {}", self.images)));
        }
        ImageId::parse(&format!("m-{}{index:016}", self.prefix()?)).map_err(corrupt)
    }

    /// The ID of the instance of account `index` (0: the heavy account).
    fn instance_id(&self, index: u64) -> StoreResult<String> {
        Ok(format!("i-{}{index:014}", self.prefix()?))
    }

    fn account(&self, index: u64) -> StoreResult<AccountId> {
        self.prefix()?;
        account_from(&format!("{}{index:010}", self.account_prefix()))
    }

    /// `gen` and the seed: the start of generated image and instance IDs.
    fn prefix(&self) -> StoreResult<String> {
        if self.seed > MAX_SEED {
            return Err(StoreError::Invalid(format!(
                "the seed is at most {MAX_SEED}, got {}",
                self.seed
            )));
        }
        Ok(format!("gen{:06}", self.seed))
    }

    fn account_prefix(&self) -> String {
        format!("88{:06}", self.seed)
    }
}

/// One generated account, as a benchmark needs it to sign calls and name an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedAccount {
    /// The account.
    pub account: AccountId,
    /// Its registered instance (CreateImage source).
    pub instance_id: String,
    /// Its first image, if it owns any.
    pub image_id: Option<ImageId>,
    /// That image's name.
    pub image_name: Option<String>,
    /// That image's first node.
    pub image_node: Option<NodeId>,
}

/// What [`generate_catalog`] made, beyond what its spec says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedCatalog {
    /// The heavy account.
    pub heavy: GeneratedAccount,
    /// The first ordinary account, when there is one.
    pub ordinary: Option<GeneratedAccount>,
}

/// The numbers every statement is built from, validated.
struct Layout {
    images: i64,
    heavy: i64,
    /// Ordinary accounts.
    accounts: i64,
    shares: i64,
    seed: i64,
    /// The first `rest` ordinary accounts own `big` images each, the others `small`
    /// (`big - 1`, or 1 when nobody owns any, only to keep the SQL free of division by 0).
    big: i64,
    small: i64,
    rest: i64,
    /// Unix seconds of the spec's `now`.
    now: i64,
    /// Quoted prefixes of account and of image and instance IDs.
    account_prefix: String,
    prefix: String,
}

impl Layout {
    fn new(spec: &GenerateSpec) -> StoreResult<Self> {
        spec.validate()?;
        let number = |value: u64| {
            i64::try_from(value).map_err(|_| StoreError::Invalid(format!("{value} is too large")))
        };
        let ordinary_images = spec.images - spec.heavy_images;
        // No ordinary account means no ordinary image (validated): nothing to deal out.
        let each = ordinary_images.checked_div(spec.accounts).unwrap_or(0);
        let rest = ordinary_images.checked_rem(spec.accounts).unwrap_or(0);
        Ok(Self {
            images: number(spec.images)?,
            heavy: number(spec.heavy_images)?,
            accounts: number(spec.accounts)?,
            shares: number(spec.shares)?,
            seed: number(spec.seed)?,
            big: number(each + 1)?,
            small: number(each.max(1))?,
            rest: number(rest)?,
            now: spec.now.unix_timestamp(),
            account_prefix: format!("'{}'", spec.account_prefix()),
            prefix: format!("'{}'", spec.prefix()?),
        })
    }

    /// The account index (0: heavy) owning image `i`.
    fn owner(&self, i: &str) -> String {
        self.by_block(
            i,
            "0",
            "1 + ",
            &format!("/ {}", self.big),
            &format!("1 + {} + ", self.rest),
            "/",
        )
    }

    /// The rank of image `i` among its owner's images.
    fn rank(&self, i: &str) -> String {
        self.by_block(i, i, "", &format!("% {}", self.big), "", "%")
    }

    /// An expression of image `i` by where it falls: among the heavy account's images
    /// (`heavy`), in the first `rest` blocks of `big` images (`{first}(offset {in_big})`) or
    /// in the blocks of `small` after them (`{after}(offset {op} small)`).
    fn by_block(
        &self,
        i: &str,
        heavy_value: &str,
        first: &str,
        in_big: &str,
        after: &str,
        op: &str,
    ) -> String {
        let (heavy, small, split) = (self.heavy, self.small, self.rest * self.big);
        format!(
            "(CASE WHEN {i} < {heavy} THEN {heavy_value} WHEN {i} < {heavy} + {split} THEN {first}({i} - {heavy}) {in_big} \
             ELSE {after}({i} - {heavy} - {split}) {op} {small} END)"
        )
    }

    /// A well-spread non-negative number from `x` and the seed (Knuth's multiplicative hash).
    fn mix(&self, x: &str, salt: i64) -> String {
        format!(
            "((({x}) * 2654435761 + {} * 40503 + {salt}) % 4294967296)",
            self.seed
        )
    }

    fn account_id(&self, dialect: Dialect, index: &str) -> String {
        format!("{} || {}", self.account_prefix, pad(dialect, index, 10))
    }

    /// The statements that write the catalog, in order, given the first image `seq` and the
    /// number of nodes.
    fn statements(&self, dialect: Dialect, base: i64, nodes: i64) -> Vec<String> {
        let Self {
            images,
            accounts,
            shares,
            seed,
            now,
            prefix,
            ..
        } = self;
        let variants = VARIANTS
            .iter()
            .enumerate()
            .map(|(index, (architecture, platform, os_type, version, compute, size))| {
                format!("({index}, '{architecture}', '{platform}', '{os_type}', '{version}', '{compute}', {size})")
            })
            .collect::<Vec<_>>()
            .join(", ");
        let variant_count = VARIANTS.len();
        let variant_cte = format!(
            "variant(v, architecture, platform, os_type, os_version, compute_type, size_gib) AS (VALUES {variants})"
        );
        let node_cte = "node_list(k, id) AS (SELECT row_number() OVER (ORDER BY id) - 1, id FROM nodes)";
        let every_account = series(dialect, "account_index", accounts + 1);
        let created = rfc3339(dialect, &now.to_string());
        let mut statements = vec![
            format!(
                "WITH RECURSIVE {every_account} INSERT INTO accounts (id, created_at) \
                 SELECT {}, {created} FROM account_index ORDER BY i",
                self.account_id(dialect, "i")
            ),
            format!(
                "WITH RECURSIVE {every_account}, {variant_cte}, {node_cte} \
                 INSERT INTO instances (id, owner_id, node_id, image_id, platform, os_type, os_version, \
                 architecture, compute_type, system_disk_gib, data_disks_gib, build_failure) \
                 SELECT 'i-' || {prefix} || {}, {}, n.id, NULL, v.platform, v.os_type, v.os_version, \
                 v.architecture, v.compute_type, v.size_gib, '', NULL \
                 FROM account_index a CROSS JOIN variant v CROSS JOIN node_list n \
                 WHERE v.v = (a.i + {seed}) % {variant_count} AND n.k = ({} / 3) % {nodes} ORDER BY a.i",
                pad(dialect, "a.i", 14),
                self.account_id(dialect, "a.i"),
                self.mix("a.i", 1),
            ),
            format!(
                "WITH RECURSIVE {}, placed AS (SELECT i, {} AS owner, {} AS k FROM image_index), {variant_cte} \
                 INSERT INTO images (seq, id, name, owner_id, architecture, platform, os_type, size_gib, \
                 creation_time, snapshot_id, status, instance_id, compute_type, os_version, description, \
                 build_due_at, build_failure, release_instance) \
                 SELECT {base} + p.i, 'm-' || {prefix} || {}, 'app-' || {} || '-' || {}, {}, v.architecture, \
                 v.platform, v.os_type, v.size_gib + 10 * (p.i % 3), {}, NULL, 'Available', NULL, \
                 v.compute_type, v.os_version, '', NULL, NULL, NULL \
                 FROM placed p CROSS JOIN variant v WHERE v.v = (p.owner + p.k + {seed}) % {variant_count}",
                series(dialect, "image_index", *images),
                self.owner("i"),
                self.rank("i"),
                pad(dialect, "p.i", 16),
                self.account_id(dialect, "p.owner"),
                pad(dialect, "p.k", 6),
                self.account_id(dialect, "p.owner"),
                rfc3339(dialect, &format!("{now} - {images} + p.i")),
            ),
            format!(
                "INSERT INTO image_disks (image_seq, position, disk_type, size_gib, format, file_id) \
                 SELECT seq, 0, 'system', size_gib, 'qcow2', id FROM images WHERE seq >= {base}"
            ),
            format!(
                "WITH {node_cte}, slot(p) AS (VALUES (0), (1), (2)) \
                 INSERT INTO image_nodes (image_seq, position, node_id) \
                 SELECT g.seq, s.p, n.id \
                 FROM (SELECT seq, {} AS m FROM images WHERE seq >= {base}) g \
                 CROSS JOIN slot s CROSS JOIN node_list n \
                 WHERE s.p <= g.m % 3 AND s.p < {nodes} AND n.k = (g.m / 3 + s.p) % {nodes} \
                 ORDER BY g.seq",
                self.mix(&format!("seq - {base}"), 0),
            ),
        ];
        if *shares > 0 {
            statements.push(format!(
                "WITH RECURSIVE {}, picked AS (SELECT i * {images} / {shares} AS image, {} % {accounts} AS t \
                 FROM share_index), owned AS (SELECT image, t, {} AS owner FROM picked) \
                 INSERT INTO image_shares (image_seq, account_id, created_at) \
                 SELECT {base} + image, {}, {created} FROM owned ORDER BY image",
                series(dialect, "share_index", *shares),
                self.mix("i", 2),
                self.owner("image"),
                self.account_id(dialect, &format!("(CASE WHEN owner = 1 + t THEN 1 + (t + 1) % {accounts} ELSE 1 + t END)")),
            ));
        }
        statements.push(format!(
            "INSERT INTO image_listing (scope, node_id, image_seq, position) \
             SELECT scope, node_id, image_seq, \
             row_number() OVER (PARTITION BY scope, node_id ORDER BY image_seq) - 1 \
             FROM (SELECT owner_id AS scope, '' AS node_id, seq AS image_seq FROM images WHERE seq >= {base} \
             UNION ALL SELECT i.owner_id, n.node_id, n.image_seq FROM image_nodes n \
             JOIN images i ON i.seq = n.image_seq WHERE n.image_seq >= {base} \
             UNION ALL SELECT account_id, '', image_seq FROM image_shares WHERE image_seq >= {base} \
             UNION ALL SELECT s.account_id, n.node_id, s.image_seq FROM image_shares s \
             JOIN image_nodes n ON n.image_seq = s.image_seq WHERE s.image_seq >= {base}) AS listed"
        ));
        statements.push(format!(
            "INSERT INTO listing_counts (scope, node_id, count) \
             SELECT scope, node_id, count(*) FROM image_listing WHERE image_seq >= {base} \
             GROUP BY scope, node_id"
        ));
        statements
    }
}

/// A common table expression `name(i)` holding `0..count` in order.
fn series(dialect: Dialect, name: &str, count: i64) -> String {
    match dialect {
        Dialect::Sqlite => format!(
            "{name}(i) AS (SELECT 0 WHERE 0 < {count} UNION ALL SELECT i + 1 FROM {name} WHERE i + 1 < {count})"
        ),
        Dialect::Postgres => format!("{name}(i) AS (SELECT generate_series(0::bigint, {count} - 1))"),
    }
}

/// The decimal digits of integer `value`, zero-padded to `width`.
fn pad(dialect: Dialect, value: &str, width: u32) -> String {
    match dialect {
        Dialect::Sqlite => format!("printf('%0{width}d', {value})"),
        Dialect::Postgres => format!("lpad(({value})::text, {width}, '0')"),
    }
}

/// Unix seconds `seconds` as RFC 3339 UTC text, as the store keeps times.
fn rfc3339(dialect: Dialect, seconds: &str) -> String {
    match dialect {
        Dialect::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%SZ', {seconds}, 'unixepoch')"),
        Dialect::Postgres => {
            format!("to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')")
        }
    }
}

/// Counts the generated accounts the store already has (any means this seed was used).
fn taken_accounts_sql(spec: &GenerateSpec) -> StoreResult<String> {
    let first = spec.heavy_account()?;
    let last = spec.account(spec.accounts)?;
    let width = first.as_str().len();
    // Fixed-width IDs: the text range holds exactly the generated ones.
    Ok(format!(
        "SELECT count(*) FROM accounts WHERE length(id) = {width} AND id >= '{first}' AND id <= '{last}'"
    ))
}

/// The ID, name and first node of the image at `seq`.
fn sample_sql(seq: i64) -> String {
    format!(
        "SELECT i.id, i.name, (SELECT node_id FROM image_nodes WHERE image_seq = i.seq ORDER BY position LIMIT 1) \
         FROM images i WHERE i.seq = {seq}"
    )
}

/// Where the heavy and the first ordinary account's first images are, by `seq`.
fn sample_seqs(layout: &Layout, base: i64) -> (Option<i64>, Option<i64>) {
    let heavy = (layout.heavy > 0).then_some(base);
    let ordinary = (layout.images > layout.heavy).then_some(base + layout.heavy);
    (heavy, ordinary)
}

fn account_sample(
    spec: &GenerateSpec,
    index: u64,
    image: Option<(String, String, Option<String>)>,
) -> StoreResult<GeneratedAccount> {
    let (image_id, image_name, image_node) = match image {
        Some((id, name, node)) => (
            Some(ImageId::parse(&id).map_err(corrupt)?),
            Some(name),
            node.as_deref().map(node_from).transpose()?,
        ),
        None => (None, None, None),
    };
    Ok(GeneratedAccount {
        account: spec.account(index)?,
        instance_id: spec.instance_id(index)?,
        image_id,
        image_name,
        image_node,
    })
}

fn no_nodes() -> StoreError {
    StoreError::Invalid("the store has no ENS nodes to put images on: load a catalog first".into())
}

fn seed_taken(spec: &GenerateSpec) -> StoreError {
    StoreError::Conflict(format!(
        "a generated catalog with seed {} (accounts 88{:06}...)",
        spec.seed, spec.seed
    ))
}

/// Fills the store with a large synthetic catalog (accounts, their instances, custom
/// images, shares and listings; see the module documentation) in one write transaction, for
/// benchmarks that need a realistic store of a million images in a minute rather than hours
/// of CreateImage calls. On SQLite the server's writes wait for it and its reads go on; on
/// PostgreSQL new images are locked out meanwhile (reads go on), so the generated images get
/// consecutive `seq` values.
///
/// # Errors
/// `Invalid` for a shape that cannot be generated or a store without nodes, `Conflict`
/// when the seed's accounts exist already.
pub async fn generate_catalog(store: &Store, spec: &GenerateSpec) -> StoreResult<GeneratedCatalog> {
    let layout = Layout::new(spec)?;
    let dialect = store.dialect;
    let mut tx = store.session(Access::Write).await?;
    if dialect == Dialect::Postgres {
        // The window numbering listings sorts millions of rows: in memory, not on disk.
        tx.execute("SET LOCAL work_mem = '512MB'", &[]).await?;
        tx.execute("LOCK TABLE images IN SHARE ROW EXCLUSIVE MODE", &[])
            .await?;
    }
    let nodes = to_count(tx.count("SELECT count(*) FROM nodes", &[]).await?)?;
    if nodes == 0 {
        return Err(no_nodes());
    }
    if tx.count(&taken_accounts_sql(spec)?, &[]).await? > 0 {
        return Err(seed_taken(spec));
    }
    // The first seq no image ever had (SQLite's AUTOINCREMENT never reuses one, a deleted
    // image's included); nobody else can insert an image until commit.
    let base = to_count(
        tx.count(
            match dialect {
                Dialect::Sqlite => {
                    "SELECT max(COALESCE((SELECT max(seq) FROM images), 0), \
                     COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'images'), 0)) + 1"
                }
                Dialect::Postgres => "SELECT nextval(pg_get_serial_sequence('images', 'seq'))",
            },
            &[],
        )
        .await?,
    )?;
    for statement in layout.statements(dialect, base, nodes) {
        tx.execute(&statement, &[]).await?;
    }
    if dialect == Dialect::Postgres && layout.images > 0 {
        tx.rows(
            "SELECT setval(pg_get_serial_sequence('images', 'seq'), $1)",
            &[(base + layout.images - 1).into()],
        )
        .await?;
    }
    let (heavy_seq, ordinary_seq) = sample_seqs(&layout, base);
    let mut samples = Vec::new();
    for seq in [heavy_seq, ordinary_seq] {
        samples.push(match seq {
            Some(seq) => sample(&mut *tx, seq).await?,
            None => None,
        });
    }
    tx.commit().await?;
    if dialect == Dialect::Postgres {
        // Autovacuum would analyze the new rows only later; until then the planner guesses
        // their counts, and a prepared statement's generic plan can scan whole tables.
        let mut tx = store.session(Access::Write).await?;
        tx.execute(ANALYZE_GENERATED, &[]).await?;
        tx.commit().await?;
    }
    catalog_from(spec, samples)
}

/// The tables a catalog fills, for PostgreSQL's planner statistics.
const ANALYZE_GENERATED: &str =
    "ANALYZE accounts, instances, images, image_nodes, image_disks, image_shares, image_listing, listing_counts";

fn to_count(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(corrupt)
}

/// The ID, name and first node of the image at `seq`.
async fn sample(tx: &mut dyn Session, seq: i64) -> StoreResult<Option<(String, String, Option<String>)>> {
    let Some(mut row) = tx.row(&sample_sql(seq), &[]).await? else {
        return Ok(None);
    };
    Ok(Some((row.text(0)?, row.text(1)?, row.maybe_text(2)?)))
}

fn catalog_from(
    spec: &GenerateSpec,
    samples: Vec<Option<(String, String, Option<String>)>>,
) -> StoreResult<GeneratedCatalog> {
    let mut samples = samples.into_iter();
    let heavy = account_sample(spec, 0, samples.next().flatten())?;
    let ordinary = if spec.accounts > 0 {
        Some(account_sample(spec, 1, samples.next().flatten())?)
    } else {
        None
    };
    Ok(GeneratedCatalog { heavy, ordinary })
}
