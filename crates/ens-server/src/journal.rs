//! The request journal: every API call the server answered, kept in memory for tests to
//! query through the control API ("was DeleteImage called, by whom, and what came back?").
//! Calls refused before they parsed (no or unknown action, malformed or oversized query or
//! body, bad signature version, ...) are recorded too, with what could be read of them: a
//! test author needs most to see the calls their code got wrong.
//!
//! It is off unless the control API is served, so production requests pay one atomic load
//! for it. On, it is a ring of the last [`JOURNAL_CAPACITY`] calls: the oldest entry goes when
//! a new one comes, so memory stays bounded whatever the traffic. Parameters are the call's
//! business parameters only: the protocol's (`Signature`, `AccessKeyId`, `SignatureNonce`,
//! ...) never enter the journal, in any letter case, and no operation takes a secret as a
//! parameter; one sent by mistake under a name that says so (`...Secret...`, `...Password...`,
//! `...Token...`) is kept with its value redacted.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use ens_protocol::request::{COMMON_PARAMETERS, MAX_PARAMETERS, MAX_PARAMETER_BYTES};
use ens_protocol::{ApiError, RawRequest};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Most entries the journal keeps; older ones are dropped first.
pub const JOURNAL_CAPACITY: usize = 10_000;

/// One answered API call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JournalEntry {
    /// Position in the journal, increasing; never reused, even after a clear.
    pub seq: u64,
    /// When the call was answered, RFC 3339 in UTC.
    #[serde(serialize_with = "rfc3339", deserialize_with = "from_rfc3339")]
    pub time: OffsetDateTime,
    /// The RequestId the caller received.
    pub request_id: String,
    /// The action, e.g. `DescribeImages`; for a call refused before it parsed, the action as
    /// sent (at most [`MAX_RECORDED_ACTION_BYTES`]), or empty when none was.
    pub action: String,
    /// The business parameters as received (never the signature or other protocol fields).
    pub parameters: BTreeMap<String, String>,
    /// The caller's account, once authenticated.
    pub account_id: Option<String>,
    /// The RAM user, when the caller is one.
    pub user_name: Option<String>,
    /// The AccessKey ID the caller presented (its size only, when it cannot be a key; empty
    /// when a call refused before it parsed named none).
    pub access_key_id: String,
    /// `Success` or the error code answered.
    pub outcome: String,
    /// The HTTP status answered.
    pub http_status: u16,
    /// Time spent answering, in microseconds (an injected delay included).
    pub latency_us: u64,
    /// The fault rule that acted on the call, if one did.
    pub fault_id: Option<u64>,
}

/// Writes a time as RFC 3339 (the control API's one time format).
/// Reads a time written by [`rfc3339`] (a client reading the journal back).
fn from_rfc3339<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    let text = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(deserializer)?;
    OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
        .map_err(serde::de::Error::custom)
}

fn rfc3339<S: serde::Serializer>(time: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
    let text = time
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(&text)
}

/// The entry of one answered call; `caller` is who authenticated, if anyone did.
pub(crate) fn entry(
    call: &ens_protocol::Call,
    caller: Option<&ens_domain::Principal>,
    request_id: &str,
    result: &Result<String, ens_protocol::ApiError>,
    started: std::time::Instant,
    fault_id: Option<u64>,
) -> JournalEntry {
    let (outcome, http_status) = match result {
        Ok(_) => ("Success".to_owned(), 200),
        Err(error) => (error.code.wire_code().into_owned(), error.code.http_status()),
    };
    JournalEntry {
        seq: 0,
        time: OffsetDateTime::now_utc(),
        request_id: request_id.to_owned(),
        action: call.action.as_str().to_owned(),
        parameters: business_parameters(
            call.params
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        ),
        account_id: caller.map(|principal| principal.account.as_str().to_owned()),
        user_name: caller.and_then(|principal| principal.user.as_ref().map(|user| user.as_str().to_owned())),
        access_key_id: crate::handler::audited_key_id(&call.credentials.access_key_id),
        outcome,
        http_status,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        fault_id,
    }
}

/// Longest action name kept for a call refused before it parsed; real ones are under 40
/// bytes, and a caller must not make the journal hold whatever it sends.
pub const MAX_RECORDED_ACTION_BYTES: usize = 128;

