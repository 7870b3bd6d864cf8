//! Which store a `(region, bucket)` pair means.
//!
//! `ImportImage` and `ExportImage` name the operator's object storage by OSS region and bucket.
//! The operator says what each pair is, a folder on this machine or a bucket of an
//! S3-compatible service, in an optional JSON file (`serve --buckets FILE`):
//!
//! ```json
//! {
//!   "buckets": [
//!     { "region": "cn-beijing", "bucket": "images-in", "local": "/srv/buckets/images-in" },
//!     { "region": "*", "bucket": "exports",
//!       "s3": { "endpoint": "http://127.0.0.1:9000", "bucket": "real-bucket-name",
//!               "region": "us-east-1", "credentials_file": "/etc/ens-images/s3.json",
//!               "allow_http": true, "url": "http://127.0.0.1:9000/real-bucket-name" } }
//!   ],
//!   "local_root": "/srv/buckets",
//!   "image_files": { "local": "/srv/image-files" }
//! }
//! ```
//!
//! - `buckets`: each entry maps one `region` (or `*`, any region) and OSS `bucket` name to
//!   either `local`, a folder used as the bucket's root (it must exist), or `s3`:
//!   - `endpoint` (required), `bucket` (the real bucket's name, required), `region` (default
//!     `us-east-1`); requests are path-style (`<endpoint>/<bucket>/<key>`);
//!   - credentials: `credentials_file`, a JSON file
//!     `{"access_key_id": "...", "secret_access_key": "...", "session_token": "..."}` (the
//!     token is optional); or `access_key_id_env` and `secret_access_key_env`, the names of
//!     the environment variables holding them; with neither, the standard
//!     `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`;
//!   - `allow_http` (default false) must be true for an `http://` endpoint;
//!   - `url`: the public base of the bucket, used for `ExportedImageURL` (default
//!     `<endpoint>/<bucket>`).
//! - `local_root` (default `<data-dir>/buckets`): any bucket name the entries do not map is
//!   the folder `<local_root>/<bucket>` when that folder exists. No bucket is ever created.
//! - `image_files` (default `{"local": "<data-dir>/image-files"}`, created if missing): where
//!   the service keeps its own image files, `{"local": FOLDER}` or `{"s3": {...}}` as above.
//!   Replicas of the service must share it.
//!
//! Unknown fields are refused, so a misspelt option is an error rather than a silent
//! default. A pair resolves to its exact `(region, bucket)` entry first, then to the
//! `("*", bucket)` entry, then to the `local_root` folder. Paths in the file are taken as
//! given (relative ones from the working directory).
//!
//! Secrets are read when the buckets are opened and handed to the S3 client; nothing here
//! keeps or prints them (the credentials' `Debug` redacts them).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ens_domain::transfer::{validate_bucket_name, validate_object_key};
use ens_domain::InvalidField;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use serde::Deserialize;
use url::Url;

use crate::transfer::ImageFiles;

/// The `region` of an entry that serves its bucket name in every region.
const ANY_REGION: &str = "*";

/// S3 region used when an `s3` entry names none.
const DEFAULT_S3_REGION: &str = "us-east-1";

