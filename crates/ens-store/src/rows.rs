//! Conversions between stored rows and domain values, and the encodings the store keeps
//! (times as RFC 3339 text, build times as Unix milliseconds). Nothing here runs SQL.

use std::sync::Arc;

use ens_domain::{
    AccountId, BuildFailure, Image, ImageId, ImageOwnerAlias, ImageStatus, ImageView, Instance, NodeId,
    Principal, RamUserName, Snapshot,
};
use rand::Rng;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::engine::Row;
use crate::{StoreError, StoreResult};

/// Scope of the public images in `image_listing` and `listing_counts`.
pub(crate) const SYSTEM_SCOPE: &str = "system";
/// Node key of the listing over all nodes.
pub(crate) const ALL_NODES: &str = "";
/// Columns of `images` read by [`image_from_row`], in its order.
pub(crate) const IMAGE_COLUMNS: &str = "seq, id, name, owner_id, architecture, platform, os_type, size_gib, \
     creation_time, snapshot_id, status, instance_id, compute_type, os_version, description";
/// Columns of `instances` read by [`instance_from_row`], in its order.
pub(crate) const INSTANCE_COLUMNS: &str = "id, owner_id, node_id, image_id, platform, os_type, os_version, \
     architecture, compute_type, system_disk_gib, data_disks_gib, build_failure";
/// Columns of `snapshots` read by [`snapshot_from_row`], in its order.
pub(crate) const SNAPSHOT_COLUMNS: &str =
    "id, owner_id, node_id, instance_id, platform, os_type, os_version, architecture, size_gib, build_failure";

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
pub(crate) fn user_from(value: &str) -> StoreResult<RamUserName> {
    RamUserName::parse("user_name", value).map_err(corrupt)
}
pub(crate) fn status_from(value: &str) -> StoreResult<ImageStatus> {
    ImageStatus::parse(value).ok_or_else(|| corrupt(format!("image status {value:?}")))
}
pub(crate) fn failure_from(value: Option<String>) -> StoreResult<Option<BuildFailure>> {
    value
        .map(|text| BuildFailure::parse(&text).ok_or_else(|| corrupt(format!("build failure {text:?}"))))
        .transpose()
}

/// A fresh custom image ID: `m-` and 25 lower-case alphanumerics, as the cloud's.
pub(crate) fn new_custom_image_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let suffix: String = (0..25)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("m-{suffix}")
}

/// A fresh RAM user ID: 16 digits, the first from 2 to 9, as the cloud's.
#[must_use]
pub fn new_user_id() -> String {
    let mut rng = rand::thread_rng();
    std::iter::once(char::from(b'2' + rng.gen_range(0..8u8)))
        .chain((0..15).map(|_| char::from(b'0' + rng.gen_range(0..10u8))))
        .collect()
}

/// Images as `viewer` sees them, each named by `node` or else by its first node.
pub(crate) fn views(
    images: impl IntoIterator<Item = Arc<Image>>,
    viewer: &AccountId,
    node: Option<&NodeId>,
) -> Vec<ImageView> {
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

/// An image row ([`IMAGE_COLUMNS`]) without its nodes and disks, plus its sequence number.
pub(crate) fn image_from_row(mut row: Row) -> StoreResult<(i64, Image)> {
    let image = Image {
        id: ImageId::parse(&row.text(1)?).map_err(corrupt)?,
        name: row.text(2)?,
        owner: row.maybe_text(3)?.as_deref().map(account_from).transpose()?,
        architecture: row.text(4)?,
        platform: row.text(5)?,
        os_type: row.text(6)?,
        size_gib: to_u64(row.int(7)?, "image size")?,
        creation_time: parse_time(&row.text(8)?)?,
        snapshot_id: row.maybe_text(9)?,
        nodes: Vec::new(),
        disk_device_mappings: Vec::new(),
        status: status_from(&row.text(10)?)?,
        instance_id: row.maybe_text(11)?,
        compute_type: row.text(12)?,
        os_version: row.text(13)?,
        description: row.text(14)?,
    };
    Ok((row.int(0)?, image))
}

/// A registered instance ([`INSTANCE_COLUMNS`]).
pub(crate) fn instance_from_row(mut row: Row) -> StoreResult<Instance> {
    let disks = row.text(10)?;
    Ok(Instance {
        id: row.text(0)?,
        owner: account_from(&row.text(1)?)?,
        node: node_from(&row.text(2)?)?,
        image_id: row
            .maybe_text(3)?
            .as_deref()
            .map(ImageId::parse)
            .transpose()
            .map_err(corrupt)?,
        platform: row.text(4)?,
        os_type: row.text(5)?,
        os_version: row.text(6)?,
        architecture: row.text(7)?,
        compute_type: row.text(8)?,
        system_disk_gib: to_u64(row.int(9)?, "disk size")?,
        data_disks_gib: disks
            .split(',')
            .filter(|size| !size.is_empty())
            .map(|size| size.parse::<u64>().map_err(corrupt))
            .collect::<StoreResult<_>>()?,
        build_failure: failure_from(row.maybe_text(11)?)?,
    })
}

/// A registered snapshot ([`SNAPSHOT_COLUMNS`]).
pub(crate) fn snapshot_from_row(mut row: Row) -> StoreResult<Snapshot> {
    Ok(Snapshot {
        id: row.text(0)?,
        owner: account_from(&row.text(1)?)?,
        node: node_from(&row.text(2)?)?,
        instance_id: row.maybe_text(3)?,
        platform: row.text(4)?,
        os_type: row.text(5)?,
        os_version: row.text(6)?,
        architecture: row.text(7)?,
        size_gib: to_u64(row.int(8)?, "snapshot size")?,
        build_failure: failure_from(row.maybe_text(9)?)?,
    })
}

/// The owner or RAM user a key acts for, from its `account_id` and `user_name` columns.
pub(crate) fn principal_from(row: &mut Row, account: usize, user: usize) -> StoreResult<Principal> {
    Ok(Principal {
        account: account_from(&row.text(account)?)?,
        user: row.maybe_text(user)?.as_deref().map(user_from).transpose()?,
    })
}
