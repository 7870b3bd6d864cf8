//! The scenarios: which calls a run sends, with which parameters, and what a right answer
//! looks like (a fast wrong answer is not a result, so each read is checked before it is
//! measured).

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, ensure, Context};
use clap::ValueEnum;
use ens_client::RawResponse;
use serde_json::Value;

/// The API's root, where every call goes except the ceiling's.
pub const API_PATH: &str = "/";
/// The route `ens-images serve --bench-ceiling` answers with a fixed body.
pub const CEILING_PATH: &str = "/bench/ceiling";
/// `Bytes` of the ceiling when no first page was measured (the route's own default).
pub const DEFAULT_CEILING_BYTES: usize = 4096;
/// The largest `Bytes` the ceiling route accepts.
pub const MAX_CEILING_BYTES: usize = 1024 * 1024;
/// One request in this many is a write in `mixed` (5 %).
const MIXED_WRITE_EVERY: u64 = 20;
/// The page `deep-page` asks for, and its size.
const DEEP_PAGE: (u64, u64) = (2000, 50);
/// DescribeImages' documented default page size.
const DEFAULT_PAGE_SIZE: u64 = 10;

/// A named workload; the names are fixed, as reports and scripts refer to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// DescribeImages, no filter, ordinary account.
    FirstPage,
    /// DescribeImages PageNumber=2000 PageSize=50, heavy account.
    DeepPage,
    /// DescribeImages ImageId=<an image of the account>.
    ImageId,
    /// DescribeImages EnsRegionId=<a node>.
    RegionFilter,
    /// DescribeImages ImageName=<the exact name of an image of the account>.
    NameFilter,
    /// 95 % first pages, 5 % writes (CreateImage and ModifyImageAttribute in turn).
    Mixed,
    /// Only writes, CreateImage and ModifyImageAttribute in turn.
    Writes,
    /// The first-page request sent to the server's fixed-answer route: what the machine,
    /// the client and the server's HTTP stack cost, the reference every scenario is
    /// reported against.
    Ceiling,
}

impl Scenario {
    /// What the suite measures after the ceiling, in order: reads first, writes last, so the
    /// writes (new images, renamed sample image) cannot change what the reads check.
    pub const MEASURED: [Self; 7] = [
        Self::FirstPage,
        Self::DeepPage,
        Self::ImageId,
        Self::RegionFilter,
        Self::NameFilter,
        Self::Mixed,
        Self::Writes,
    ];

    /// The fixed name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::FirstPage => "first-page",
            Self::DeepPage => "deep-page",
            Self::ImageId => "image-id",
            Self::RegionFilter => "region-filter",
            Self::NameFilter => "name-filter",
            Self::Mixed => "mixed",
            Self::Writes => "writes",
            Self::Ceiling => "ceiling",
        }
    }

    /// Whether the scenario calls with the heavy account (many own images) rather than the
    /// ordinary one.
    #[must_use]
    pub fn uses_heavy_account(self) -> bool {
        self == Self::DeepPage
    }
}

/// The account-specific values scenarios put in their calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fixture {
    /// An image of the account (`image-id`; renamed by the writes).
    pub image_id: Option<String>,
    /// The exact name of an image of the account (`name-filter`).
    pub image_name: Option<String>,
    /// A node with images of the account (`region-filter`).
    pub region: Option<String>,
    /// An instance of the account (`CreateImage` in the writes).
    pub instance_id: Option<String>,
}

fn needed<'a>(value: Option<&'a String>, scenario: Scenario, flag: &str) -> anyhow::Result<&'a str> {
    value
        .map(String::as_str)
        .with_context(|| format!("scenario {} needs {flag} (or --generated FILE)", scenario.name()))
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

/// One request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    /// Path (and query) on the server.
    pub path: &'a str,
    /// The API action.
    pub action: &'static str,
    /// Its business parameters.
    pub params: Cow<'a, [(String, String)]>,
}

