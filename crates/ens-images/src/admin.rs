//! `ens-images admin`: operator commands that work on the store directly, beside or without
//! a running server (which sees every change at once: it reads the store on each request).
//!
//! Every command prints JSON on stdout, so scripts and tests can read the result.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ens_domain::{AccessKeyId, AccountId, BuildFailure, ImageId, Instance, NodeId, Snapshot};
use ens_store::{SqliteStore, Store};
use rand::distributions::{Alphanumeric, DistString};
use rand::Rng;
use serde_json::{json, Value};

use crate::setup;

/// Where the store is.
#[derive(Args)]
pub struct AdminArgs {
    /// Directory of the embedded store (the one `serve --data-dir` uses).
    #[arg(
        long,
        env = "ENS_IMAGES_DATA_DIR",
        default_value = "./ens-data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Accounts: each has its own images, shares and AccessKeys.
    #[command(subcommand)]
    Account(AccountCommand),
    /// AccessKeys: the ID/secret pairs that sign API requests for an account.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Instances that CreateImage can capture (a registry: the service runs no instances).
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Snapshots that CreateImage can turn into images.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Creates an account with one AccessKey; prints the key's secret (shown only here).
    Create,
    /// Lists accounts with their AccessKey IDs.
    List,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Creates another AccessKey for an account; prints its secret (shown only here).
    Create {
        /// The account the key acts for.
        #[arg(long)]
        account: String,
    },
    /// Lists AccessKeys (never their secrets).
    List {
        /// Only the keys of this account.
        #[arg(long)]
        account: Option<String>,
    },
}

/// What an image built from a source takes from it.
#[derive(Args)]
struct SourceArgs {
    /// Owner account.
    #[arg(long)]
    account: String,
    /// ENS node, e.g. cn-dalian-unicom.
    #[arg(long)]
    node: String,
    /// Distribution, e.g. centos, ubuntu, windows.
    #[arg(long, default_value = "centos")]
    platform: String,
    /// linux or windows.
    #[arg(long, default_value = "linux")]
    os_type: String,
    /// OS version, e.g. 7.9.
    #[arg(long, default_value = "7.9")]
    os_version: String,
    /// e.g. x86_64.
    #[arg(long, default_value = "x86_64")]
    architecture: String,
    /// Make image builds from this source fail at a step (pack or upload), to exercise
    /// the Pack_failed / Upload_failed statuses.
    #[arg(long)]
    fail_build: Option<String>,
}

#[derive(Subcommand)]
enum InstanceCommand {
    /// Registers an instance; prints it.
    Add {
        #[command(flatten)]
        source: Box<SourceArgs>,
        /// Instance ID (default: i- plus 25 random lower-case alphanumerics).
        #[arg(long)]
        id: Option<String>,
        /// Image the instance runs (that image then cannot be deleted).
        #[arg(long)]
        image: Option<String>,
        /// ens_vm, arm_vm, bare_metal, ...
        #[arg(long, default_value = "ens_vm")]
        compute_type: String,
        /// System disk size in GiB.
        #[arg(long, default_value_t = 40)]
        system_disk: u64,
        /// A data disk size in GiB; repeat for several.
        #[arg(long)]
        data_disk: Vec<u64>,
    },
    /// Lists registered instances.
    List,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Registers a snapshot; prints it.
    Add {
        #[command(flatten)]
        source: Box<SourceArgs>,
        /// Snapshot ID (default: sp- plus 25 random lower-case alphanumerics).
        #[arg(long)]
        id: Option<String>,
        /// Instance whose disk the snapshot captured.
        #[arg(long)]
        instance: Option<String>,
        /// Size in GiB.
        #[arg(long, default_value_t = 40)]
        size: u64,
    },
    /// Lists registered snapshots.
    List,
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..25)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

fn account(value: &str) -> anyhow::Result<AccountId> {
    Ok(AccountId::parse("--account", value)?)
}

fn resource_id(field: &'static str, value: Option<String>, prefix: &str) -> anyhow::Result<String> {
    let id = value.unwrap_or_else(|| format!("{prefix}{}", random_suffix()));
    ens_domain::image::validate_resource_id(field, &id)?;
    Ok(id)
}

fn failure(value: Option<&str>) -> anyhow::Result<Option<BuildFailure>> {
    value
        .map(|text| {
            BuildFailure::parse(text)
                .with_context(|| format!("--fail-build must be pack or upload, got {text:?}"))
        })
        .transpose()
}

fn os_type(value: &str) -> anyhow::Result<String> {
    if value != "linux" && value != "windows" {
        bail!("--os-type must be linux or windows, got {value:?}");
    }
    Ok(value.to_owned())
}

/// A fresh AccessKey pair in the cloud's style (`LTAI` + 20 characters, 30-character secret).
pub fn new_key_pair() -> anyhow::Result<(AccessKeyId, String)> {
    let id = AccessKeyId::parse(&format!(
        "LTAI{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 20)
    ))?;
    Ok((id, Alphanumeric.sample_string(&mut rand::thread_rng(), 30)))
}