/// Why the buckets could not be opened, or a bucket not found.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The `--buckets` file could not be read.
    #[error("cannot read the bucket configuration {}: {source}", path.display())]
    ConfigUnreadable {
        /// The file.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
    /// The `--buckets` file is not valid JSON of the documented shape.
    #[error("the bucket configuration {} is invalid: {source}", path.display())]
    ConfigInvalid {
        /// The file.
        path: PathBuf,
        /// Where and why parsing failed.
        source: serde_json::Error,
    },
    /// A configured store cannot be used as written.
    #[error("bucket configuration, {store}: {reason}")]
    Misconfigured {
        /// Which entry (`region/bucket` or `image_files`).
        store: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing maps this region and bucket.
    #[error("bucket {bucket} does not exist in region {region}")]
    UnknownBucket {
        /// The requested region.
        region: String,
        /// The requested bucket.
        bucket: String,
    },
    /// A bucket name, object key or image ID that could reach outside its store.
    #[error(transparent)]
    InvalidName(#[from] InvalidField),
    /// The object storage failed.
    #[error("object storage failed: {0}")]
    Storage(#[from] object_store::Error),
    /// A local image folder could not be removed.
    #[error("cannot remove {}: {source}", path.display())]
    Removal {
        /// The folder.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
}

/// The operator's description of the buckets (see the module doc for the format): read once
/// at start, then turned into [`Buckets`] by [`Buckets::open`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketConfig {
    #[serde(default)]
    buckets: Vec<BucketEntry>,
    #[serde(default)]
    local_root: Option<PathBuf>,
    #[serde(default)]
    image_files: Option<StoreEntry>,
    #[serde(skip)]
    data_dir: PathBuf,
}

impl BucketConfig {
    /// Reads the `--buckets` file when there is one (else every default applies); the
    /// defaults live under `data_dir`.
    ///
    /// # Errors
    /// `ConfigUnreadable` or `ConfigInvalid`, naming the file.
    pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<Self, ObjectError> {
        let mut config = match file {
            None => Self::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ObjectError::ConfigUnreadable {
                    path: path.to_owned(),
                    source,
                })?;
                serde_json::from_str(&text).map_err(|source| ObjectError::ConfigInvalid {
                    path: path.to_owned(),
                    source,
                })?
            }
        };
        data_dir.clone_into(&mut config.data_dir);
        Ok(config)
    }
}

/// One `buckets` entry: a region and OSS bucket name, and the store behind them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketEntry {
    region: String,
    bucket: String,
    #[serde(default)]
    local: Option<PathBuf>,
    #[serde(default)]
    s3: Option<S3Config>,
}

/// The `image_files` entry: a store without a name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreEntry {
    #[serde(default)]
    local: Option<PathBuf>,
    #[serde(default)]
    s3: Option<S3Config>,
}

/// An S3-compatible bucket; holds where the secrets are, never the secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Config {
    endpoint: String,
    bucket: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    credentials_file: Option<PathBuf>,
    #[serde(default)]
    access_key_id_env: Option<String>,
    #[serde(default)]
    secret_access_key_env: Option<String>,
    #[serde(default)]
    allow_http: bool,
    #[serde(default)]
    url: Option<String>,
}

/// What one configured store is, once exactly one of `local` and `s3` was given.
enum StoreKind<'a> {
    Local(&'a Path),
    S3(&'a S3Config),
}

impl<'a> StoreKind<'a> {
    fn choose(
        local: Option<&'a PathBuf>,
        s3: Option<&'a S3Config>,
        label: &str,
    ) -> Result<Self, ObjectError> {
        match (local, s3) {
            (Some(folder), None) => Ok(Self::Local(folder)),
            (None, Some(s3)) => Ok(Self::S3(s3)),
            _ => Err(misconfigured(label, "give exactly one of \"local\" and \"s3\"")),
        }
    }
}

/// S3 keys as read from a credentials file or the environment.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct S3Credentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl S3Credentials {
    /// Finds the keys where `config` says they are (see the module doc).
    fn resolve(config: &S3Config, label: &str) -> Result<Self, ObjectError> {
        let by_env_names = (&config.access_key_id_env, &config.secret_access_key_env);
        match (&config.credentials_file, by_env_names) {
            (Some(file), (None, None)) => Self::read_file(file, label),
            (None, (Some(key_id), Some(secret))) => Ok(Self {
                access_key_id: required_env(key_id, label)?,
                secret_access_key: required_env(secret, label)?,
                session_token: None,
            }),
            (None, (None, None)) => Ok(Self {
                access_key_id: required_env("AWS_ACCESS_KEY_ID", label)?,
                secret_access_key: required_env("AWS_SECRET_ACCESS_KEY", label)?,
                session_token: std::env::var("AWS_SESSION_TOKEN").ok().filter(|token| !token.is_empty()),
            }),
            _ => Err(misconfigured(
                label,
                "give either \"credentials_file\" or both \"access_key_id_env\" and \"secret_access_key_env\"",
            )),
        }
    }

    /// Reads a credentials file; its errors name the place, never the content.
    fn read_file(file: &Path, label: &str) -> Result<Self, ObjectError> {
        let text = std::fs::read_to_string(file).map_err(|error| {
            misconfigured(
                label,
                format!("cannot read credentials file {}: {error}", file.display()),
            )
        })?;
        serde_json::from_str(&text).map_err(|error| {
            misconfigured(
                label,
                format!(
                    "credentials file {} is not {{\"access_key_id\", \"secret_access_key\"[, \"session_token\"]}} (line {}, column {})",
                    file.display(),
                    error.line(),
                    error.column()
                ),
            )
        })
    }
}

