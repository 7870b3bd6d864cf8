//! What both SQL backends share: row conversions, time formats, ID generation and the
//! constants of the listing design. Nothing here talks to a database.

use ens_domain::{
    AccountId, BuildFailure, Image, ImageId, ImageOwnerAlias, ImageStatus, ImageView, Instance, NodeId,
    Principal, RamUserName, Snapshot,
};
use rand::Rng;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{StoreError, StoreResult};

/// Scope of the public images in `image_listing` and `listing_counts`.
pub(crate) const SYSTEM_SCOPE: &str = "system";
/// Node key of the listing over all nodes.
pub(crate) const ALL_NODES: &str = "";
/// Columns of `images` read by [`image_from_row`].
pub(crate) const IMAGE_COLUMNS: &str = "seq, id, name, owner_id, architecture, platform, os_type, size_gib, \
     creation_time, snapshot_id, status, instance_id, compute_type, os_version, description";
/// Audit times are kept in UTC with all nine fraction digits, so that text order is time
/// order and a `since` given in any offset or precision compares as an instant.
pub(crate) fn audit_time(value: OffsetDateTime) -> StoreResult<String> {
    let utc = value.to_offset(time::UtcOffset::UTC);
    let whole = utc.replace_nanosecond(0).unwrap_or(utc);
    let text = format_time(whole)?;
    let stem = text.strip_suffix('Z').unwrap_or(&text);
    Ok(format!("{stem}.{:09}Z", utc.nanosecond()))
}
pub(crate) fn format_time(value: OffsetDateTime) -> StoreResult<String> {
    value
        .format(&Rfc3339)
        .map_err(|error| StoreError::Corrupt(format!("unformattable time: {error}")))
}
pub(crate) fn parse_time(value: &str) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map_err(|error| StoreError::Corrupt(format!("stored time {value:?}: {error}")))
}
pub(crate) fn to_i64(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}
pub(crate) fn to_u64(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}
pub(crate) fn millis(value: OffsetDateTime) -> StoreResult<i64> {
    i64::try_from(value.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| StoreError::Corrupt("time out of range".into()))
}
pub(crate) fn corrupt(error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(error.to_string())
}
pub(crate) fn account_from(value: &str) -> StoreResult<AccountId> {
    AccountId::parse("account_id", value).map_err(corrupt)
}
pub(crate) fn node_from(value: &str) -> StoreResult<NodeId> {
    NodeId::parse("node_id", value).map_err(corrupt)
}
pub(crate) fn new_custom_image_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..25)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("m-{suffix}")
}
pub(crate) fn views(images: Vec<Image>, viewer: &AccountId, node: Option<&NodeId>) -> Vec<ImageView> {
    images
        .into_iter()
        .filter_map(|image| {
            let region = node.cloned().or_else(|| image.nodes.first().cloned())?;
            Some(ImageView {
                alias: ImageOwnerAlias::of(image.owner.as_ref(), viewer),
                region,
                image,
            })
        })
        .collect()
}
pub(crate) fn failure_from(value: Option<String>) -> StoreResult<Option<BuildFailure>> {
    value
        .map(|text| BuildFailure::parse(&text).ok_or_else(|| corrupt(format!("build failure {text:?}"))))
        .transpose()
}
pub(crate) fn user_from(value: &str) -> StoreResult<RamUserName> {
    RamUserName::parse("user_name", value).map_err(corrupt)
}

/// Typed reads of one result row by column name, for conversions shared by both backends.
pub(crate) trait Columns {
    /// A non-null text column.
    fn text(&self, name: &str) -> StoreResult<String>;
    /// A nullable text column.
    fn maybe_text(&self, name: &str) -> StoreResult<Option<String>>;
    /// A non-null integer column.
    fn int(&self, name: &str) -> StoreResult<i64>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, name: &str) -> StoreResult<String> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
            fn maybe_text(&self, name: &str) -> StoreResult<Option<String>> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
            fn int(&self, name: &str) -> StoreResult<i64> {
                Ok(sqlx::Row::try_get(self, name)?)
            }
        }
    };
}
columns_for!(sqlx::sqlite::SqliteRow);
columns_for!(sqlx::postgres::PgRow);

/// An image row without its nodes and disks, plus its sequence number.
pub(crate) fn image_from_row(row: &impl Columns) -> StoreResult<(i64, Image)> {
    let status = row.text("status")?;
    let image = Image {
        id: ImageId::parse(&row.text("id")?).map_err(corrupt)?,
        name: row.text("name")?,
        owner: row
            .maybe_text("owner_id")?
            .as_deref()
            .map(account_from)
            .transpose()?,
        architecture: row.text("architecture")?,
        platform: row.text("platform")?,
        os_type: row.text("os_type")?,
        size_gib: to_u64(row.int("size_gib")?, "image size")?,
        creation_time: parse_time(&row.text("creation_time")?)?,
        snapshot_id: row.maybe_text("snapshot_id")?,
        nodes: Vec::new(),
        disk_device_mappings: Vec::new(),
        status: ImageStatus::parse(&status).ok_or_else(|| corrupt(format!("image status {status:?}")))?,
        instance_id: row.maybe_text("instance_id")?,
        compute_type: row.text("compute_type")?,
        os_version: row.text("os_version")?,
        description: row.text("description")?,
    };
    Ok((row.int("seq")?, image))
}

/// A registered instance.
pub(crate) fn instance_from_row(row: &impl Columns) -> StoreResult<Instance> {
    let disks = row.text("data_disks_gib")?;
    Ok(Instance {
        id: row.text("id")?,
        owner: account_from(&row.text("owner_id")?)?,
        node: node_from(&row.text("node_id")?)?,
        image_id: row
            .maybe_text("image_id")?
            .as_deref()
            .map(ImageId::parse)
            .transpose()
            .map_err(corrupt)?,
        platform: row.text("platform")?,
        os_type: row.text("os_type")?,
        os_version: row.text("os_version")?,
        architecture: row.text("architecture")?,
        compute_type: row.text("compute_type")?,
        system_disk_gib: to_u64(row.int("system_disk_gib")?, "disk size")?,
        data_disks_gib: disks
            .split(',')
            .filter(|size| !size.is_empty())
            .map(|size| size.parse::<u64>().map_err(corrupt))
            .collect::<StoreResult<_>>()?,
        build_failure: failure_from(row.maybe_text("build_failure")?)?,
    })
}

/// A registered snapshot.
pub(crate) fn snapshot_from_row(row: &impl Columns) -> StoreResult<Snapshot> {
    Ok(Snapshot {
        id: row.text("id")?,
        owner: account_from(&row.text("owner_id")?)?,
        node: node_from(&row.text("node_id")?)?,
        instance_id: row.maybe_text("instance_id")?,
        platform: row.text("platform")?,
        os_type: row.text("os_type")?,
        os_version: row.text("os_version")?,
        architecture: row.text("architecture")?,
        size_gib: to_u64(row.int("size_gib")?, "snapshot size")?,
        build_failure: failure_from(row.maybe_text("build_failure")?)?,
    })
}

/// The owner or RAM user a key row acts for.
pub(crate) fn principal_from(row: &impl Columns) -> StoreResult<Principal> {
    Ok(Principal {
        account: account_from(&row.text("account_id")?)?,
        user: row
            .maybe_text("user_name")?
            .as_deref()
            .map(user_from)
            .transpose()?,
    })
}
