//! `ImportImage`: registers a custom image from image files already in object storage.
//!
//! The files are named either by the single-file parameters `OSSBucket`, `OSSObject` and
//! `OSSRegion`, or by `DiskDeviceMapping`: a JSON array of `{"OSSBucket", "OSSObject",
//! "OSSRegion"}` objects, the first one the system disk. The Tea SDK sends its list as a
//! compact `json.dumps`; the core SDK sends whatever string its caller wrote. Buckets and keys
//! end up as paths or keys in the operator's storage, so each one is checked here with the
//! domain's rules before anything else sees it.

use std::collections::BTreeMap;

use ens_domain::image::{validate_image_name, validate_resource_id};
use ens_domain::transfer::{validate_bucket_name, validate_object_key, MAX_IMPORT_DISKS};
use ens_domain::validation::validate_compute_type;
use ens_domain::{InvalidField, ObjectName};
use serde_json::Value as Json;

use super::{optional, optional_token, required};
use crate::error::ApiError;
use crate::render::{Body, Value};

/// The region of a source file that names none, when `TargetOSSRegionId` names none either:
/// the only `OSSRegion` the API documents.
pub const DEFAULT_OSS_REGION: &str = "cn-beijing";

/// The `Platform` values accepted: the distributions the image pages list for Linux images
/// (`windows` is left out because only `linux` images can be imported).
pub const PLATFORMS: &[&str] = &["centos", "ubuntu", "alios", "debian", "rhel"];

/// The `LicenseType` values, in the cloud's spelling.
pub const LICENSE_TYPES: &[&str] = &["Aliyun", "BYOL"];

/// The keys one `DiskDeviceMapping` entry may hold: exactly the fields of the SDK model.
const DISK_KEYS: [&str; 3] = ["OSSBucket", "OSSObject", "OSSRegion"];

/// The single-file source parameters, which must not accompany `DiskDeviceMapping`.
const SINGLE_FILE_PARAMS: [&str; 3] = ["OSSBucket", "OSSObject", "OSSRegion"];

/// Longest piece of a caller's value quoted back in an error message.
const MAX_QUOTED_CHARS: usize = 64;

/// A validated `ImportImage` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportImageRequest {
    /// `ImageName`, following the naming rules.
    pub image_name: String,
    /// `Architecture`: always `x86_64`, the only one the API supports.
    pub architecture: String,
    /// `OSType`: always `linux` (lower-case), the only one the API supports.
    pub os_type: String,
    /// `ImageFormat`: always `qcow2` (lower-case), the only one the API supports.
    pub image_format: String,
    /// `ComputeType`: one of the documented compute types (`ens_vm` for a VM image).
    pub compute_type: String,
    /// `Platform`: the distribution, lower-case (`centos`, `ubuntu`, ...).
    pub platform: Option<String>,
    /// `OSVersion`, e.g. `7.9`.
    pub os_version: Option<String>,
    /// `LicenseType`: `Aliyun` or `BYOL`, in that spelling.
    pub license_type: Option<String>,
    /// `TargetOSSRegionId`: region of the bucket that keeps the image files.
    pub target_oss_region: Option<String>,
    /// The image files, system disk first: one from `OSSBucket`/`OSSObject`/`OSSRegion`, or
    /// 1 to [`MAX_IMPORT_DISKS`] from `DiskDeviceMapping`. A file that names no region gets
    /// `TargetOSSRegionId`, else [`DEFAULT_OSS_REGION`].
    pub disks: Vec<ObjectName>,
}