/// The value of the environment variable `name`, which must be set and non-empty.
fn required_env(name: &str, label: &str) -> Result<String, ObjectError> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(misconfigured(
            label,
            format!("the environment variable {name} with the S3 credentials is not set"),
        )),
    }
}

fn misconfigured(label: &str, reason: impl Into<String>) -> ObjectError {
    ObjectError::Misconfigured {
        store: label.to_owned(),
        reason: reason.into(),
    }
}

/// Every bucket the service can reach, and its own image files: opened once from the
/// configuration and shared (cloning is cheap).
#[derive(Debug, Clone)]
pub struct Buckets {
    inner: Arc<Resolver>,
}

#[derive(Debug)]
struct Resolver {
    /// Entries for one region: region, then bucket name.
    exact: HashMap<String, HashMap<String, Bucket>>,
    /// Entries for region `*`, by bucket name.
    any_region: HashMap<String, Bucket>,
    /// Where unlisted bucket names may be found as folders.
    local_root: PathBuf,
    image_files: ImageFiles,
}

impl Buckets {
    /// Opens every configured store: checks the folders exist, reads the S3 credentials and
    /// builds the clients (no request is sent), so mistakes show at start, not at the first
    /// import.
    ///
    /// # Errors
    /// `Misconfigured` naming the entry that cannot be used.
    pub fn open(config: BucketConfig) -> Result<Self, ObjectError> {
        let mut exact: HashMap<String, HashMap<String, Bucket>> = HashMap::new();
        let mut any_region = HashMap::new();
        for entry in &config.buckets {
            let label = format!("{}/{}", entry.region, entry.bucket);
            if entry.region.is_empty() {
                return Err(misconfigured(
                    &label,
                    "the region is empty (use \"*\" for any region)",
                ));
            }
            validate_bucket_name("bucket", &entry.bucket)
                .map_err(|invalid| misconfigured(&label, invalid.reason))?;
            let kind = StoreKind::choose(entry.local.as_ref(), entry.s3.as_ref(), &label)?;
            let bucket = Bucket::open(&entry.bucket, kind, &label)?;
            let previous = if entry.region == ANY_REGION {
                any_region.insert(entry.bucket.clone(), bucket)
            } else {
                exact
                    .entry(entry.region.clone())
                    .or_default()
                    .insert(entry.bucket.clone(), bucket)
            };
            if previous.is_some() {
                return Err(misconfigured(
                    &label,
                    "this region and bucket are configured twice",
                ));
            }
        }
        let local_root = config
            .local_root
            .clone()
            .unwrap_or_else(|| config.data_dir.join("buckets"));
        let image_files = Self::open_image_files(&config)?;
        Ok(Self {
            inner: Arc::new(Resolver {
                exact,
                any_region,
                local_root,
                image_files: ImageFiles::new(image_files),
            }),
        })
    }