#[derive(Debug)]
enum Mix {
    Reads,
    Mixed,
    Writes,
}

/// The calls of one run, shared by its workers: reads are the same every time, writes get a
/// fresh image name each.
#[derive(Debug)]
pub struct Plan {
    mix: Mix,
    path: String,
    ceiling_bytes: Option<usize>,
    read: Vec<(String, String)>,
    instance_id: String,
    image_id: String,
    name_prefix: String,
    sequence: AtomicU64,
}

impl Plan {
    /// The plan of `scenario` for an account described by `fixture`; `extra` parameters are
    /// added to (or replace those of) every DescribeImages call, for ad-hoc runs.
    /// `ceiling_bytes` is the body size the ceiling route answers with.
    ///
    /// # Errors
    /// When the scenario needs a fixture value that is missing, or the size is out of range.
    pub fn new(
        scenario: Scenario,
        fixture: &Fixture,
        extra: &[(String, String)],
        ceiling_bytes: usize,
    ) -> anyhow::Result<Self> {
        let mut read = match scenario {
            Scenario::FirstPage | Scenario::Mixed | Scenario::Writes | Scenario::Ceiling => Vec::new(),
            Scenario::DeepPage => vec![
                pair("PageNumber", &DEEP_PAGE.0.to_string()),
                pair("PageSize", &DEEP_PAGE.1.to_string()),
            ],
            Scenario::ImageId => vec![pair(
                "ImageId",
                needed(fixture.image_id.as_ref(), scenario, "--image-id")?,
            )],
            Scenario::RegionFilter => vec![pair(
                "EnsRegionId",
                needed(fixture.region.as_ref(), scenario, "--region")?,
            )],
            Scenario::NameFilter => vec![pair(
                "ImageName",
                needed(fixture.image_name.as_ref(), scenario, "--image-name")?,
            )],
        };
        for (name, value) in extra {
            read.retain(|(existing, _)| existing != name);
            read.push((name.clone(), value.clone()));
        }
        let writes = matches!(scenario, Scenario::Mixed | Scenario::Writes);
        let (instance_id, image_id) = if writes {
            (
                needed(fixture.instance_id.as_ref(), scenario, "--instance-id")?.to_owned(),
                needed(fixture.image_id.as_ref(), scenario, "--image-id")?.to_owned(),
            )
        } else {
            (String::new(), String::new())
        };
        ensure!(
            (1..=MAX_CEILING_BYTES).contains(&ceiling_bytes),
            "the ceiling body must be 1 to {MAX_CEILING_BYTES} bytes, not {ceiling_bytes}"
        );
        let path = if scenario == Scenario::Ceiling {
            format!("{CEILING_PATH}?Bytes={ceiling_bytes}")
        } else {
            API_PATH.to_owned()
        };
        let mix = match scenario {
            Scenario::Mixed => Mix::Mixed,
            Scenario::Writes => Mix::Writes,
            _ => Mix::Reads,
        };
        Ok(Self {
            mix,
            path,
            ceiling_bytes: (scenario == Scenario::Ceiling).then_some(ceiling_bytes),
            read,
            instance_id,
            image_id,
            name_prefix: name_prefix(),
            sequence: AtomicU64::new(0),
        })
    }

    /// The DescribeImages parameters of this plan's reads.
    #[must_use]
    pub fn read_params(&self) -> &[(String, String)] {
        &self.read
    }

    /// The body size the ceiling route must answer with, for the ceiling's plan.
    #[must_use]
    pub fn ceiling_bytes(&self) -> Option<usize> {
        self.ceiling_bytes
    }