impl ImportImageRequest {
    /// Reads and validates the business parameters, in the order the API page lists them.
    ///
    /// # Errors
    /// `MissingParameter` for an absent required parameter (or neither `OSSObject` nor
    /// `DiskDeviceMapping`), `InvalidParameter.<Name>` for bad values; every problem inside
    /// `DiskDeviceMapping` is `InvalidParameter.DiskDeviceMapping`.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let image_name = required(params, "ImageName")?;
        validate_image_name("ImageName", image_name)?;
        let architecture = required(params, "Architecture")?;
        if architecture != "x86_64" {
            return Err(ApiError::invalid_parameter(
                "Architecture",
                "only x86_64 is supported",
            ));
        }
        let os_type = required(params, "OSType")?;
        if !os_type.eq_ignore_ascii_case("linux") {
            return Err(ApiError::invalid_parameter(
                "OSType",
                "only linux images can be imported",
            ));
        }
        let image_format = required(params, "ImageFormat")?;
        if !image_format.eq_ignore_ascii_case("qcow2") {
            return Err(ApiError::invalid_parameter(
                "ImageFormat",
                "only qcow2 is supported",
            ));
        }
        let compute_type = required(params, "ComputeType")?;
        validate_compute_type("ComputeType", compute_type)?;
        let platform = optional(params, "Platform")
            .map(|value| choice("Platform", value, PLATFORMS))
            .transpose()?;
        let os_version = optional_token(params, "OSVersion")?;
        let license_type = optional(params, "LicenseType")
            .map(|value| choice("LicenseType", value, LICENSE_TYPES))
            .transpose()?;
        let target_oss_region = optional(params, "TargetOSSRegionId")
            .map(|region| validate_resource_id("TargetOSSRegionId", region).map(|()| region.to_owned()))
            .transpose()?;
        let default_region = target_oss_region.as_deref().unwrap_or(DEFAULT_OSS_REGION);
        let disks = source(params, default_region)?;
        Ok(Self {
            image_name: image_name.to_owned(),
            architecture: "x86_64".to_owned(),
            os_type: "linux".to_owned(),
            image_format: "qcow2".to_owned(),
            compute_type: compute_type.to_owned(),
            platform: platform.map(str::to_owned),
            os_version,
            license_type: license_type.map(str::to_owned),
            target_oss_region,
            disks,
        })
    }
}

/// `value` if it is one of `allowed` in any letter case, in the spelling of `allowed`.
fn choice(name: &'static str, value: &str, allowed: &[&'static str]) -> Result<&'static str, ApiError> {
    allowed
        .iter()
        .copied()
        .find(|candidate| candidate.eq_ignore_ascii_case(value))
        .ok_or_else(|| ApiError::invalid_parameter(name, &format!("must be one of {}", allowed.join(", "))))
}

/// At most [`MAX_QUOTED_CHARS`] characters of a caller's text, quoted and escaped, so an
/// error message stays small and printable whatever was sent.
fn quoted(text: &str) -> String {
    let head: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if head.len() < text.len() {
        format!("{head:?}...")
    } else {
        format!("{head:?}")
    }
}

/// The image files: `DiskDeviceMapping` when it lists any, else the single-file parameters.
fn source(params: &BTreeMap<String, String>, default_region: &str) -> Result<Vec<ObjectName>, ApiError> {
    let mapping = optional(params, "DiskDeviceMapping")
        .map(|text| disk_device_mapping(text, default_region))
        .transpose()?
        // The Tea SDK sends `[]` for an empty list: no mapping at all.
        .filter(|disks| !disks.is_empty());
    let single = SINGLE_FILE_PARAMS
        .into_iter()
        .find(|name| optional(params, name).is_some());
    match (mapping, single) {
        (Some(_), Some(name)) => Err(ApiError::invalid_parameter(
            "DiskDeviceMapping",
            &format!("{name} was given too: give OSSBucket and OSSObject, or DiskDeviceMapping, not both"),
        )),
        (Some(disks), None) => Ok(disks),
        (None, _) => single_file(params, default_region).map(|disk| vec![disk]),
    }
}

/// The file named by `OSSBucket`, `OSSObject` and `OSSRegion`.
fn single_file(params: &BTreeMap<String, String>, default_region: &str) -> Result<ObjectName, ApiError> {
    let key = optional(params, "OSSObject")
        .ok_or_else(|| ApiError::missing_parameter("OSSObject (or DiskDeviceMapping)"))?;
    let bucket = required(params, "OSSBucket")?;
    validate_bucket_name("OSSBucket", bucket)?;
    validate_object_key("OSSObject", key)?;
    let region = match optional(params, "OSSRegion") {
        Some(region) => {
            validate_resource_id("OSSRegion", region)?;
            region
        }
        None => default_region,
    };
    Ok(ObjectName {
        region: region.to_owned(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })
}

/// `InvalidParameter.DiskDeviceMapping` with `reason`.
fn invalid_mapping(reason: &str) -> ApiError {
    ApiError::invalid_parameter("DiskDeviceMapping", reason)
}

/// Parses the `DiskDeviceMapping` JSON array; an empty array gives no disks.
fn disk_device_mapping(text: &str, default_region: &str) -> Result<Vec<ObjectName>, ApiError> {
    let shape = "must be a JSON array of {\"OSSBucket\",\"OSSObject\",\"OSSRegion\"} objects";
    let parsed: Json =
        serde_json::from_str(text).map_err(|error| invalid_mapping(&format!("{shape} ({error})")))?;
    let Json::Array(entries) = parsed else {
        return Err(invalid_mapping(shape));
    };
    if entries.len() > MAX_IMPORT_DISKS {
        return Err(invalid_mapping(&format!(
            "at most {MAX_IMPORT_DISKS} disks: a system disk and up to {} data disks",
            MAX_IMPORT_DISKS - 1
        )));
    }
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| disk(index + 1, entry, default_region))
        .collect()
}