    /// The service's own store: as configured, else `<data-dir>/image-files`, made if
    /// missing (it is the service's, unlike the operator's buckets).
    fn open_image_files(config: &BucketConfig) -> Result<Bucket, ObjectError> {
        const LABEL: &str = "image_files";
        match &config.image_files {
            Some(entry) => {
                let kind = StoreKind::choose(entry.local.as_ref(), entry.s3.as_ref(), LABEL)?;
                Bucket::open(LABEL, kind, LABEL)
            }
            None => {
                let folder = config.data_dir.join("image-files");
                std::fs::create_dir_all(&folder).map_err(|error| {
                    misconfigured(LABEL, format!("cannot create {}: {error}", folder.display()))
                })?;
                Bucket::open(LABEL, StoreKind::Local(&folder), LABEL)
            }
        }
    }

    /// The store that `region` and `bucket` name on the wire: the exact entry, else the
    /// any-region entry, else an existing folder under `local_root`.
    ///
    /// # Errors
    /// `InvalidName` for a malformed bucket name; `UnknownBucket` when nothing maps it.
    pub fn resolve(&self, region: &str, bucket: &str) -> Result<Bucket, ObjectError> {
        validate_bucket_name("OSSBucket", bucket)?;
        let configured = self
            .inner
            .exact
            .get(region)
            .and_then(|buckets| buckets.get(bucket))
            .or_else(|| self.inner.any_region.get(bucket));
        if let Some(found) = configured {
            return Ok(found.clone());
        }
        // The name passed the bucket-name rule (lower-case letters, digits, '-'), so it is
        // one plain folder name under the root.
        let folder = self.inner.local_root.join(bucket);
        if folder.is_dir() {
            Bucket::open(bucket, StoreKind::Local(&folder), bucket)
        } else {
            Err(ObjectError::UnknownBucket {
                region: region.to_owned(),
                bucket: bucket.to_owned(),
            })
        }
    }

    /// The service's own image files, where imports land and exports start.
    #[must_use]
    pub fn image_files(&self) -> &ImageFiles {
        &self.inner.image_files
    }
}

/// One opened store: what a transfer reads from or writes to, and how its objects are named
/// to people.
#[derive(Clone)]
pub struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local folder, for the filesystem clean-ups only a folder
    /// needs.
    folder: Option<Arc<LocalFileSystem>>,
    /// Whether a transfer may copy the folder's files itself, bypassing `store` (false for
    /// S3, and for a test's store that watches the traffic).
    files_direct: bool,
    /// Base of the public URL of an object.
    public_url: Url,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.name)
            .field("store", &format_args!("{}", self.store))
            .field("public_url", &self.public_url.as_str())
            .finish()
    }
}

impl Bucket {
    fn open(name: &str, kind: StoreKind<'_>, label: &str) -> Result<Self, ObjectError> {
        match kind {
            StoreKind::Local(folder) => Self::open_local(name, folder, label),
            StoreKind::S3(config) => Self::open_s3(name, config, label),
        }
    }

    fn open_local(name: &str, folder: &Path, label: &str) -> Result<Self, ObjectError> {
        let root = std::fs::canonicalize(folder)
            .map_err(|error| misconfigured(label, format!("folder {}: {error}", folder.display())))?;
        if !root.is_dir() {
            return Err(misconfigured(
                label,
                format!("{} is not a folder", root.display()),
            ));
        }
        let public_url = Url::from_directory_path(&root)
            .map_err(|()| misconfigured(label, format!("{} has no file URL", root.display())))?;
        let local = Arc::new(LocalFileSystem::new_with_prefix(&root)?.with_fsync(true));
        Ok(Self {
            name: name.to_owned(),
            store: Arc::clone(&local) as Arc<dyn ObjectStore>,
            folder: Some(local),
            files_direct: true,
            public_url,
        })
    }