fn instance_json(instance: &Instance) -> Value {
    json!({
        "InstanceId": instance.id,
        "AccountId": instance.owner.as_str(),
        "EnsRegionId": instance.node.as_str(),
        "ImageId": instance.image_id.as_ref().map(ImageId::as_str),
        "Platform": instance.platform,
        "OSType": instance.os_type,
        "OSVersion": instance.os_version,
        "Architecture": instance.architecture,
        "ComputeType": instance.compute_type,
        "SystemDiskSize": instance.system_disk_gib,
        "DataDiskSizes": instance.data_disks_gib,
        "FailBuild": instance.build_failure.map(BuildFailure::as_str),
    })
}

fn snapshot_json(snapshot: &Snapshot) -> Value {
    json!({
        "SnapshotId": snapshot.id,
        "AccountId": snapshot.owner.as_str(),
        "EnsRegionId": snapshot.node.as_str(),
        "InstanceId": snapshot.instance_id,
        "Platform": snapshot.platform,
        "OSType": snapshot.os_type,
        "OSVersion": snapshot.os_version,
        "Architecture": snapshot.architecture,
        "Size": snapshot.size_gib,
        "FailBuild": snapshot.build_failure.map(BuildFailure::as_str),
    })
}

/// Runs one admin command and prints its JSON result.
pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let path = args.data_dir.join(setup::STORE_FILE);
    if !path.exists() {
        bail!(
            "no store at {}: start `ens-images serve --data-dir {}` once first",
            path.display(),
            args.data_dir.display()
        );
    }
    let store = SqliteStore::open(&path).await.context("cannot open the store")?;
    let now = time::OffsetDateTime::now_utc();
    let output = match args.command {
        AdminCommand::Account(AccountCommand::Create) => {
            let id = setup::random_account_id()?;
            let (key, secret) = new_key_pair()?;
            store.create_account_with_key(&id, &key, &secret, now).await?;
            json!({"AccountId": id.as_str(), "AccessKeyId": key.as_str(), "AccessKeySecret": secret})
        }
        AdminCommand::Account(AccountCommand::List) => {
            let keys = store.access_keys(None).await?;
            let accounts = store.accounts().await?;
            Value::Array(
                accounts
                    .iter()
                    .map(|summary| {
                        json!({
                            "AccountId": summary.id.as_str(),
                            "CreationTime": ens_protocol_time(summary.created_at),
                            "AccessKeyIds": keys.iter().filter(|k| k.account == summary.id)
                                .map(|k| k.id.as_str()).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            )
        }
        AdminCommand::Key(KeyCommand::Create { account: owner }) => {
            let owner = account(&owner)?;
            let (key, secret) = new_key_pair()?;
            store.create_access_key(&owner, &key, &secret, now).await?;
            json!({"AccountId": owner.as_str(), "AccessKeyId": key.as_str(), "AccessKeySecret": secret})
        }
        AdminCommand::Key(KeyCommand::List { account: owner }) => {
            let owner = owner.as_deref().map(account).transpose()?;
            let keys = store.access_keys(owner.as_ref()).await?;
            Value::Array(
                keys.iter()
                    .map(|key| {
                        json!({
                            "AccessKeyId": key.id.as_str(),
                            "AccountId": key.account.as_str(),
                            "Status": key.status.as_str(),
                            "CreationTime": ens_protocol_time(key.created_at),
                        })
                    })
                    .collect(),
            )
        }
        AdminCommand::Instance(InstanceCommand::Add {
            source,
            id,
            image,
            compute_type,
            system_disk,
            data_disk,
        }) => {
            let instance = Instance {
                id: resource_id("--id", id, "i-")?,
                owner: account(&source.account)?,
                node: NodeId::parse("--node", &source.node)?,
                image_id: image.as_deref().map(ImageId::parse).transpose()?,
                platform: source.platform,
                os_type: os_type(&source.os_type)?,
                os_version: source.os_version,
                architecture: source.architecture,
                compute_type,
                system_disk_gib: system_disk,
                data_disks_gib: data_disk,
                build_failure: failure(source.fail_build.as_deref())?,
            };
            store.add_instance(&instance).await?;
            instance_json(&instance)
        }
        AdminCommand::Instance(InstanceCommand::List) => {
            Value::Array(store.sources().await?.0.iter().map(instance_json).collect())
        }
        AdminCommand::Snapshot(SnapshotCommand::Add {
            source,
            id,
            instance,
            size,
        }) => {
            let snapshot = Snapshot {
                id: resource_id("--id", id, "sp-")?,
                owner: account(&source.account)?,
                node: NodeId::parse("--node", &source.node)?,
                instance_id: instance,
                platform: source.platform,
                os_type: os_type(&source.os_type)?,
                os_version: source.os_version,
                architecture: source.architecture,
                size_gib: size,
                build_failure: failure(source.fail_build.as_deref())?,
            };
            store.add_snapshot(&snapshot).await?;
            snapshot_json(&snapshot)
        }
        AdminCommand::Snapshot(SnapshotCommand::List) => {
            Value::Array(store.sources().await?.1.iter().map(snapshot_json).collect())
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn ens_protocol_time(value: time::OffsetDateTime) -> String {
    value
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
