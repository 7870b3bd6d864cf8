//! Fault injection: rules, set through the control API, that make matching API calls fail
//! with a chosen cloud error, wait, or be throttled, so a client's retry and error handling
//! can be tested against the real protocol.
//!
//! A rule matches an action (or `*`) and optionally an account, an AccessKey and an image
//! (the call's `ImageId` parameter). It acts on the next `Count` matching calls, on each with
//! a `Probability`, or on every one until cleared. Rules are checked after authentication,
//! as the cloud's own failures reach only signed calls, in the order they were added; the
//! first that acts wins. With no rule set, a call costs one atomic load here.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use ens_protocol::{ApiError, ErrorCode};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Longest delay a rule may add, so a forgotten rule cannot hang a test run.
const MAX_LATENCY_MS: u64 = 60_000;
/// Most rules set at once.
const MAX_RULES: usize = 1_000;

/// Why a rule was refused; the message says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FaultError(String);

/// A cloud error a rule answers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InjectedError {
    /// The `Code` field, e.g. `InternalError` or `OperationDenied.NoStock`.
    pub code: String,
    /// The HTTP status, 400 to 599 (default 400, as ENS answers its business errors).
    #[serde(default = "bad_request")]
    pub http_status: u16,
    /// The `Message` field (default: says it was injected).
    #[serde(default)]
    pub message: Option<String>,
}

fn bad_request() -> u16 {
    400
}

/// A throttling answer: `Throttling.User` with `x-acs-retry-after`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct InjectedThrottle {
    /// The wait the answer asks for, in milliseconds (default 1000).
    #[serde(default = "one_second")]
    pub retry_after_ms: u64,
}

fn one_second() -> u64 {
    1000
}

/// A rule as the control API receives and lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct FaultSpec {
    /// The action to match, e.g. `DescribeImages`, or `*` for every action.
    pub action: String,
    /// Only calls authenticated in this account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// Only calls signed with this AccessKey.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Only calls whose `ImageId` parameter is this image.
    #[serde(default)]
    pub image_id: Option<String>,
    /// Answer this error.
    #[serde(default)]
    pub error: Option<InjectedError>,
    /// Answer `Throttling.User`.
    #[serde(default)]
    pub throttle: Option<InjectedThrottle>,
    /// Wait this long first (alone: the call then goes on as usual).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Act on the next this-many matching calls, then go away.
    #[serde(default)]
    pub count: Option<u64>,
    /// Act on each matching call with this probability (0 < p <= 1).
    #[serde(default)]
    pub probability: Option<f64>,
}

impl FaultSpec {
    /// Checks the rule is one the server can apply, naming the field at fault otherwise.
    ///
    /// # Errors
    /// When a field is out of range or the effects do not combine.
    pub fn validate(&self) -> Result<(), FaultError> {
        let refuse = |why: &str| Err(FaultError(why.to_owned()));
        if self.action.is_empty()
            || self.action.len() > 64
            || !self
                .action
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'*')
        {
            return refuse("Action: an action name such as DescribeImages, or * for every action");
        }
        if self.error.is_some() && self.throttle.is_some() {
            return refuse("Error and Throttle: give one of them, not both");
        }
        if self.error.is_none() && self.throttle.is_none() && self.latency_ms.is_none() {
            return refuse("a rule needs an effect: Error, Throttle or LatencyMs");
        }
        if let Some(error) = &self.error {
            if error.code.is_empty()
                || error.code.len() > 128
                || !error.code.bytes().all(|b| b.is_ascii_graphic())
            {
                return refuse("Error.Code: 1 to 128 printable ASCII characters without spaces");
            }
            if !(400..=599).contains(&error.http_status) {
                return refuse("Error.HttpStatus: from 400 to 599");
            }
            if error.message.as_ref().is_some_and(|message| message.len() > 1024) {
                return refuse("Error.Message: at most 1024 bytes");
            }
        }
        if self
            .throttle
            .as_ref()
            .is_some_and(|throttle| !(1..=3_600_000).contains(&throttle.retry_after_ms))
        {
            return refuse("Throttle.RetryAfterMs: from 1 to 3600000");
        }
        if self.latency_ms.is_some_and(|latency| latency > MAX_LATENCY_MS) {
            return refuse("LatencyMs: at most 60000");
        }
        if self.count.is_some() && self.probability.is_some() {
            return refuse("Count and Probability: give one of them, or neither (every matching call)");
        }
        if self.count == Some(0) {
            return refuse("Count: at least 1");
        }
        if self.probability.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
            return refuse("Probability: above 0 and at most 1");
        }
        Ok(())
    }
}

/// A rule as it is set: its spec, its ID and what it did so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaultRule {
    /// Names the rule in the journal and for removal.
    pub fault_id: u64,
    /// Calls it acted on so far.
    pub fired: u64,
    /// What it matches and does.
    #[serde(flatten)]
    pub spec: FaultSpec,
}