    fn open_s3(name: &str, config: &S3Config, label: &str) -> Result<Self, ObjectError> {
        if config.bucket.is_empty() || config.bucket.contains('/') {
            return Err(misconfigured(label, "the S3 bucket name is empty or holds '/'"));
        }
        let endpoint = Url::parse(&config.endpoint)
            .map_err(|error| misconfigured(label, format!("endpoint {}: {error}", config.endpoint)))?;
        if endpoint.scheme() == "http" && !config.allow_http {
            return Err(misconfigured(
                label,
                "the endpoint is http://: set \"allow_http\": true",
            ));
        }
        let public_url = match &config.url {
            Some(base) => {
                Url::parse(base).map_err(|error| misconfigured(label, format!("url {base}: {error}")))?
            }
            None => {
                let mut base = endpoint;
                base.path_segments_mut()
                    .map_err(|()| misconfigured(label, "the endpoint is not an http(s) URL"))?
                    .pop_if_empty()
                    .push(&config.bucket);
                base
            }
        };
        if public_url.cannot_be_a_base() {
            return Err(misconfigured(label, "the url is not an http(s) URL"));
        }
        let credentials = S3Credentials::resolve(config, label)?;
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(&config.endpoint)
            .with_region(config.region.as_deref().unwrap_or(DEFAULT_S3_REGION))
            .with_bucket_name(&config.bucket)
            .with_allow_http(config.allow_http)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key);
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        let store = builder
            .build()
            .map_err(|error| misconfigured(label, format!("S3 client: {error}")))?;
        Ok(Self {
            name: name.to_owned(),
            store: Arc::new(store),
            folder: None,
            files_direct: false,
            public_url,
        })
    }

    /// The bucket's name as the API gave it, for messages to image owners.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store behind the bucket, for transfers and checks.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The address of the object `key`, for `ExportedImageURL`: the configured `url` base, an
    /// S3 bucket's `<endpoint>/<bucket>`, or a folder's `file://` URL, followed by the key.
    #[must_use]
    pub fn url(&self, key: &str) -> String {
        let mut url = self.public_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(key.split('/'));
        }
        url.into()
    }

    /// The local store when the bucket is a folder.
    pub(crate) fn folder(&self) -> Option<&LocalFileSystem> {
        self.folder.as_deref()
    }

    /// The folder when a transfer may copy its files directly (see `local_copy`).
    pub(crate) fn direct_folder(&self) -> Option<&LocalFileSystem> {
        self.folder.as_deref().filter(|_| self.files_direct)
    }

    /// Removes what an upload of `key` killed mid-way left in a folder bucket: a local
    /// upload writes `<file>#<n>` beside its target and renames it only once complete, so a
    /// killed one leaves that file behind. Nothing to do on S3, where an unfinished upload
    /// is invisible (and a bucket lifecycle rule removes its parts).
    pub(crate) fn remove_staged(&self, key: &ObjectPath) -> Result<(), ObjectError> {
        let Some(folder) = &self.folder else {
            return Ok(());
        };
        let target = folder.path_to_filesystem(key)?;
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Ok(());
        };
        let staged = format!("{}#", name.to_string_lossy());
        let entries = match std::fs::read_dir(parent) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(ObjectError::Removal {
                    path: parent.to_owned(),
                    source,
                })
            }
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&staged) {
                let path = entry.path();
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "removed the leftover of an upload killed mid-way")
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(ObjectError::Removal { path, source }),
                }
            }
        }
        Ok(())
    }

    /// The same bucket reached through `store` (which must wrap this bucket's own store), so
    /// tests can watch or disturb its traffic.
    #[cfg(test)]
    pub(crate) fn with_store(mut self, store: Arc<dyn ObjectStore>) -> Self {
        self.store = store;
        self.files_direct = false;
        self
    }
}

