//! The request journal: every API call the server answered, kept in memory for tests to
//! query through the control API ("was DeleteImage called, by whom, and what came back?").
//!
//! It is off unless the control API is served, so production requests pay one atomic load
//! for it. On, it is a ring of the last [`JOURNAL_CAPACITY`] calls: the oldest entry goes when
//! a new one comes, so memory stays bounded whatever the traffic. Parameters are the call's
//! business parameters only: the protocol's (`Signature`, `AccessKeyId`, `SignatureNonce`,
//! ...) never enter the journal, and no operation takes a secret as a parameter.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use time::OffsetDateTime;

/// Most entries the journal keeps; older ones are dropped first.
pub const JOURNAL_CAPACITY: usize = 10_000;

/// One answered API call.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct JournalEntry {
    /// Position in the journal, increasing; never reused, even after a clear.
    pub seq: u64,
    /// When the call was answered, RFC 3339 in UTC.
    #[serde(serialize_with = "rfc3339")]
    pub time: OffsetDateTime,
    /// The RequestId the caller received.
    pub request_id: String,
    /// The action, e.g. `DescribeImages`.
    pub action: String,
    /// The business parameters as received (never the signature or other protocol fields).
    pub parameters: BTreeMap<String, String>,
    /// The caller's account, once authenticated.
    pub account_id: Option<String>,
    /// The RAM user, when the caller is one.
    pub user_name: Option<String>,
    /// The AccessKey ID the caller presented (its size only, when it cannot be a key).
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
        parameters: call.params.clone(),
        account_id: caller.map(|principal| principal.account.as_str().to_owned()),
        user_name: caller.and_then(|principal| principal.user.as_ref().map(|user| user.as_str().to_owned())),
        access_key_id: crate::handler::audited_key_id(&call.credentials.access_key_id),
        outcome,
        http_status,
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        fault_id,
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