/// What the request path knows of a call when rules are checked.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    /// The action.
    pub action: &'a str,
    /// The authenticated account.
    pub account_id: &'a str,
    /// The AccessKey that signed.
    pub access_key_id: &'a str,
    /// The call's `ImageId` parameter.
    pub image_id: Option<&'a str>,
}

impl<'a> CallFacts<'a> {
    /// The facts of an authenticated `call` of `action`.
    #[must_use]
    pub(crate) fn of(
        call: &'a ens_protocol::Call,
        action: ens_protocol::Action,
        caller: &'a crate::auth::Caller,
    ) -> Self {
        Self {
            action: action.as_str(),
            account_id: caller.principal.account.as_str(),
            access_key_id: caller.access_key_id.as_str(),
            image_id: call.params.get("ImageId").map(String::as_str),
        }
    }
}

/// A rule that acted on a call, once its delay has passed.
#[derive(Debug)]
pub struct Fired {
    /// The rule.
    pub fault_id: u64,
    /// The answer it chose, with the wait to ask for, when it answers instead of the service.
    pub refusal: Option<(ApiError, Option<Duration>)>,
}

/// The rules set; shared by the request path and the control API.
#[derive(Debug, Default)]
pub struct Faults {
    /// How many rules are set: the request path's one check when it is zero.
    active: AtomicUsize,
    next_id: AtomicU64,
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    /// Adds a rule after it, and returns it with its ID.
    ///
    /// # Errors
    /// When the rule is invalid or too many are set.
    pub fn add(&self, spec: FaultSpec) -> Result<FaultRule, FaultError> {
        spec.validate()?;
        let mut rules = self.lock();
        if rules.len() >= MAX_RULES {
            return Err(FaultError(format!(
                "at most {MAX_RULES} rules at once: clear some first"
            )));
        }
        let rule = FaultRule {
            fault_id: self.next_id.fetch_add(1, Ordering::Relaxed) + 1,
            fired: 0,
            spec,
        };
        rules.push(rule.clone());
        self.active.store(rules.len(), Ordering::Release);
        Ok(rule)
    }

    /// The rules set, in the order they are checked.
    #[must_use]
    pub fn list(&self) -> Vec<FaultRule> {
        self.lock().clone()
    }

    /// Removes the rules scoped to `account_id` (or every rule when `None`); returns how many.
    pub fn clear(&self, account_id: Option<&str>) -> usize {
        self.remove_where(|rule| {
            account_id.is_none_or(|account| rule.spec.account_id.as_deref() == Some(account))
        })
    }

    /// Removes one rule; returns whether it was set.
    pub fn remove(&self, fault_id: u64) -> bool {
        self.remove_where(|rule| rule.fault_id == fault_id) > 0
    }