/// Entry `number` (1-based) of `DiskDeviceMapping`.
fn disk(number: usize, entry: &Json, default_region: &str) -> Result<ObjectName, ApiError> {
    let Json::Object(fields) = entry else {
        return Err(invalid_mapping(&format!("disk {number} is not a JSON object")));
    };
    if let Some(unknown) = fields.keys().find(|key| !DISK_KEYS.contains(&key.as_str())) {
        return Err(invalid_mapping(&format!(
            "disk {number} has the unknown key {}: only OSSBucket, OSSObject and OSSRegion are accepted",
            quoted(unknown)
        )));
    }
    // An empty string counts as absent, as for any parameter.
    let text = |key: &'static str| match fields.get(key) {
        None => Ok(None),
        Some(Json::String(value)) if value.is_empty() => Ok(None),
        Some(Json::String(value)) => Ok(Some(value.as_str())),
        Some(_) => Err(invalid_mapping(&format!("disk {number}: {key} must be a string"))),
    };
    let checked = |key: &'static str, rule: fn(&'static str, &str) -> Result<(), InvalidField>| {
        let value = text(key)?.ok_or_else(|| invalid_mapping(&format!("disk {number} has no {key}")))?;
        rule(key, value).map_err(|error| invalid_mapping(&format!("disk {number}: {}", error.reason)))?;
        Ok::<_, ApiError>(value)
    };
    let bucket = checked("OSSBucket", validate_bucket_name)?;
    let key = checked("OSSObject", validate_object_key)?;
    let region = match text("OSSRegion")? {
        Some(_) => checked("OSSRegion", validate_resource_id)?,
        None => default_region,
    };
    Ok(ObjectName {
        region: region.to_owned(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    })
}