/// Whether a parameter's name says it holds a secret, so its value must not be kept.
fn names_a_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["secret", "password", "token"]
        .iter()
        .any(|word| name.contains(word))
}

/// The parameters as the journal keeps them: protocol fields dropped (whatever their letter
/// case, so a misspelt `signature` is not kept either), values of secret-looking names
/// redacted; a later pair wins over an earlier one of the same name.
fn business_parameters(pairs: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .filter(|(name, _)| {
            !COMMON_PARAMETERS
                .iter()
                .any(|common| common.eq_ignore_ascii_case(name))
        })
        .map(|(name, value)| {
            if names_a_secret(&name) {
                (name, "<redacted>".to_owned())
            } else {
                (name, value)
            }
        })
        .collect()
}

/// The pairs of one parameter location, or none when the protocol would not read it (over
/// its bounds, or not form encoding): what could be read of a refused call, no more.
fn readable_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let count = bytes
        .split(|&byte| byte == b'&')
        .filter(|segment| !segment.is_empty())
        .count();
    if bytes.len() > MAX_PARAMETER_BYTES || count > MAX_PARAMETERS {
        return Vec::new();
    }
    ens_protocol::encoding::form_decode(bytes).unwrap_or_default()
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

/// The entry of a call refused before it parsed (so before anyone authenticated): the
/// action and AccessKey ID where the caller put them (`x-acs-action` and the
/// `Authorization` credential for an ACS3 call, the `Action` and `AccessKeyId` parameters
/// otherwise), and the parameters of each location (query string, form body) the protocol's
/// bounds let it read. `raw.body` is empty when the body itself was refused.
pub(crate) fn refusal_entry(
    raw: &RawRequest<'_>,
    error: &ApiError,
    request_id: &str,
    started: std::time::Instant,
) -> JournalEntry {
    let header = |name: &str| {
        raw.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim())
    };
    let mut pairs = readable_pairs(raw.query.as_bytes());
    let is_form = header("content-type").is_some_and(|value| {
        value
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
    });
    if is_form {
        pairs.extend(readable_pairs(raw.body));
    }
    let parameter = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    };
    let authorization = header("authorization").filter(|value| value.starts_with("ACS3-"));
    let (action, access_key_id) = if let Some(authorization) = authorization {
        let key = ens_protocol::sign::v3::parse_authorization(authorization)
            .ok()
            .map(|parsed| parsed.access_key_id)
            .or_else(|| header("x-acs-accesskey-id").map(str::to_owned));
        (header("x-acs-action").or_else(|| parameter("Action")), key)
    } else {
        (
            parameter("Action").or_else(|| header("x-acs-action")),
            parameter("AccessKeyId").map(str::to_owned),
        )
    };
    JournalEntry {
        seq: 0,
        time: OffsetDateTime::now_utc(),
        request_id: request_id.to_owned(),
        action: bounded(action.unwrap_or_default(), MAX_RECORDED_ACTION_BYTES),
        access_key_id: access_key_id
            .filter(|key| !key.is_empty())
            .map(|key| crate::handler::audited_key_id(&key))
            .unwrap_or_default(),
        parameters: business_parameters(pairs),
        account_id: None,
        user_name: None,
        outcome: error.code.wire_code().into_owned(),
        http_status: error.code.http_status(),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        fault_id: None,
    }
}

/// Which entries a query returns; every given filter must match.
#[derive(Debug, Clone, Default)]
pub struct JournalQuery {
    /// Only this action.
    pub action: Option<String>,
    /// Only calls authenticated in this account.
    pub account_id: Option<String>,
    /// Only this outcome (`Success` or an error code).
    pub outcome: Option<String>,
    /// Only this RequestId.
    pub request_id: Option<String>,
    /// Only entries answered at or after this time.
    pub since: Option<OffsetDateTime>,
    /// At most this many: the latest ones, returned oldest first.
    pub limit: usize,
}

impl JournalQuery {
    fn matches(&self, entry: &JournalEntry) -> bool {
        let same = |wanted: &Option<String>, actual: Option<&str>| {
            wanted.as_deref().is_none_or(|wanted| Some(wanted) == actual)
        };
        same(&self.action, Some(&entry.action))
            && same(&self.account_id, entry.account_id.as_deref())
            && same(&self.outcome, Some(&entry.outcome))
            && same(&self.request_id, Some(&entry.request_id))
            && self.since.is_none_or(|since| entry.time >= since)
    }
}

