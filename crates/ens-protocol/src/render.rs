//! Response bodies as a small tree, rendered as JSON or XML from the same tree so the two
//! formats cannot disagree.

use std::fmt::Write as _;

use crate::error::ApiError;

/// The body format a caller asked for (`Format`, V1 only; V3 is always JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `application/json;charset=utf-8`, the default.
    #[default]
    Json,
    /// `text/xml;charset=utf-8`.
    Xml,
}

impl Format {
    /// Reads the `Format` parameter, case-insensitively (Tea sends `json`, core `JSON`).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        if value.eq_ignore_ascii_case("json") {
            Some(Self::Json)
        } else if value.eq_ignore_ascii_case("xml") {
            Some(Self::Xml)
        } else {
            None
        }
    }

    /// The exact `Content-Type`; Tea only parses XML errors when it matches byte for byte.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json;charset=utf-8",
            Self::Xml => "text/xml;charset=utf-8",
        }
    }
}

/// A node of a response body. Field order is kept as built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A JSON string.
    Str(String),
    /// A JSON integer.
    Int(i64),
    /// A JSON object; in XML one child element per field.
    Object(Vec<(&'static str, Value)>),
    /// The cloud's wrapped list: JSON `{"<item>": [..]}`, XML repeated `<item>` elements.
    List {
        /// Name of each element (`Image` inside `Images`).
        item: &'static str,
        /// The elements.
        items: Vec<Value>,
    },
}

impl Value {
    /// Shorthand for a string value.
    #[must_use]
    pub fn str(value: impl Into<String>) -> Self {
        Self::Str(value.into())
    }
}

/// A success body: the operation's fields, `RequestId` among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// The action, naming the XML root (`{Action}Response`).
    pub action: String,
    /// The top-level fields.
    pub fields: Vec<(&'static str, Value)>,
}

/// Formats a time as the API does: UTC, `YYYY-MM-DDThh:mm:ssZ`.
#[must_use]
pub fn format_time(value: time::OffsetDateTime) -> String {
    let utc = value.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

/// Renders a success body in `format`.
#[must_use]
pub fn render_success(body: &Body, format: Format) -> String {
    let mut out = String::with_capacity(1024);
    match format {
        Format::Json => write_json_object(&mut out, &body.fields),
        Format::Xml => {
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            let root = format!("{}Response", body.action);
            write_xml_element(&mut out, &root, &Value::Object(body.fields.clone()));
        }
    }
    out
}

/// Renders the error envelope both SDKs parse: `RequestId, HostId, Code, Message, Recommend`.
#[must_use]
pub fn render_error(error: &ApiError, request_id: &str, host_id: &str, format: Format) -> String {
    let code = error.code.wire_code();
    let recommend =
        format!("https://api.aliyun.com/troubleshoot?q={code}&product=Ens&requestId={request_id}");
    let fields = vec![
        ("RequestId", Value::str(request_id)),
        ("HostId", Value::str(host_id)),
        ("Code", Value::str(code)),
        ("Message", Value::str(error.message.clone())),
        ("Recommend", Value::Str(recommend)),
    ];
    let mut out = String::with_capacity(512);
    match format {
        Format::Json => write_json_object(&mut out, &fields),
        Format::Xml => {
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
            write_xml_element(&mut out, "Error", &Value::Object(fields));
        }
    }
    out
}

fn write_json_string(out: &mut String, value: &str) {
    out.push('"');
    // Copy runs of plain text whole; only the bytes JSON must escape are written one by one.
    // They are all ASCII, which never occurs inside a multi-byte UTF-8 sequence, so every
    // cut falls on a character boundary.
    let mut plain_from = 0;
    for (index, byte) in value.bytes().enumerate() {
        let escaped = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(value.get(plain_from..index).unwrap_or_default());
        if escaped.is_empty() {
            let _ = write!(out, "\\u{byte:04x}");
        } else {
            out.push_str(escaped);
        }
        plain_from = index + 1;
    }
    out.push_str(value.get(plain_from..).unwrap_or_default());
    out.push('"');
}

fn write_json_object(out: &mut String, fields: &[(&'static str, Value)]) {
    out.push('{');
    for (index, (name, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        write_json_string(out, name);
        out.push(':');
        write_json_value(out, value);
    }
    out.push('}');
}

fn write_json_value(out: &mut String, value: &Value) {
    match value {
        Value::Str(text) => write_json_string(out, text),
        Value::Int(number) => {
            let _ = write!(out, "{number}");
        }
        Value::Object(fields) => write_json_object(out, fields),
        Value::List { item, items } => {
            out.push('{');
            write_json_string(out, item);
            out.push_str(":[");
            for (index, element) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_json_value(out, element);
            }
            out.push_str("]}");
        }
    }
}

/// Whether XML 1.0 allows `c` in a document at all: no control character but tab, line feed
/// and carriage return (not even as a character reference), and neither U+FFFE nor U+FFFF.
fn xml_allows(c: char) -> bool {
    !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
}

/// `text` with every character XML cannot carry replaced by U+FFFD, so that an answer is
/// well-formed whatever a stored field or an echoed parameter holds (JSON escapes them).
fn xml_chars(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().all(xml_allows) {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(text.replace(|c: char| !xml_allows(c), "\u{fffd}"))
    }
}

fn write_xml_element(out: &mut String, name: &str, value: &Value) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    match value {
        Value::Str(text) => out.push_str(&quick_xml::escape::escape(xml_chars(text).as_ref())),
        Value::Int(number) => {
            let _ = write!(out, "{number}");
        }
        Value::Object(fields) => {
            for (field, child) in fields {
                write_xml_element(out, field, child);
            }
        }
        Value::List { item, items } => {
            for element in items {
                write_xml_element(out, item, element);
            }
        }
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_text_survives_a_json_round_trip(text in "\\PC*|[\\x00-\\x7f]*") {
            let mut out = String::new();
            write_json_string(&mut out, &text);
            let parsed: String = serde_json::from_str(&out).unwrap();
            prop_assert_eq!(parsed, text);
        }

        #[test]
        fn any_text_renders_as_well_formed_xml(text in "\\PC*|[\\x00-\\x7f]*|[\\u{fff0}-\\u{ffff}]*") {
            let mut out = String::new();
            write_xml_element(&mut out, "Name", &Value::str(&text));
            prop_assert!(out.chars().all(xml_allows), "{:?}", out);
            let inner = out.strip_prefix("<Name>").and_then(|rest| rest.strip_suffix("</Name>"));
            let back = quick_xml::escape::unescape(inner.unwrap_or_default()).unwrap();
            let expected: String = text
                .chars()
                .map(|c| if xml_allows(c) { c } else { char::REPLACEMENT_CHARACTER })
                .collect();
            prop_assert_eq!(back, expected);
        }
    }

    fn sample() -> Body {
        Body {
            action: "DescribeImages".into(),
            fields: vec![
                ("RequestId", Value::str("R-1")),
                ("Code", Value::Int(0)),
                (
                    "Images",
                    Value::List {
                        item: "Image",
                        items: vec![Value::Object(vec![
                            ("ImageId", Value::str("a<&>\"b")),
                            ("ImageSize", Value::str("40")),
                        ])],
                    },
                ),
            ],
        }
    }

    #[test]
    fn json_wraps_lists_and_keeps_types() {
        let json = render_success(&sample(), Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["Code"], serde_json::json!(0));
        assert_eq!(parsed["Images"]["Image"][0]["ImageId"], "a<&>\"b");
        assert_eq!(parsed["Images"]["Image"][0]["ImageSize"], "40");
    }

    #[test]
    fn empty_lists_stay_wrapped() {
        let body = Body {
            action: "DescribeImages".into(),
            fields: vec![(
                "Images",
                Value::List {
                    item: "Image",
                    items: vec![],
                },
            )],
        };
        assert_eq!(render_success(&body, Format::Json), r#"{"Images":{"Image":[]}}"#);
        assert!(render_success(&body, Format::Xml)
            .ends_with("<DescribeImagesResponse><Images></Images></DescribeImagesResponse>"));
    }

    #[test]
    fn xml_repeats_items_under_the_wrapper_and_escapes_text() {
        let xml = render_success(&sample(), Format::Xml);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DescribeImagesResponse><RequestId>R-1</RequestId>\
             <Code>0</Code><Images><Image><ImageId>a&lt;&amp;&gt;&quot;b</ImageId><ImageSize>40</ImageSize>\
             </Image></Images></DescribeImagesResponse>"
        );
    }

    #[test]
    fn json_escapes_control_characters() {
        let body = Body {
            action: "X".into(),
            fields: vec![("Message", Value::str("a\u{1}b\n\"c\\"))],
        };
        let json = render_success(&body, Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["Message"], "a\u{1}b\n\"c\\");
    }

    #[test]
    fn error_bodies_carry_the_five_fields_in_both_formats() {
        let error = ApiError::new(ErrorCode::InvalidVersion);
        let json = render_error(&error, "RID", "ens.aliyuncs.com", Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["Code"], "InvalidVersion");
        assert_eq!(parsed["RequestId"], "RID");
        assert_eq!(parsed["HostId"], "ens.aliyuncs.com");
        assert_eq!(parsed["Message"], "Specified parameter Version is not valid.");
        assert!(parsed["Recommend"].as_str().unwrap().contains("q=InvalidVersion"));
        let xml = render_error(&error, "RID", "ens.aliyuncs.com", Format::Xml);
        assert!(xml.contains(
            "<Error><RequestId>RID</RequestId><HostId>ens.aliyuncs.com</HostId><Code>InvalidVersion</Code>"
        ));
    }

    #[test]
    fn format_is_case_insensitive() {
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("XML"), Some(Format::Xml));
        assert_eq!(Format::parse("yaml"), None);
    }
}