/// The location of `key` in a store, for a key that `field` came with: the object-key rule
/// first (no `.`/`..` segment, no absolute path, no backslash), then `object_store`'s own
/// parsing, so a key is never a path outside its bucket.
pub(crate) fn object_path(field: &'static str, key: &str) -> Result<ObjectPath, InvalidField> {
    validate_object_key(field, key)?;
    ObjectPath::parse(key).map_err(|error| InvalidField::new(field, error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::{ObjectStoreExt, PutPayload};

    fn write_config(dir: &Path, json: &str) -> PathBuf {
        let path = dir.join("buckets.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    fn open(dir: &Path, json: &str) -> Result<Buckets, ObjectError> {
        let file = write_config(dir, json);
        Buckets::open(BucketConfig::load(Some(&file), dir)?)
    }

    fn folder(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// A credentials file with recognisable secrets.
    fn credentials_file(dir: &Path) -> PathBuf {
        let path = dir.join("s3.json");
        std::fs::write(
            &path,
            r#"{"access_key_id": "AKIDEXAMPLE", "secret_access_key": "TOPSECRET-KEY-123", "session_token": "TOPSECRET-TOKEN-456"}"#,
        )
        .unwrap();
        path
    }

    async fn put(bucket: &Bucket, key: &str, content: &'static [u8]) {
        let path = object_path("OSSObject", key).unwrap();
        bucket
            .store()
            .put(&path, PutPayload::from_static(content))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn entries_resolve_exact_region_first_then_any_region() {
        let dir = tempfile::tempdir().unwrap();
        let beijing = folder(dir.path(), "beijing-images");
        let anywhere = folder(dir.path(), "any-images");
        let json = format!(
            r#"{{"buckets": [
                {{"region": "cn-beijing", "bucket": "images-in", "local": "{}"}},
                {{"region": "*", "bucket": "images-in", "local": "{}"}}
            ]}}"#,
            beijing.display(),
            anywhere.display()
        );
        let buckets = open(dir.path(), &json).unwrap();

        let exact = buckets.resolve("cn-beijing", "images-in").unwrap();
        put(&exact, "a.qcow2", b"beijing").await;
        assert_eq!(std::fs::read(beijing.join("a.qcow2")).unwrap(), b"beijing");
        assert_eq!(exact.name(), "images-in");

        let other = buckets.resolve("cn-hangzhou", "images-in").unwrap();
        put(&other, "a.qcow2", b"any").await;
        assert_eq!(std::fs::read(anywhere.join("a.qcow2")).unwrap(), b"any");

        let unknown = buckets.resolve("cn-beijing", "not-there").unwrap_err();
        assert!(matches!(&unknown, ObjectError::UnknownBucket { region, bucket }
            if region == "cn-beijing" && bucket == "not-there"));
        assert_eq!(
            unknown.to_string(),
            "bucket not-there does not exist in region cn-beijing"
        );
    }

    #[tokio::test]
    async fn local_root_serves_only_existing_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = folder(dir.path(), "roots");
        folder(&root, "present");
        let json = format!(r#"{{"local_root": "{}"}}"#, root.display());
        let buckets = open(dir.path(), &json).unwrap();

        let present = buckets.resolve("cn-beijing", "present").unwrap();
        put(&present, "x/y.qcow2", b"data").await;
        assert_eq!(std::fs::read(root.join("present/x/y.qcow2")).unwrap(), b"data");
        assert_eq!(
            present.url("x/y.qcow2"),
            format!(
                "file://{}/present/x/y.qcow2",
                root.canonicalize().unwrap().display()
            )
        );

        assert!(matches!(
            buckets.resolve("cn-beijing", "absent"),
            Err(ObjectError::UnknownBucket { .. })
        ));
        assert!(!root.join("absent").exists(), "a bucket is never created");
    }

    #[test]
    fn defaults_live_under_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let buckets = Buckets::open(BucketConfig::load(None, dir.path()).unwrap()).unwrap();
        assert!(dir.path().join("image-files").is_dir());
        assert!(matches!(
            buckets.resolve("cn-beijing", "images-in"),
            Err(ObjectError::UnknownBucket { .. })
        ));
        folder(dir.path(), "buckets/images-in");
        assert_eq!(
            buckets.resolve("cn-beijing", "images-in").unwrap().name(),
            "images-in"
        );
    }

    #[test]
    fn malformed_bucket_names_are_refused_before_any_lookup() {
        let dir = tempfile::tempdir().unwrap();
        folder(dir.path(), "buckets");
        let buckets = Buckets::open(BucketConfig::load(None, dir.path()).unwrap()).unwrap();
        for name in ["..", "../buckets", "a/b", "/etc", "image-files", "UPPER"] {
            let result = buckets.resolve("cn-beijing", name);
            assert!(
                matches!(
                    result,
                    Err(ObjectError::InvalidName(_)) | Err(ObjectError::UnknownBucket { .. })
                ),
                "{name}: {result:?}"
            );
        }
        assert!(matches!(
            buckets.resolve("cn-beijing", ".."),
            Err(ObjectError::InvalidName(_))
        ));
    }

    #[test]
    fn unknown_fields_and_bad_json_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        for json in [
            r#"{"buckets": [], "local-root": "/x"}"#,
            r#"{"buckets": [{"region": "*", "bucket": "abc", "local": "/x", "colour": "red"}]}"#,
            r#"{"buckets": [{"region": "*", "bucket": "abc", "s3": {"endpoint": "http://h", "bucket": "b", "secret": "x"}}]}"#,
            r#"{"buckets": "#,
        ] {
            let error = open(dir.path(), json).unwrap_err();
            assert!(
                matches!(error, ObjectError::ConfigInvalid { .. }),
                "{json}: {error:?}"
            );
            assert!(error.to_string().contains("buckets.json"), "{error}");
        }
        let missing = BucketConfig::load(Some(&dir.path().join("nope.json")), dir.path()).unwrap_err();
        assert!(matches!(missing, ObjectError::ConfigUnreadable { .. }));
    }

    #[test]
    fn unusable_entries_are_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let existing = folder(dir.path(), "existing");
        let missing = dir.path().join("missing");
        for json in [
            format!(r#"{{"buckets": [{{"region": "*", "bucket": "abc", "local": "{}"}}]}}"#, missing.display()),
            format!(r#"{{"buckets": [{{"region": "*", "bucket": "a_b", "local": "{}"}}]}}"#, existing.display()),
            r#"{"buckets": [{"region": "*", "bucket": "abc"}]}"#.to_owned(),
            format!(
                r#"{{"buckets": [{{"region": "", "bucket": "abc", "local": "{}"}}]}}"#,
                existing.display()
            ),
            format!(
                r#"{{"buckets": [{{"region": "*", "bucket": "abc", "local": "{0}"}}, {{"region": "*", "bucket": "abc", "local": "{0}"}}]}}"#,
                existing.display()
            ),
            r#"{"buckets": [{"region": "*", "bucket": "abc", "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "b", "access_key_id_env": "ENS_OBJECTS_TEST_UNSET_ID", "secret_access_key_env": "ENS_OBJECTS_TEST_UNSET_SECRET", "allow_http": true}}]}"#.to_owned(),
            r#"{"buckets": [{"region": "*", "bucket": "abc", "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "b", "access_key_id_env": "ENS_OBJECTS_TEST_UNSET_ID"}}]}"#.to_owned(),
            format!(
                r#"{{"buckets": [{{"region": "*", "bucket": "abc", "s3": {{"endpoint": "http://127.0.0.1:9", "bucket": "b", "credentials_file": "{}"}}}}]}}"#,
                credentials_file(dir.path()).display()
            ),
            format!(r#"{{"image_files": {{"local": "{}"}}}}"#, missing.display()),
        ] {
            let error = open(dir.path(), &json).unwrap_err();
            assert!(matches!(error, ObjectError::Misconfigured { .. }), "{json}: {error:?}");
        }
    }

    #[test]
    fn missing_environment_credentials_name_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let json = r#"{"buckets": [{"region": "*", "bucket": "abc", "s3": {"endpoint": "https://s3.example", "bucket": "b", "access_key_id_env": "ENS_OBJECTS_TEST_UNSET_ID", "secret_access_key_env": "ENS_OBJECTS_TEST_UNSET_SECRET"}}]}"#;
        let error = open(dir.path(), json).unwrap_err().to_string();
        assert!(error.contains("ENS_OBJECTS_TEST_UNSET_ID"), "{error}");
    }

    #[test]
    fn s3_buckets_show_no_secret_and_name_objects_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let credentials = credentials_file(dir.path());
        let json = format!(
            r#"{{"buckets": [
                {{"region": "*", "bucket": "exports", "s3": {{"endpoint": "http://127.0.0.1:9000", "bucket": "real-bucket",
                   "region": "us-east-1", "credentials_file": "{0}", "allow_http": true}}}},
                {{"region": "cn-beijing", "bucket": "published", "s3": {{"endpoint": "http://127.0.0.1:9000/", "bucket": "other",
                   "credentials_file": "{0}", "allow_http": true, "url": "https://cdn.example/images/"}}}}
            ]}}"#,
            credentials.display()
        );
        let config = BucketConfig::load(Some(&write_config(dir.path(), &json)), dir.path()).unwrap();
        let buckets = Buckets::open(config.clone()).unwrap();
        let exports = buckets.resolve("cn-beijing", "exports").unwrap();
        let published = buckets.resolve("cn-beijing", "published").unwrap();

        let shown = [
            format!("{config:?}"),
            format!("{buckets:?}"),
            format!("{exports:?}"),
            format!("{:?}", exports.store()),
            format!("{}", exports.store()),
            format!("{published:?}"),
        ];
        for text in shown {
            assert!(!text.contains("TOPSECRET"), "{text}");
        }
        let read = S3Credentials::read_file(&credentials, "test").unwrap();
        let redacted = format!("{read:?}");
        assert!(
            !redacted.contains("TOPSECRET") && redacted.contains("AKIDEXAMPLE"),
            "{redacted}"
        );

        assert_eq!(
            exports.url("out/m-1.qcow2"),
            "http://127.0.0.1:9000/real-bucket/out/m-1.qcow2"
        );
        assert_eq!(published.url("m-1.qcow2"), "https://cdn.example/images/m-1.qcow2");
    }

    #[test]
    fn a_broken_credentials_file_is_reported_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s3.json");
        std::fs::write(
            &file,
            r#"{"access_key_id": "AKID", "secret_access_key": "TOPSECRET-KEY", "extra": 1}"#,
        )
        .unwrap();
        let error = S3Credentials::read_file(&file, "test").unwrap_err().to_string();
        assert!(
            error.contains("s3.json") && !error.contains("TOPSECRET"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn keys_never_leave_the_bucket_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = folder(dir.path(), "buckets/images-in");
        let buckets = Buckets::open(BucketConfig::load(None, dir.path()).unwrap()).unwrap();
        let bucket = buckets.resolve("cn-beijing", "images-in").unwrap();
        let outside = dir.path().join("victim");
        let absolute = outside.display().to_string();
        for key in [
            "../victim",
            "../../victim",
            "a/../../victim",
            "/etc/passwd",
            absolute.as_str(),
            "..\\victim",
            "./victim",
            "a//victim",
        ] {
            assert!(object_path("OSSObject", key).is_err(), "{key} was accepted");
        }
        // Encoded dots are plain characters of a key: the object stays inside the root.
        for key in [
            "%2e%2e/victim",
            "%2E%2E/%2e%2e/victim",
            "..%2fvictim",
            "%2e%2e%2fvictim",
        ] {
            let path = object_path("OSSObject", key).unwrap();
            bucket
                .store()
                .put(&path, PutPayload::from_static(b"x"))
                .await
                .unwrap();
            let on_disk = bucket.folder().unwrap().path_to_filesystem(&path).unwrap();
            assert!(
                on_disk.starts_with(root.canonicalize().unwrap()),
                "{key} -> {}",
                on_disk.display()
            );
            assert!(on_disk.is_file(), "{key} -> {}", on_disk.display());
        }
        assert!(!outside.exists());
        let mut top: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(
            top,
            ["buckets", "image-files"],
            "nothing written beside the buckets"
        );
    }
}