/// The journal; shared by the request path (which appends) and the control API.
#[derive(Debug, Default)]
pub struct Journal {
    enabled: AtomicBool,
    next_seq: AtomicU64,
    entries: Mutex<VecDeque<JournalEntry>>,
}

impl Journal {
    /// Starts recording (the control API does, when it is served).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// Whether calls are recorded; the request path builds no entry otherwise.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Appends `entry` (its `seq` is assigned here), dropping the oldest past the capacity.
    pub fn record(&self, mut entry: JournalEntry) {
        entry.seq = self.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= JOURNAL_CAPACITY {
                entries.pop_front();
            }
            entries.push_back(entry);
        }
    }

    /// The entries `query` selects, oldest first.
    #[must_use]
    pub fn query(&self, query: &JournalQuery) -> Vec<JournalEntry> {
        let Ok(entries) = self.entries.lock() else {
            return Vec::new();
        };
        let mut found: Vec<JournalEntry> = entries
            .iter()
            .rev()
            .filter(|entry| query.matches(entry))
            .take(query.limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }

    /// Removes the entries of `account_id` (calls authenticated in it), or every entry when
    /// `None`; returns how many went.
    pub fn clear(&self, account_id: Option<&str>) -> usize {
        let Ok(mut entries) = self.entries.lock() else {
            return 0;
        };
        let before = entries.len();
        match account_id {
            None => entries.clear(),
            Some(account) => entries.retain(|entry| entry.account_id.as_deref() != Some(account)),
        }
        before - entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(action: &str, account: Option<&str>, outcome: &str) -> JournalEntry {
        JournalEntry {
            seq: 0,
            time: OffsetDateTime::now_utc(),
            request_id: format!("R-{action}"),
            action: action.to_owned(),
            parameters: BTreeMap::new(),
            account_id: account.map(str::to_owned),
            user_name: None,
            access_key_id: "k".into(),
            outcome: outcome.to_owned(),
            http_status: 200,
            latency_us: 1,
            fault_id: None,
        }
    }

    fn all() -> JournalQuery {
        JournalQuery {
            limit: usize::MAX,
            ..JournalQuery::default()
        }
    }

    #[test]
    fn keeps_only_the_latest_entries_up_to_its_capacity() {
        let journal = Journal::default();
        for _ in 0..JOURNAL_CAPACITY + 5 {
            journal.record(entry("DescribeImages", Some("1"), "Success"));
        }
        let kept = journal.query(&all());
        assert_eq!(kept.len(), JOURNAL_CAPACITY);
        assert_eq!(kept.first().map(|e| e.seq), Some(6));
        assert_eq!(kept.last().map(|e| e.seq), Some(JOURNAL_CAPACITY as u64 + 5));
    }

    #[test]
    fn filters_combine_and_limit_keeps_the_latest() {
        let journal = Journal::default();
        journal.record(entry("DescribeImages", Some("1"), "Success"));
        journal.record(entry("DeleteImage", Some("1"), "Error.DeleteImage"));
        journal.record(entry("DeleteImage", Some("2"), "Success"));
        journal.record(entry("DeleteImage", Some("1"), "Success"));
        let query = JournalQuery {
            action: Some("DeleteImage".into()),
            account_id: Some("1".into()),
            ..all()
        };
        let seqs: Vec<u64> = journal.query(&query).iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 4]);
        let latest = JournalQuery { limit: 1, ..query };
        assert_eq!(
            journal.query(&latest).iter().map(|e| e.seq).collect::<Vec<_>>(),
            [4]
        );
        let failed = JournalQuery {
            outcome: Some("Error.DeleteImage".into()),
            ..all()
        };
        assert_eq!(journal.query(&failed).len(), 1);
    }

    fn raw<'a>(query: &'a str, headers: &'a [ens_protocol::Header<'a>], body: &'a [u8]) -> RawRequest<'a> {
        RawRequest {
            method: "POST",
            path: "/",
            query,
            headers,
            body,
        }
    }

    #[test]
    fn a_refusal_keeps_what_could_be_read_and_never_a_signature_or_secret() {
        let error = ApiError::new(ens_protocol::ErrorCode::InvalidActionNotFound);
        let form = [(
            "Content-Type".to_owned(),
            "application/x-www-form-urlencoded".to_owned(),
        )];
        let query = "Action=UpgradeAICInstanceImage&AccessKeyId=LTAIkey&Signature=c2ln&signature=c2ln&SignatureNonce=n\
                     &ImageName=web&AccessKeySecret=s3cret&DbPassword=pw";
        let entry = refusal_entry(
            &raw(
                query,
                &ens_protocol::borrowed_headers(&form),
                b"ImageName=from-body&OSType=linux",
            ),
            &error,
            "R-1",
            std::time::Instant::now(),
        );
        assert_eq!(entry.action, "UpgradeAICInstanceImage");
        assert_eq!(entry.access_key_id, "LTAIkey");
        assert_eq!(
            (entry.outcome.as_str(), entry.http_status),
            ("InvalidAction.NotFound", 404)
        );
        let expected: BTreeMap<String, String> = [
            ("AccessKeySecret", "<redacted>"),
            ("DbPassword", "<redacted>"),
            ("ImageName", "from-body"),
            ("OSType", "linux"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(entry.parameters, expected);
        assert!(entry.account_id.is_none() && entry.fault_id.is_none());
    }

    #[test]
    fn a_refused_location_is_skipped_whole_and_a_long_action_is_cut() {
        let error = ApiError::new(ens_protocol::ErrorCode::InvalidParameter);
        let crowded: Vec<String> = (0..=MAX_PARAMETERS).map(|n| format!("P{n}=x")).collect();
        let crowded = crowded.join("&");
        let entry = refusal_entry(&raw(&crowded, &[], b""), &error, "R-2", std::time::Instant::now());
        assert!(entry.parameters.is_empty());
        assert_eq!((entry.action.as_str(), entry.access_key_id.as_str()), ("", ""));
        // A body that is not form encoded (no Content-Type) is not read; the action is cut.
        let long = format!("Action={}&AccessKeyId=has%20space", "%C3%A9".repeat(200));
        let entry = refusal_entry(
            &raw(&long, &[], b"Action=x"),
            &error,
            "R-3",
            std::time::Instant::now(),
        );
        assert_eq!(entry.action, "\u{e9}".repeat(MAX_RECORDED_ACTION_BYTES / 2));
        assert_eq!(entry.access_key_id, "<malformed: 9 bytes>");
    }

    #[test]
    fn an_acs3_refusal_takes_its_action_and_key_from_the_headers() {
        let error = ApiError::missing_common("Version");
        let headers = [
            (
                "authorization".to_owned(),
                "ACS3-HMAC-SHA256 Credential=LTAIv3,SignedHeaders=host,Signature=abcd".to_owned(),
            ),
            ("x-acs-action".to_owned(), "DescribeImages".to_owned()),
        ];
        let entry = refusal_entry(
            &raw("PageSize=5", &ens_protocol::borrowed_headers(&headers), b""),
            &error,
            "R-4",
            std::time::Instant::now(),
        );
        assert_eq!(
            (entry.action.as_str(), entry.access_key_id.as_str()),
            ("DescribeImages", "LTAIv3")
        );
        assert_eq!(entry.parameters.get("PageSize").map(String::as_str), Some("5"));
        assert!(!format!("{entry:?}").contains("abcd"));
    }

    #[test]
    fn clearing_one_account_leaves_the_others() {
        let journal = Journal::default();
        journal.record(entry("DescribeImages", Some("1"), "Success"));
        journal.record(entry("DescribeImages", Some("2"), "Success"));
        journal.record(entry("DescribeImages", None, "InvalidAccessKeyId.NotFound"));
        assert_eq!(journal.clear(Some("1")), 1);
        assert_eq!(journal.query(&all()).len(), 2);
        assert_eq!(journal.clear(None), 2);
        assert!(journal.query(&all()).is_empty());
        journal.record(entry("DescribeImages", Some("1"), "Success"));
        assert_eq!(
            journal.query(&all()).first().map(|e| e.seq),
            Some(4),
            "seq never reused"
        );
    }
}
