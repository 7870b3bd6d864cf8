//! `ens-images call`: one signed API call from the command line, through the same client
//! and signers the tests use. Prints the JSON answer; a cloud error prints its body and
//! exits non-zero.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use ens_client::{Client, ClientError, SignatureVersion};
use ens_protocol::{AccessKeySecret, Action};

/// How `call` signs.
#[derive(Clone, Copy, ValueEnum)]
enum Signature {
    /// ACS3-HMAC-SHA256 (the Tea SDK's default).
    V3,
    /// RPC HMAC-SHA1 (the core SDK).
    V1,
}

/// Calls one operation: `ens-images call DescribeImages PageSize=50 EnsRegionId=cn-dalian-unicom`.
#[derive(Args)]
#[command(after_help = action_list())]
pub struct CallArgs {
    /// The operation (see the list below).
    action: String,
    /// Business parameters as Name=Value.
    params: Vec<String>,
    /// Where the service listens.
    #[arg(long, env = "ENS_IMAGES_ENDPOINT", default_value = "http://127.0.0.1:8080")]
    endpoint: String,
    /// The AccessKey ID (or AccessKeyId from --credentials-file).
    #[arg(long, env = "ENS_IMAGES_ACCESS_KEY_ID")]
    access_key_id: Option<String>,
    /// The AccessKey secret; prefer the environment variable or --credentials-file to keep it
    /// out of the shell history.
    #[arg(long, env = "ENS_IMAGES_ACCESS_KEY_SECRET", hide_env_values = true)]
    access_key_secret: Option<String>,
    /// A JSON file with AccessKeyId and AccessKeySecret, such as DIR/root-credentials.json.
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// Signature version.
    #[arg(long, value_enum, default_value = "v3")]
    signature: Signature,
}

fn action_list() -> String {
    let names: Vec<&str> = Action::ALL.iter().map(|action| action.as_str()).collect();
    format!("Operations: {}", names.join(", "))
}

fn credentials(args: &CallArgs) -> anyhow::Result<(String, AccessKeySecret)> {
    if let Some(path) = &args.credentials_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        let field = |name: &str| {
            json.get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("{} has no {name}", path.display()))
        };
        return Ok((
            field("AccessKeyId")?,
            AccessKeySecret::new(field("AccessKeySecret")?),
        ));
    }
    match (&args.access_key_id, &args.access_key_secret) {
        (Some(id), Some(secret)) => Ok((id.clone(), AccessKeySecret::new(secret.clone()))),
        _ => bail!("give --credentials-file, or --access-key-id and --access-key-secret"),
    }
}

/// Runs the call and prints its answer.
pub async fn run(args: CallArgs) -> anyhow::Result<()> {
    if Action::parse(&args.action).is_none() {
        bail!("unknown operation {:?}; {}", args.action, action_list());
    }
    let mut params = Vec::with_capacity(args.params.len());
    for pair in &args.params {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("parameter {pair:?} is not Name=Value"))?;
        params.push((name.to_owned(), value.to_owned()));
    }
    let (id, secret) = credentials(&args)?;
    let version = match args.signature {
        Signature::V3 => SignatureVersion::V3,
        Signature::V1 => SignatureVersion::V1,
    };
    let client = Client::new(&args.endpoint, id, secret, version)?;
    match client.call(&args.action, &params).await {
        Ok(body) => crate::print_json(&body),
        Err(ClientError::Api(failure)) => {
            let body = serde_json::json!({
                "Code": failure.code,
                "Message": failure.message,
                "RequestId": failure.request_id,
            });
            crate::print_json(&body)?;
            bail!(
                "{} failed with HTTP {} {}",
                args.action,
                failure.status,
                failure.code
            )
        }
        Err(error) => Err(error.into()),
    }
}