    /// The next call; safe to call from every worker at once.
    pub fn next_call(&self) -> Call<'_> {
        match self.mix {
            Mix::Reads => self.read_call(),
            Mix::Writes => self.write_call(self.sequence.fetch_add(1, Ordering::Relaxed)),
            Mix::Mixed => {
                let number = self.sequence.fetch_add(1, Ordering::Relaxed);
                if number % MIXED_WRITE_EVERY == MIXED_WRITE_EVERY - 1 {
                    self.write_call(number / MIXED_WRITE_EVERY)
                } else {
                    self.read_call()
                }
            }
        }
    }

    fn read_call(&self) -> Call<'_> {
        Call {
            path: &self.path,
            action: "DescribeImages",
            params: Cow::Borrowed(&self.read),
        }
    }

    /// Write number `number`: CreateImage for even numbers, ModifyImageAttribute for odd
    /// ones, each with a name never used before.
    fn write_call(&self, number: u64) -> Call<'_> {
        let name = format!("{}-{number}", self.name_prefix);
        let params = if number % 2 == 0 {
            vec![pair("ImageName", &name), pair("InstanceId", &self.instance_id)]
        } else {
            vec![pair("ImageId", &self.image_id), pair("ImageName", &name)]
        };
        Call {
            path: &self.path,
            action: if number % 2 == 0 {
                "CreateImage"
            } else {
                "ModifyImageAttribute"
            },
            params: Cow::Owned(params),
        }
    }
}

/// A prefix that makes this run's image names unique among runs: `bench-<pid>-<unix ms>`,
/// in hexadecimal. It starts with a letter and uses only letters, digits and '-', as the
/// image naming rules require.
fn name_prefix() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis());
    format!("bench-{:x}-{millis:x}", std::process::id())
}

/// What a checked read must answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    /// The exact `TotalCount`, where known.
    pub total: Option<u64>,
    /// The ID every returned image must have (an ImageId filter).
    pub only_image: Option<String>,
    /// The name every returned image must have (an ImageName filter).
    pub only_name: Option<String>,
    /// Whether at least one image must match.
    pub non_empty: bool,
}

impl Expect {
    /// What `scenario` must answer for `fixture`; `deep_total` is the heavy account's
    /// `TotalCount` (from its first page), which the deep page must repeat.
    #[must_use]
    pub fn of(scenario: Scenario, fixture: &Fixture, deep_total: Option<u64>) -> Self {
        match scenario {
            Scenario::ImageId => Self {
                total: Some(1),
                only_image: fixture.image_id.clone(),
                non_empty: true,
                ..Self::default()
            },
            Scenario::NameFilter => Self {
                only_name: fixture.image_name.clone(),
                non_empty: true,
                ..Self::default()
            },
            Scenario::DeepPage => Self {
                total: deep_total,
                ..Self::default()
            },
            Scenario::FirstPage | Scenario::RegionFilter => Self {
                non_empty: true,
                ..Self::default()
            },
            Scenario::Mixed | Scenario::Writes | Scenario::Ceiling => Self::default(),
        }
    }
}