    fn remove_where(&self, doomed: impl Fn(&FaultRule) -> bool) -> usize {
        let mut rules = self.lock();
        let before = rules.len();
        rules.retain(|rule| !doomed(rule));
        self.active.store(rules.len(), Ordering::Release);
        before - rules.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<FaultRule>> {
        // A panic while holding the lock leaves the rules consistent (each change is one
        // push or retain): go on with them.
        self.rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first rule that acts on `call`, counted as fired (and gone once its count is used).
    fn pick(&self, call: &CallFacts<'_>) -> Option<FaultRule> {
        if self.active.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut rules = self.lock();
        let mut rng = rand::thread_rng();
        let index = rules.iter().position(|rule| {
            let spec = &rule.spec;
            let scoped = |wanted: &Option<String>, actual: Option<&str>| {
                wanted.as_deref().is_none_or(|wanted| Some(wanted) == actual)
            };
            (spec.action == "*" || spec.action == call.action)
                && scoped(&spec.account_id, Some(call.account_id))
                && scoped(&spec.access_key_id, Some(call.access_key_id))
                && scoped(&spec.image_id, call.image_id)
                && spec.probability.is_none_or(|p| rng.gen::<f64>() < p)
        })?;
        let rule = rules.get_mut(index)?;
        rule.fired += 1;
        let fired = rule.clone();
        if let Some(left) = rule.spec.count.as_mut() {
            *left -= 1;
            if *left == 0 {
                rules.remove(index);
                self.active.store(rules.len(), Ordering::Release);
            }
        }
        Some(fired)
    }

    /// Applies the first rule that acts on `call`: waits its delay, and returns the answer it
    /// chose, if any. `None` when no rule acts.
    pub async fn inject(&self, call: &CallFacts<'_>) -> Option<Fired> {
        let rule = self.pick(call)?;
        if let Some(latency) = rule.spec.latency_ms {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let refusal = match (&rule.spec.error, &rule.spec.throttle) {
            (Some(error), _) => {
                let code = ErrorCode::Injected {
                    code: error.code.clone(),
                    status: error.http_status,
                };
                let message = error
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("Fault {} injected by the control API.", rule.fault_id));
                Some((ApiError::with_message(code, message), None))
            }
            (None, Some(throttle)) => Some((
                ApiError::new(ErrorCode::ThrottlingUser),
                Some(Duration::from_millis(throttle.retry_after_ms)),
            )),
            (None, None) => None,
        };
        Some(Fired {
            fault_id: rule.fault_id,
            refusal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> FaultSpec {
        serde_json::from_str(json).unwrap()
    }

    fn call<'a>(action: &'a str, image: Option<&'a str>) -> CallFacts<'a> {
        CallFacts {
            action,
            account_id: "1000000000000001",
            access_key_id: "LTAIkey",
            image_id: image,
        }
    }

    #[tokio::test]
    async fn a_counted_error_acts_that_many_times_then_goes() {
        let faults = Faults::default();
        let rule = faults
            .add(spec(
                r#"{"Action":"DeleteImage","Error":{"Code":"InternalError","HttpStatus":500},"Count":2}"#,
            ))
            .unwrap();
        assert!(faults.inject(&call("DescribeImages", None)).await.is_none());
        for _ in 0..2 {
            let fired = faults.inject(&call("DeleteImage", None)).await.unwrap();
            assert_eq!(fired.fault_id, rule.fault_id);
            let (error, wait) = fired.refusal.unwrap();
            assert_eq!(error.code.wire_code(), "InternalError");
            assert_eq!(error.code.http_status(), 500);
            assert!(wait.is_none());
        }
        assert!(faults.inject(&call("DeleteImage", None)).await.is_none());
        assert!(faults.list().is_empty());
    }

    #[tokio::test]
    async fn scopes_must_all_match() {
        let faults = Faults::default();
        faults
            .add(spec(r#"{"Action":"*","ImageId":"m-1","AccountId":"1000000000000001","Throttle":{"RetryAfterMs":250}}"#))
            .unwrap();
        assert!(faults.inject(&call("DeleteImage", Some("m-2"))).await.is_none());
        assert!(faults.inject(&call("DeleteImage", None)).await.is_none());
        let fired = faults.inject(&call("DeleteImage", Some("m-1"))).await.unwrap();
        let (error, wait) = fired.refusal.unwrap();
        assert_eq!(error.code, ErrorCode::ThrottlingUser);
        assert_eq!(wait, Some(Duration::from_millis(250)));
        assert_eq!(faults.clear(Some("1000000000000002")), 0);
        assert_eq!(faults.clear(Some("1000000000000001")), 1);
    }

    #[tokio::test]
    async fn latency_alone_lets_the_call_go_on() {
        let faults = Faults::default();
        faults
            .add(spec(r#"{"Action":"DescribeImages","LatencyMs":30}"#))
            .unwrap();
        let started = std::time::Instant::now();
        let fired = faults.inject(&call("DescribeImages", None)).await.unwrap();
        assert!(fired.refusal.is_none());
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn probability_acts_on_about_that_share_of_calls() {
        let faults = Faults::default();
        faults
            .add(spec(r#"{"Action":"*","LatencyMs":0,"Probability":0.25}"#))
            .unwrap();
        let acted = (0..4000)
            .filter(|_| faults.pick(&call("DescribeImages", None)).is_some())
            .count();
        assert!((700..1300).contains(&acted), "{acted} of 4000");
    }

    #[test]
    fn invalid_rules_are_refused_with_the_field_named() {
        let faults = Faults::default();
        for (json, field) in [
            (r#"{"Action":"DescribeImages"}"#, "effect"),
            (r#"{"Action":"","LatencyMs":1}"#, "Action"),
            (
                r#"{"Action":"X","Error":{"Code":"A"},"Throttle":{}}"#,
                "Error and Throttle",
            ),
            (
                r#"{"Action":"X","Error":{"Code":"A","HttpStatus":200}}"#,
                "HttpStatus",
            ),
            (r#"{"Action":"X","Error":{"Code":"has space"}}"#, "Error.Code"),
            (r#"{"Action":"X","LatencyMs":60001}"#, "LatencyMs"),
            (r#"{"Action":"X","LatencyMs":1,"Count":0}"#, "Count"),
            (r#"{"Action":"X","LatencyMs":1,"Probability":1.5}"#, "Probability"),
            (
                r#"{"Action":"X","LatencyMs":1,"Count":1,"Probability":0.5}"#,
                "Count and Probability",
            ),
        ] {
            let error = faults.add(spec(json)).unwrap_err().to_string();
            assert!(error.contains(field), "{json}: {error}");
        }
        assert!(faults.list().is_empty());
    }
}