/// `RequestId` and the new `ImageId`; the SDK model has no `Code` for this call.
#[must_use]
pub fn response<'a>(request_id: &'a str, image_id: &'a str) -> Body<'a> {
    Body {
        action: "ImportImage",
        fields: vec![
            ("RequestId", Value::str(request_id)),
            ("ImageId", Value::str(image_id)),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::{render_success, Format};
    use proptest::prelude::*;

    /// What every call below sends besides its source.
    const BASE: [(&str, &str); 5] = [
        ("ImageName", "img-import:1"),
        ("Architecture", "x86_64"),
        ("OSType", "linux"),
        ("ImageFormat", "qcow2"),
        ("ComputeType", "ens_vm"),
    ];

    fn params(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        BASE.iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn parse(extra: &[(&str, &str)]) -> Result<ImportImageRequest, ApiError> {
        ImportImageRequest::from_params(&params(extra))
    }

    fn code(extra: &[(&str, &str)]) -> String {
        parse(extra).unwrap_err().code.wire_code().into_owned()
    }

    fn object(region: &str, bucket: &str, key: &str) -> ObjectName {
        ObjectName {
            region: region.into(),
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    /// Python: `json.dumps(list, ensure_ascii=False, separators=(",", ":"))`, as the Tea SDK
    /// sends it (a disk without a region omits the key: the model's `to_map` skips `None`).
    const TEA_MAPPING: &str = "[{\"OSSBucket\":\"images-in\",\"OSSObject\":\"sys disk.qcow2\",\
                               \"OSSRegion\":\"cn-beijing\"},{\"OSSBucket\":\"data-2\",\
                               \"OSSObject\":\"data/d1.qcow2\"}]";

    #[test]
    fn the_tea_sdk_mapping_is_read_in_order() {
        let request = parse(&[("DiskDeviceMapping", TEA_MAPPING), ("Platform", "centos")]).unwrap();
        assert_eq!(
            request.disks,
            [
                object("cn-beijing", "images-in", "sys disk.qcow2"),
                object("cn-beijing", "data-2", "data/d1.qcow2"),
            ]
        );
        assert_eq!(request.image_name, "img-import:1");
        assert_eq!(request.platform.as_deref(), Some("centos"));
        assert_eq!(request.target_oss_region, None);
    }

    #[test]
    fn a_hand_written_mapping_with_spaces_and_unicode_is_read() {
        // `json.dumps` with its default separators, as a core SDK caller would write it.
        let text = "[{\"OSSBucket\": \"images-in\", \"OSSObject\": \"镜像/系统盘.qcow2\", \
                    \"OSSRegion\": \"ap-southeast-1\"}]";
        let request = parse(&[("DiskDeviceMapping", text)]).unwrap();
        assert_eq!(
            request.disks,
            [object("ap-southeast-1", "images-in", "镜像/系统盘.qcow2")]
        );
    }

    #[test]
    fn the_captured_sdk_request_is_refused_for_its_short_bucket_names() {
        // The protocol vectors' mapping: `b1` is shorter than a bucket name may be.
        let captured =
            "[{\"OSSBucket\":\"b1\",\"OSSObject\":\"sys disk.qcow2\",\"OSSRegion\":\"cn-beijing\"},\
                        {\"OSSBucket\":\"b2\",\"OSSObject\":\"data.qcow2\",\"OSSRegion\":\"cn-beijing\"}]";
        let error = parse(&[("DiskDeviceMapping", captured), ("Platform", "centos")]).unwrap_err();
        assert_eq!(error.code.wire_code(), "InvalidParameter.DiskDeviceMapping");
        assert!(error.message.contains("disk 1"), "{}", error.message);
    }

    #[test]
    fn a_single_file_takes_its_region_from_oss_region_then_the_target_then_the_default() {
        let file = [("OSSBucket", "images-in"), ("OSSObject", "centos.qcow2")];
        assert_eq!(
            parse(&file).unwrap().disks,
            [object("cn-beijing", "images-in", "centos.qcow2")]
        );
        let with_target = parse(&[file[0], file[1], ("TargetOSSRegionId", "ap-southeast-1")]).unwrap();
        assert_eq!(with_target.disks[0].region, "ap-southeast-1");
        assert_eq!(with_target.target_oss_region.as_deref(), Some("ap-southeast-1"));
        let with_region = parse(&[
            file[0],
            file[1],
            ("OSSRegion", "cn-hangzhou"),
            ("TargetOSSRegionId", "ap-southeast-1"),
        ])
        .unwrap();
        assert_eq!(with_region.disks[0].region, "cn-hangzhou");
        // Mapping entries without a region follow the same rule.
        let mapping = "[{\"OSSBucket\":\"images-in\",\"OSSObject\":\"a.qcow2\"}]";
        let request = parse(&[
            ("DiskDeviceMapping", mapping),
            ("TargetOSSRegionId", "ap-southeast-1"),
        ])
        .unwrap();
        assert_eq!(request.disks[0].region, "ap-southeast-1");
    }

    #[test]
    fn enumerations_are_read_in_any_case_and_stored_canonically() {
        let request = parse(&[
            ("OSSBucket", "images-in"),
            ("OSSObject", "a.qcow2"),
            ("OSType", "Linux"),
            ("ImageFormat", "QCOW2"),
            ("Platform", "Ubuntu"),
            ("LicenseType", "byol"),
            ("OSVersion", "22.04"),
        ])
        .unwrap();
        assert_eq!(request.os_type, "linux");
        assert_eq!(request.image_format, "qcow2");
        assert_eq!(request.architecture, "x86_64");
        assert_eq!(request.compute_type, "ens_vm");
        assert_eq!(request.platform.as_deref(), Some("ubuntu"));
        assert_eq!(request.license_type.as_deref(), Some("BYOL"));
        assert_eq!(request.os_version.as_deref(), Some("22.04"));
    }

    #[test]
    fn every_required_parameter_is_named_when_missing() {
        let file = [("OSSBucket", "images-in"), ("OSSObject", "a.qcow2")];
        for absent in [
            "ImageName",
            "Architecture",
            "OSType",
            "ImageFormat",
            "ComputeType",
        ] {
            let mut sent = params(&file);
            sent.remove(absent);
            let error = ImportImageRequest::from_params(&sent).unwrap_err();
            assert_eq!(error.code.wire_code(), "MissingParameter", "{absent}");
            assert!(error.message.contains(absent), "{}", error.message);
            // Empty is absent.
            sent.insert(absent.to_owned(), String::new());
            let error = ImportImageRequest::from_params(&sent).unwrap_err();
            assert_eq!(error.code.wire_code(), "MissingParameter", "{absent}");
        }
        let error = parse(&[]).unwrap_err();
        assert_eq!(error.code.wire_code(), "MissingParameter");
        assert!(error.message.contains("OSSObject"), "{}", error.message);
        assert_eq!(code(&[("OSSBucket", "images-in")]), "MissingParameter");
        assert_eq!(code(&[("DiskDeviceMapping", "[]")]), "MissingParameter");
        let error = parse(&[("OSSObject", "a.qcow2")]).unwrap_err();
        assert_eq!(error.code.wire_code(), "MissingParameter");
        assert!(error.message.contains("OSSBucket"), "{}", error.message);
    }

    #[test]
    fn every_bad_value_is_refused_with_its_own_code() {
        let file = [("OSSBucket", "images-in"), ("OSSObject", "a.qcow2")];
        for (name, value) in [
            ("ImageName", "1st"),
            ("ImageName", "http://x"),
            ("Architecture", "i386"),
            ("Architecture", "arm64"),
            ("OSType", "windows"),
            ("OSType", "macos"),
            ("ImageFormat", "raw"),
            ("ImageFormat", "vhd"),
            ("ComputeType", "gpu"),
            ("Platform", "windows"),
            ("Platform", "cent os"),
            ("OSVersion", "7 9"),
            ("OSVersion", &"9".repeat(65)),
            ("LicenseType", "GPL"),
            ("TargetOSSRegionId", "cn beijing"),
            ("OSSRegion", "cn/beijing"),
        ] {
            assert_eq!(
                code(&[file[0], file[1], (name, value)]),
                format!("InvalidParameter.{name}"),
                "{name}={value}"
            );
        }
    }

    #[test]
    fn traversal_in_a_single_file_is_refused_by_parameter() {
        for key in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "a\\b",
            "a/./b",
            "a//b",
            "dir/",
        ] {
            assert_eq!(
                code(&[("OSSBucket", "images-in"), ("OSSObject", key)]),
                "InvalidParameter.OSSObject",
                "{key}"
            );
        }
        for bucket in ["..", "../x", "/etc", "a\\b", "Images", "ab"] {
            assert_eq!(
                code(&[("OSSBucket", bucket), ("OSSObject", "a.qcow2")]),
                "InvalidParameter.OSSBucket",
                "{bucket}"
            );
        }
    }

    #[test]
    fn traversal_in_a_mapping_is_refused_as_the_mapping() {
        for key in ["../x", "/etc/passwd", "a/../../b", "a\\b"] {
            let mapping = serde_json::json!([
                {"OSSBucket": "images-in", "OSSObject": "ok.qcow2"},
                {"OSSBucket": "images-in", "OSSObject": key},
            ])
            .to_string();
            let error = parse(&[("DiskDeviceMapping", &mapping)]).unwrap_err();
            assert_eq!(
                error.code.wire_code(),
                "InvalidParameter.DiskDeviceMapping",
                "{key}"
            );
            assert!(error.message.contains("disk 2"), "{}", error.message);
        }
        for bucket in ["..", "../x", "/etc"] {
            let mapping = serde_json::json!([{"OSSBucket": bucket, "OSSObject": "a"}]).to_string();
            assert_eq!(
                code(&[("DiskDeviceMapping", &mapping)]),
                "InvalidParameter.DiskDeviceMapping",
                "{bucket}"
            );
        }
    }

    #[test]
    fn malformed_mappings_are_refused() {
        for mapping in [
            // What the core SDK sends when handed a Python list instead of a string.
            "[{'OSSBucket': 'images-in', 'OSSObject': 'a.qcow2'}]",
            "{\"OSSBucket\":\"images-in\",\"OSSObject\":\"a.qcow2\"}",
            "[{\"OSSBucket\":\"images-in\",\"OSSObject\":\"a.qcow2\"}",
            "[null]",
            "[\"images-in/a.qcow2\"]",
            "[{\"OSSBucket\":\"images-in\",\"OSSObject\":7}]",
            "[{\"OSSBucket\":\"images-in\",\"OSSObject\":null}]",
            "[{\"OSSBucket\":\"images-in\"}]",
            "[{\"OSSObject\":\"a.qcow2\"}]",
            "[{\"OSSBucket\":\"images-in\",\"OSSObject\":\"a.qcow2\",\"OSSRegion\":\"cn beijing\"}]",
            "[{\"OSSBucket\":\"images-in\",\"OSSObject\":\"a.qcow2\",\"Format\":\"raw\"}]",
            "[{\"OSSBucket\":\"images-in\",\"OSSObject\":\"a.qcow2\",\"OssObject\":\"b\"}]",
            "\"[]\"",
            "42",
        ] {
            assert_eq!(
                code(&[("DiskDeviceMapping", mapping)]),
                "InvalidParameter.DiskDeviceMapping",
                "{mapping}"
            );
        }
    }

    #[test]
    fn mapping_length_is_bounded() {
        let disks = |count: usize| {
            let entries: Vec<_> = (0..count)
                .map(|n| serde_json::json!({"OSSBucket": "images-in", "OSSObject": format!("d{n}.qcow2")}))
                .collect();
            Json::Array(entries).to_string()
        };
        let full = parse(&[("DiskDeviceMapping", &disks(MAX_IMPORT_DISKS))]).unwrap();
        assert_eq!(full.disks.len(), MAX_IMPORT_DISKS);
        assert_eq!(full.disks[0].key, "d0.qcow2");
        assert_eq!(
            code(&[("DiskDeviceMapping", &disks(MAX_IMPORT_DISKS + 1))]),
            "InvalidParameter.DiskDeviceMapping"
        );
    }

    #[test]
    fn a_file_and_a_mapping_together_are_refused() {
        for single in [
            ("OSSObject", "a.qcow2"),
            ("OSSBucket", "images-in"),
            ("OSSRegion", "cn-beijing"),
        ] {
            let error = parse(&[single, ("DiskDeviceMapping", TEA_MAPPING)]).unwrap_err();
            assert_eq!(error.code.wire_code(), "InvalidParameter.DiskDeviceMapping");
            assert!(error.message.contains("not both"), "{}", error.message);
        }
        // An empty list is no mapping: the single file is used.
        let request = parse(&[
            ("OSSBucket", "images-in"),
            ("OSSObject", "a.qcow2"),
            ("DiskDeviceMapping", "[]"),
        ])
        .unwrap();
        assert_eq!(request.disks, [object("cn-beijing", "images-in", "a.qcow2")]);
    }

    #[test]
    fn an_unknown_key_is_quoted_briefly() {
        let key = "K".repeat(10_000);
        let mapping = format!("[{{\"OSSBucket\":\"images-in\",\"OSSObject\":\"a\",\"{key}\":\"v\"}}]");
        let error = parse(&[("DiskDeviceMapping", &mapping)]).unwrap_err();
        assert!(error.message.len() < 400, "{}", error.message.len());
    }

    #[test]
    fn response_has_request_id_and_image_id_only() {
        let body = || response("R-1", "m-5t4xwkfkbs0uxv0kymdb6uip7");
        let json: Json = serde_json::from_str(&render_success(body(), Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"RequestId": "R-1", "ImageId": "m-5t4xwkfkbs0uxv0kymdb6uip7"})
        );
        let xml = render_success(body(), Format::Xml);
        assert!(
            xml.contains("<ImportImageResponse><RequestId>R-1</RequestId><ImageId>m-5t4xwkfkbs0uxv0kymdb6uip7</ImageId></ImportImageResponse>"),
            "{xml}"
        );
    }

    proptest! {
        #[test]
        fn any_disk_device_mapping_is_answered_without_panicking(
            text in prop_oneof![
                ".*",
                "\\[(\\{(\"(OSSBucket|OSSObject|OSSRegion|[A-Za-z]{0,6})\":(\"[^\"]{0,12}\"|-?[0-9]{1,3}|null|true|\\[\\]|\\{\\}),?){0,4}\\},?){0,20}\\]?",
                proptest::collection::vec(("[a-z0-9-]{0,8}", "[./a-z\\\\]{0,10}", "[a-z-]{0,12}"), 0..20)
                    .prop_map(|disks| {
                        let entries: Vec<_> = disks
                            .into_iter()
                            .map(|(b, o, r)| serde_json::json!({"OSSBucket": b, "OSSObject": o, "OSSRegion": r}))
                            .collect();
                        Json::Array(entries).to_string()
                    }),
            ],
            with_file in any::<bool>(),
        ) {
            let mut extra = vec![("DiskDeviceMapping", text.as_str())];
            if with_file {
                extra.extend([("OSSBucket", "images-in"), ("OSSObject", "a.qcow2")]);
            }
            if let Ok(request) = parse(&extra) {
                prop_assert!(!request.disks.is_empty() && request.disks.len() <= MAX_IMPORT_DISKS);
                for disk in &request.disks {
                    prop_assert!(validate_object_key("OSSObject", &disk.key).is_ok());
                    prop_assert!(validate_bucket_name("OSSBucket", &disk.bucket).is_ok());
                }
            }
        }
    }
}