/// Reads `TotalCount` and the images of a DescribeImages answer.
///
/// # Errors
/// When the response is not a 2xx JSON page.
pub fn page_of(response: &RawResponse) -> anyhow::Result<(u64, Vec<Value>)> {
    if !response.is_success() {
        bail!(
            "HTTP {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    let json: Value = serde_json::from_slice(&response.body).context("the answer is not JSON")?;
    let total = json["TotalCount"]
        .as_u64()
        .context("the answer has no TotalCount")?;
    let images = json["Images"]["Image"].as_array().cloned().unwrap_or_default();
    Ok((total, images))
}

fn number_param(params: &[(String, String)], name: &str, default: u64) -> u64 {
    params
        .iter()
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(default)
}

/// Checks one answer to a read with `params` against `expect`: the total, how many images
/// the page must hold for that total, and the filters.
///
/// # Errors
/// Says what differs.
pub fn check_read(
    params: &[(String, String)],
    response: &RawResponse,
    expect: &Expect,
) -> anyhow::Result<()> {
    let (total, images) = page_of(response)?;
    if let Some(expected) = expect.total {
        ensure!(total == expected, "expected TotalCount {expected}, got {total}");
    }
    ensure!(
        !expect.non_empty || total > 0,
        "expected matches, got TotalCount 0"
    );
    let number = number_param(params, "PageNumber", 1).max(1);
    let size = number_param(params, "PageSize", DEFAULT_PAGE_SIZE);
    let on_page = total.saturating_sub((number - 1).saturating_mul(size)).min(size);
    ensure!(
        images.len() as u64 == on_page,
        "TotalCount {total}: page {number} of {size} must hold {on_page} images, got {}",
        images.len()
    );
    for image in &images {
        if let Some(id) = &expect.only_image {
            ensure!(
                image["ImageId"].as_str() == Some(id),
                "expected only image {id}, got {}",
                image["ImageId"]
            );
        }
        if let Some(name) = &expect.only_name {
            ensure!(
                image["ImageName"].as_str() == Some(name),
                "expected only images named {name}, got {}",
                image["ImageName"]
            );
        }
    }
    Ok(())
}

/// Checks one answer of the ceiling route: 200 with exactly the asked size.
///
/// # Errors
/// Says what differs (e.g. a server started without `--bench-ceiling`).
pub fn check_ceiling(response: &RawResponse, bytes: usize) -> anyhow::Result<()> {
    ensure!(
        response.status == 200 && response.body.len() == bytes,
        "the ceiling route answered HTTP {} with {} bytes, expected 200 with {bytes} \
         (is the server running with --bench-ceiling?)",
        response.status,
        response.body.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Fixture {
        Fixture {
            image_id: Some("m-own".into()),
            image_name: Some("web-1".into()),
            region: Some("cn-dalian-unicom".into()),
            instance_id: Some("i-own".into()),
        }
    }

    fn response(status: u16, json: &Value) -> RawResponse {
        RawResponse {
            status,
            request_id: None,
            body: json.to_string().into(),
        }
    }

    fn page(total: u64, ids: &[&str]) -> RawResponse {
        let images: Vec<Value> = ids
            .iter()
            .map(|id| serde_json::json!({"ImageId": id, "ImageName": "web-1"}))
            .collect();
        response(
            200,
            &serde_json::json!({"TotalCount": total, "Images": {"Image": images}}),
        )
    }

    #[test]
    fn clap_names_are_the_fixed_names() {
        for scenario in Scenario::value_variants() {
            let name = scenario.to_possible_value().unwrap().get_name().to_owned();
            assert_eq!(name, scenario.name());
        }
    }

    #[test]
    fn read_plans_carry_the_scenario_parameters() {
        let plan = |scenario| Plan::new(scenario, &fixture(), &[], 4096).unwrap();
        assert_eq!(
            plan(Scenario::DeepPage).read_params(),
            [pair("PageNumber", "2000"), pair("PageSize", "50")]
        );
        assert_eq!(plan(Scenario::ImageId).read_params(), [pair("ImageId", "m-own")]);
        assert_eq!(
            plan(Scenario::RegionFilter).read_params(),
            [pair("EnsRegionId", "cn-dalian-unicom")]
        );
        assert_eq!(
            plan(Scenario::NameFilter).read_params(),
            [pair("ImageName", "web-1")]
        );
        assert_eq!(plan(Scenario::FirstPage).next_call().path, "/");
        assert_eq!(
            plan(Scenario::Ceiling).next_call().path,
            "/bench/ceiling?Bytes=4096"
        );
        assert_eq!(plan(Scenario::Ceiling).ceiling_bytes(), Some(4096));
        assert_eq!(plan(Scenario::FirstPage).ceiling_bytes(), None);
        let extra = Plan::new(Scenario::DeepPage, &fixture(), &[pair("PageSize", "10")], 1).unwrap();
        assert_eq!(
            extra.read_params(),
            [pair("PageNumber", "2000"), pair("PageSize", "10")]
        );
    }

    #[test]
    fn missing_fixture_values_and_bad_sizes_are_refused() {
        let empty = Fixture::default();
        for scenario in [
            Scenario::ImageId,
            Scenario::RegionFilter,
            Scenario::NameFilter,
            Scenario::Mixed,
            Scenario::Writes,
        ] {
            assert!(Plan::new(scenario, &empty, &[], 4096).is_err(), "{scenario:?}");
        }
        assert!(Plan::new(Scenario::FirstPage, &empty, &[], 4096).is_ok());
        assert!(Plan::new(Scenario::Ceiling, &empty, &[], 0).is_err());
        assert!(Plan::new(Scenario::Ceiling, &empty, &[], MAX_CEILING_BYTES + 1).is_err());
    }

    #[test]
    fn mixed_sends_one_write_in_twenty_alternating_create_and_modify() {
        let plan = Plan::new(Scenario::Mixed, &fixture(), &[], 4096).unwrap();
        let calls: Vec<Call<'_>> = (0..200).map(|_| plan.next_call()).collect();
        let writes: Vec<&Call<'_>> = calls
            .iter()
            .filter(|call| call.action != "DescribeImages")
            .collect();
        assert_eq!(writes.len(), 10);
        assert_eq!(writes[0].action, "CreateImage");
        assert_eq!(writes[1].action, "ModifyImageAttribute");
        assert_eq!(writes[2].action, "CreateImage");
        assert!(writes[0].params.contains(&pair("InstanceId", "i-own")));
        assert!(writes[1].params.contains(&pair("ImageId", "m-own")));
    }

    #[test]
    fn writes_use_fresh_valid_image_names() {
        let plan = Plan::new(Scenario::Writes, &fixture(), &[], 4096).unwrap();
        let mut names = std::collections::HashSet::new();
        for _ in 0..100 {
            let call = plan.next_call();
            let (_, name) = call.params.iter().find(|(key, _)| key == "ImageName").unwrap();
            ens_domain::image::validate_image_name("ImageName", name).unwrap();
            assert!(names.insert(name.clone()), "{name} reused");
        }
    }

    #[test]
    fn read_answers_are_checked_against_the_page_arithmetic_and_filters() {
        let id = Expect::of(Scenario::ImageId, &fixture(), None);
        let params = [pair("ImageId", "m-own")];
        assert!(check_read(&params, &page(1, &["m-own"]), &id).is_ok());
        assert!(check_read(&params, &page(1, &["m-other"]), &id).is_err());
        assert!(check_read(&params, &page(0, &[]), &id).is_err());

        let first = Expect::of(Scenario::FirstPage, &fixture(), None);
        assert!(check_read(&[], &page(3, &["a", "b", "c"]), &first).is_ok());
        assert!(check_read(&[], &page(30, &["a", "b", "c"]), &first).is_err());
        assert!(check_read(&[], &page(0, &[]), &first).is_err());

        let deep = [pair("PageNumber", "2000"), pair("PageSize", "50")];
        let expect = Expect::of(Scenario::DeepPage, &fixture(), Some(1100));
        assert!(check_read(&deep, &page(1100, &[]), &expect).is_ok());
        assert!(check_read(&deep, &page(1200, &[]), &expect).is_err());
        assert!(check_read(&deep, &page(99_951, &["x"]), &Expect::default()).is_ok());

        let failure = response(400, &serde_json::json!({"Code": "InvalidParameter"}));
        assert!(check_read(&[], &failure, &Expect::default()).is_err());
    }

    #[test]
    fn ceiling_answers_must_have_the_asked_size() {
        let ok = RawResponse {
            status: 200,
            request_id: None,
            body: vec![b' '; 10].into(),
        };
        assert!(check_ceiling(&ok, 10).is_ok());
        assert!(check_ceiling(&ok, 11).is_err());
        let fallback = response(400, &serde_json::json!({"Code": "InvalidAction.NotFound"}));
        assert!(check_ceiling(&fallback, 10).is_err());
    }
}
