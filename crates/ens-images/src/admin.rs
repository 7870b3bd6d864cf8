//! `ens-images admin`: operator commands that work on the store directly, beside or without
//! a running server (which sees every change at once: it reads the store on each request).
//!
//! Every command prints JSON on stdout, so scripts and tests can read the result.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use ens_domain::validation::{validate_compute_type, validate_short_name, validate_text};
use ens_domain::{
    AccessKeyId, AccessKeyStatus, AccountId, BuildFailure, ImageId, Instance, NodeId, Principal, RamUserName,
    Snapshot,
};
use ens_policy::PolicyDocument;
use ens_server::secrets::MasterKey;
use ens_store::generate::generate_catalog;
use ens_store::{AdminStore, AuditFilter, GenerateSpec, GeneratedAccount, Store};
use rand::Rng;
use serde_json::{json, Value};

use crate::{database, setup};

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
    #[command(flatten)]
    database: database::DatabaseArgs,
    #[command(flatten)]
    master_key: setup::MasterKeyArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Accounts: each has its own images, shares and AccessKeys.
    #[command(subcommand)]
    Account(AccountCommand),
    /// RAM users: identities inside an account whose rights come from policies.
    #[command(subcommand)]
    User(UserCommand),
    /// AccessKeys: the ID/secret pairs that sign API requests for an account or a RAM user.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Policies: RAM policy documents attached to users.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit log: every write and every refused call.
    Audit(AuditArgs),
    /// Instances that CreateImage can capture (a registry: the service runs no instances).
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Snapshots that CreateImage can turn into images.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Fills the store with a large synthetic catalog for benchmarks (accounts, instances,
    /// custom images, shares), then prints sample accounts with new AccessKeys.
    Generate(GenerateArgs),
    /// Copies the embedded store, consistent as of one moment, to a new file while the service
    /// keeps running (PostgreSQL: use pg_dump). Restore: README, "Backup and restore".
    Backup {
        /// The new file to write (refused if it exists); written as FILE.partial, then renamed.
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
}

/// The shape of `admin generate`'s catalog; the same seed always gives the same catalog.
#[derive(Args)]
struct GenerateArgs {
    /// Custom images in total, the heavy account's included.
    #[arg(long, default_value_t = 1_000_000)]
    images: u64,
    /// Ordinary accounts, which share the images the heavy account does not own.
    #[arg(long, default_value_t = 10_000)]
    accounts: u64,
    /// Images owned by one extra "heavy" account.
    #[arg(long, default_value_t = 100_000)]
    heavy_images: u64,
    /// Image shares, each from an image's owner to another ordinary account (default:
    /// images / 100).
    #[arg(long)]
    shares: Option<u64>,
    /// Chooses the generated IDs (account IDs 88<seed:6 digits><index:10 digits>, image IDs
    /// m-gen<seed:6><index:16>); another catalog in the same store needs another seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Creates an account with one AccessKey; prints the key's secret (shown only here).
    Create,
    /// Lists accounts with their AccessKey IDs.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a RAM user (with no rights until a policy is attached).
    Create {
        /// The account the user belongs to.
        #[arg(long)]
        account: String,
        /// The user's name, unique in the account.
        #[arg(long)]
        name: String,
    },
    /// Deletes a RAM user, its AccessKeys and its policy attachments.
    Delete {
        /// The account the user belongs to.
        #[arg(long)]
        account: String,
        /// The user's name.
        #[arg(long)]
        name: String,
    },
    /// Lists RAM users with their keys and policies.
    List {
        /// Only the users of this account.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Creates an AccessKey for an account's owner, or for a RAM user with --user; prints
    /// its secret (shown only here).
    Create {
        /// The account the key acts in.
        #[arg(long)]
        account: String,
        /// The RAM user the key acts for (default: the account's owner).
        #[arg(long)]
        user: Option<String>,
    },
    /// Disables a key: its calls get InvalidAccessKeyId.Inactive at once.
    Disable {
        /// The AccessKey ID.
        id: String,
    },
    /// Enables a disabled key.
    Enable {
        /// The AccessKey ID.
        id: String,
    },
    /// Deletes a key: its calls get InvalidAccessKeyId.NotFound at once.
    Delete {
        /// The AccessKey ID.
        id: String,
    },
    /// Lists AccessKeys (never their secrets).
    List {
        /// Only the keys of this account.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Stores a policy document read from a JSON file, after validating it.
    Create {
        /// The account the policy belongs to.
        #[arg(long)]
        account: String,
        /// The policy's name, unique in the account.
        #[arg(long)]
        name: String,
        /// The JSON document (RAM syntax: Version "1", Statement [...]).
        #[arg(long)]
        file: PathBuf,
    },
    /// Deletes a policy that is attached to nobody.
    Delete {
        /// The account the policy belongs to.
        #[arg(long)]
        account: String,
        /// The policy's name.
        #[arg(long)]
        name: String,
    },
    /// Attaches a policy to a RAM user.
    Attach(Attachment),
    /// Detaches a policy from a RAM user.
    Detach(Attachment),
    /// Lists policies with their documents and attachments.
    List {
        /// Only the policies of this account.
        #[arg(long)]
        account: Option<String>,
    },
}

/// A policy and the RAM user it is (to be) attached to.
#[derive(Args)]
struct Attachment {
    /// The account of the user and the policy.
    #[arg(long)]
    account: String,
    /// The policy's name.
    #[arg(long)]
    name: String,
    /// The user's name.
    #[arg(long)]
    user: String,
}

/// Filters of `admin audit`.
#[derive(Args)]
struct AuditArgs {
    /// Only calls in this account.
    #[arg(long)]
    account: Option<String>,
    /// Only this action, e.g. DeleteImage.
    #[arg(long)]
    action: Option<String>,
    /// Only this outcome: Success or an error code such as NoPermission.
    #[arg(long)]
    outcome: Option<String>,
    /// Only records at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// At most this many records, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
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

impl SourceArgs {
    /// The API's own rules for what every image made from this source will carry.
    fn validate(&self) -> anyhow::Result<()> {
        validate_short_name("--platform", &self.platform)?;
        validate_short_name("--architecture", &self.architecture)?;
        validate_text("--os-version", &self.os_version)?;
        Ok(())
    }
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
    Ok(ens_server::control::new_key_pair()?)
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
    let opened = database::open_for_admin(&args.database, &args.data_dir).await?;
    let store: &Store = &opened;
    // Only the commands that seal a new secret read the master key: a backup copies sealed
    // secrets as they are.
    let master_key = || setup::master_key(&args.master_key, &args.data_dir, false);
    let now = time::OffsetDateTime::now_utc();
    let output = match args.command {
        AdminCommand::Account(AccountCommand::Create) => {
            let id = setup::random_account_id()?;
            let (key, secret) = new_key_pair()?;
            store
                .create_account_with_key(&id, &key, &master_key()?.seal(&secret), now)
                .await?;
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
                            "AccessKeyIds": keys.iter().filter(|k| k.principal.account == summary.id && k.principal.user.is_none())
                                .map(|k| k.id.as_str()).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            )
        }
        AdminCommand::Key(KeyCommand::Create { account: owner, user }) => {
            let principal = Principal {
                account: account(&owner)?,
                user: user
                    .as_deref()
                    .map(|name| RamUserName::parse("--user", name))
                    .transpose()?,
            };
            let (key, secret) = new_key_pair()?;
            store
                .create_access_key(&principal, &key, &master_key()?.seal(&secret), now)
                .await?;
            json!({
                "AccountId": principal.account.as_str(),
                "UserName": principal.user.as_ref().map(RamUserName::as_str),
                "AccessKeyId": key.as_str(),
                "AccessKeySecret": secret,
            })
        }
        AdminCommand::Key(KeyCommand::Disable { id }) => {
            let key = AccessKeyId::parse(&id)?;
            store
                .set_access_key_status(&key, AccessKeyStatus::Inactive)
                .await?;
            json!({"AccessKeyId": key.as_str(), "Status": "Inactive"})
        }
        AdminCommand::Key(KeyCommand::Enable { id }) => {
            let key = AccessKeyId::parse(&id)?;
            store.set_access_key_status(&key, AccessKeyStatus::Active).await?;
            json!({"AccessKeyId": key.as_str(), "Status": "Active"})
        }
        AdminCommand::Key(KeyCommand::Delete { id }) => {
            let key = AccessKeyId::parse(&id)?;
            store.delete_access_key(&key).await?;
            json!({"AccessKeyId": key.as_str(), "Deleted": true})
        }
        AdminCommand::User(command) => user_command(store, command, now).await?,
        AdminCommand::Policy(command) => policy_command(store, command, now).await?,
        AdminCommand::Audit(filters) => audit_command(store, filters).await?,
        AdminCommand::Key(KeyCommand::List { account: owner }) => {
            let owner = owner.as_deref().map(account).transpose()?;
            let keys = store.access_keys(owner.as_ref()).await?;
            Value::Array(
                keys.iter()
                    .map(|key| {
                        json!({
                            "AccessKeyId": key.id.as_str(),
                            "AccountId": key.principal.account.as_str(),
                            "UserName": key.principal.user.as_ref().map(RamUserName::as_str),
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
            source.validate()?;
            validate_compute_type("--compute-type", &compute_type)?;
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
            source.validate()?;
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
        AdminCommand::Generate(shape) => {
            generate_command(store, &args.data_dir, &master_key()?, shape, now).await?
        }
        AdminCommand::Backup { to } => {
            store
                .backup(&to)
                .await
                .with_context(|| format!("cannot back up the store to {}", to.display()))?;
            let bytes = std::fs::metadata(&to).map(|meta| meta.len()).unwrap_or_default();
            json!({"Backup": to.display().to_string(), "Bytes": bytes})
        }
    };
    crate::print_json(&output)
}

fn ens_protocol_time(value: time::OffsetDateTime) -> String {
    value
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn user_name(value: &str) -> anyhow::Result<RamUserName> {
    Ok(RamUserName::parse("--user", value)?)
}

async fn user_command(
    store: &Store,
    command: UserCommand,
    now: time::OffsetDateTime,
) -> anyhow::Result<Value> {
    Ok(match command {
        UserCommand::Create { account: owner, name } => {
            let user = store
                .create_ram_user(&account(&owner)?, &user_name(&name)?, now)
                .await?;
            json!({
                "AccountId": user.account.as_str(),
                "UserName": user.name.as_str(),
                "UserId": user.user_id,
                "CreationTime": ens_protocol_time(user.created_at),
            })
        }
        UserCommand::Delete { account: owner, name } => {
            let owner = account(&owner)?;
            let name = user_name(&name)?;
            store.delete_ram_user(&owner, &name).await?;
            json!({"AccountId": owner.as_str(), "UserName": name.as_str(), "Deleted": true})
        }
        UserCommand::List { account: owner } => {
            let owner = owner.as_deref().map(account).transpose()?;
            let users = store.ram_users(owner.as_ref()).await?;
            let keys = store.access_keys(owner.as_ref()).await?;
            let policies = store.policies(owner.as_ref()).await?;
            Value::Array(
                users
                    .iter()
                    .map(|user| {
                        let mine = |principal: &Principal| {
                            principal.account == user.account && principal.user.as_ref() == Some(&user.name)
                        };
                        json!({
                            "AccountId": user.account.as_str(),
                            "UserName": user.name.as_str(),
                            "UserId": user.user_id,
                            "CreationTime": ens_protocol_time(user.created_at),
                            "AccessKeys": keys.iter().filter(|k| mine(&k.principal))
                                .map(|k| json!({"AccessKeyId": k.id.as_str(), "Status": k.status.as_str()}))
                                .collect::<Vec<_>>(),
                            "Policies": policies.iter()
                                .filter(|p| p.account == user.account && p.attached_to.contains(&user.name))
                                .map(|p| p.name.as_str()).collect::<Vec<_>>(),
                        })
                    })
                    .collect(),
            )
        }
    })
}

async fn policy_command(
    store: &Store,
    command: PolicyCommand,
    now: time::OffsetDateTime,
) -> anyhow::Result<Value> {
    Ok(match command {
        PolicyCommand::Create {
            account: owner,
            name,
            file,
        } => {
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let document = PolicyDocument::parse(&text)
                .with_context(|| format!("invalid policy document {}", file.display()))?;
            policy_name(&name)?;
            let owner = account(&owner)?;
            store.create_policy(&owner, &name, document.source(), now).await?;
            json!({"AccountId": owner.as_str(), "PolicyName": name, "Statements": document.statements().len()})
        }
        PolicyCommand::Delete { account: owner, name } => {
            let owner = account(&owner)?;
            store.delete_policy(&owner, &name).await?;
            json!({"AccountId": owner.as_str(), "PolicyName": name, "Deleted": true})
        }
        PolicyCommand::Attach(attachment) => {
            let (owner, user) = (account(&attachment.account)?, user_name(&attachment.user)?);
            store.attach_policy(&owner, &user, &attachment.name).await?;
            attachment_json(&owner, &attachment.name, &user, true)
        }
        PolicyCommand::Detach(attachment) => {
            let (owner, user) = (account(&attachment.account)?, user_name(&attachment.user)?);
            store.detach_policy(&owner, &user, &attachment.name).await?;
            attachment_json(&owner, &attachment.name, &user, false)
        }
        PolicyCommand::List { account: owner } => {
            let owner = owner.as_deref().map(account).transpose()?;
            Value::Array(
                store
                    .policies(owner.as_ref())
                    .await?
                    .iter()
                    .map(ens_server::control::policy_json)
                    .collect(),
            )
        }
    })
}

/// What `policy attach` and `policy detach` print.
fn attachment_json(owner: &AccountId, policy: &str, user: &RamUserName, attached: bool) -> Value {
    json!({"AccountId": owner.as_str(), "PolicyName": policy, "UserName": user.as_str(), "Attached": attached})
}

/// Policy names: 1 to 128 letters, digits and `-` (the cloud's rule for custom policies).
fn policy_name(name: &str) -> anyhow::Result<()> {
    Ok(ens_domain::validation::validate_policy_name("--name", name)?)
}

async fn audit_command(store: &Store, filters: AuditArgs) -> anyhow::Result<Value> {
    let since = filters
        .since
        .as_deref()
        .map(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .with_context(|| format!("--since must be an RFC 3339 time, got {text:?}"))
        })
        .transpose()?;
    let filter = AuditFilter {
        account: filters.account.as_deref().map(account).transpose()?,
        action: filters.action,
        outcome: filters.outcome,
        since,
        limit: filters.limit,
    };
    Ok(Value::Array(
        store
            .audit_entries(&filter)
            .await?
            .iter()
            .map(|entry| {
                json!({
                    "Time": ens_protocol_time(entry.at),
                    "RequestId": entry.request_id,
                    "AccountId": entry.account.as_ref().map(AccountId::as_str),
                    "UserName": entry.user.as_ref().map(RamUserName::as_str),
                    "AccessKeyId": entry.access_key_id,
                    "Action": entry.action,
                    "Resource": entry.resource,
                    "SourceIp": entry.source_ip,
                    "Outcome": entry.outcome,
                    "Repeats": entry.repeats,
                })
            })
            .collect(),
    ))
}

/// `admin generate`: sets the store up as `serve` does when it is new (the built-in catalog
/// and the owner account; nothing changes in a store that has them), generates the catalog,
/// and gives the heavy and the first ordinary account an owner AccessKey each.
async fn generate_command(
    store: &Store,
    data_dir: &Path,
    master_key: &MasterKey,
    shape: GenerateArgs,
    now: time::OffsetDateTime,
) -> anyhow::Result<Value> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    setup::load_catalog(store, None).await?;
    setup::ensure_owner_account(store, setup::OwnerCredentials::File(data_dir), master_key).await?;
    let spec = GenerateSpec {
        images: shape.images,
        accounts: shape.accounts,
        heavy_images: shape.heavy_images,
        shares: shape.shares.unwrap_or(shape.images / 100),
        seed: shape.seed,
        now,
    };
    spec.validate().context("cannot generate this catalog")?;
    let started = std::time::Instant::now();
    let made = generate_catalog(store, &spec)
        .await
        .context("catalog generation failed (nothing was written)")?;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let heavy = sample_json(store, master_key, &made.heavy, now).await?;
    let ordinary = match &made.ordinary {
        Some(sample) => sample_json(store, master_key, sample, now).await?,
        None => Value::Null,
    };
    let node = made
        .ordinary
        .as_ref()
        .and_then(|sample| sample.image_node.as_ref())
        .map(NodeId::as_str);
    Ok(json!({
        "images": spec.images,
        "accounts": spec.accounts,
        "heavy_images": spec.heavy_images,
        "shares": spec.shares,
        "seed": spec.seed,
        "elapsed_ms": elapsed_ms,
        "heavy": heavy,
        "ordinary": ordinary,
        "node": node,
    }))
}

/// A generated account with a new owner AccessKey, as the benchmark reads it.
async fn sample_json(
    store: &Store,
    master_key: &MasterKey,
    sample: &GeneratedAccount,
    now: time::OffsetDateTime,
) -> anyhow::Result<Value> {
    let owner = Principal {
        account: sample.account.clone(),
        user: None,
    };
    let (key, secret) = new_key_pair()?;
    store
        .create_access_key(&owner, &key, &master_key.seal(&secret), now)
        .await?;
    Ok(json!({
        "account": sample.account.as_str(),
        "access_key_id": key.as_str(),
        "access_key_secret": secret,
        "instance_id": sample.instance_id,
        "image_id": sample.image_id.as_ref().map(ImageId::as_str),
        "image_name": sample.image_name,
    }))
}
