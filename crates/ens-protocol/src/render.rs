//! Response bodies as a small tree, rendered as JSON or XML from the same tree so the two
//! formats cannot disagree.

use std::borrow::Cow;
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

/// A node of a response body. Field order is kept as built. Text is borrowed from what the
/// answer is made of (the page, the request ID) wherever it can be, so that building a body
/// copies no stored field: rendering writes each once, straight into the response buffer.
#[derive(Debug)]
pub enum Value<'a> {
    /// A JSON string.
    Str(Cow<'a, str>),
    /// A JSON string of decimal digits: sizes and counters the SDK models declare as
    /// strings, written without a formatted copy.
    Digits(u64),
    /// A JSON string holding a time in the API's format: UTC, `YYYY-MM-DDThh:mm:ssZ`.
    Time(time::OffsetDateTime),
    /// A JSON integer.
    Int(i64),
    /// A JSON object; in XML one child element per field.
    Object(Vec<(&'static str, Value<'a>)>),
    /// The cloud's wrapped list: JSON `{"<item>": [..]}`, XML repeated `<item>` elements.
    List {
        /// Name of each element (`Image` inside `Images`).
        item: &'static str,
        /// The elements.
        items: Vec<Value<'a>>,
    },
    /// The cloud's wrapped list, as [`Value::List`], of records that write their own fields
    /// (a page of images): no tree is built per record.
    Records {
        /// Name of each element.
        item: &'static str,
        /// The records.
        records: Box<dyn RecordList + 'a>,
    },
}

/// Records written field by field into the response buffer, in either format.
pub trait RecordList {
    /// How many records there are.
    fn count(&self) -> usize;
    /// About how many bytes the records take in either format, to size the buffer once.
    fn estimated_len(&self) -> usize;
    /// Writes the fields of record `index` (below [`Self::count`]).
    fn write(&self, index: usize, fields: &mut Fields<'_>);
}

impl std::fmt::Debug for dyn RecordList + '_ {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} records", self.count())
    }
}

/// The records of a slice, each written by one function.
struct Each<'a, T> {
    items: &'a [T],
    write: fn(&T, &mut Fields<'_>),
    bytes_each: usize,
}

impl<T> RecordList for Each<'_, T> {
    fn count(&self) -> usize {
        self.items.len()
    }

    fn estimated_len(&self) -> usize {
        self.items.len() * self.bytes_each
    }

    fn write(&self, index: usize, fields: &mut Fields<'_>) {
        if let Some(item) = self.items.get(index) {
            (self.write)(item, fields);
        }
    }
}

impl<'a> Value<'a> {
    /// Shorthand for a string value, borrowed or owned.
    #[must_use]
    pub fn str(value: impl Into<Cow<'a, str>>) -> Self {
        Self::Str(value.into())
    }

    /// A wrapped list of `items`, each written by `write` as one `item` element; `bytes_each`
    /// is about what one takes.
    #[must_use]
    pub fn records<T>(
        item: &'static str,
        items: &'a [T],
        write: fn(&T, &mut Fields<'_>),
        bytes_each: usize,
    ) -> Self {
        Self::Records {
            item,
            records: Box::new(Each {
                items,
                write,
                bytes_each,
            }),
        }
    }

    /// About how many bytes this value takes in either format, to size the buffer once.
    fn estimated_len(&self) -> usize {
        match self {
            Self::Str(text) => text.len() + 2,
            Self::Digits(_) | Self::Int(_) => 20,
            Self::Time(_) => TIME_LEN + 2,
            Self::Object(fields) => fields_len(fields),
            Self::List { item, items } => {
                item.len() * items.len() * 2 + items.iter().map(Value::estimated_len).sum::<usize>() + 8
            }
            Self::Records { item, records } => {
                (item.len() * 2 + 5) * records.count() + records.estimated_len() + 8
            }
        }
    }
}

fn fields_len(fields: &[(&'static str, Value<'_>)]) -> usize {
    fields
        .iter()
        .map(|(name, value)| 2 * name.len() + 5 + value.estimated_len())
        .sum::<usize>()
        + 2
}

/// A success body: the operation's fields, `RequestId` among them.
#[derive(Debug)]
pub struct Body<'a> {
    /// The action, naming the XML root (`{Action}Response`).
    pub action: &'a str,
    /// The top-level fields.
    pub fields: Vec<(&'static str, Value<'a>)>,
}

/// Length of a time in the API's format, `YYYY-MM-DDThh:mm:ssZ`.
const TIME_LEN: usize = 20;

/// Writes a time as the API does: UTC, `YYYY-MM-DDThh:mm:ssZ`.
fn push_time(out: &mut String, value: time::OffsetDateTime) {
    let utc = value.to_offset(time::UtcOffset::UTC);
    let Ok(year) = u16::try_from(utc.year()) else {
        // Outside 0..=65535 (never stored): the general formatter keeps the sign.
        let _ = write!(out, "{:04}", utc.year());
        return push_time_after_year(out, utc);
    };
    if year > 9999 {
        let _ = write!(out, "{year}");
        return push_time_after_year(out, utc);
    }
    let year = usize::from(year);
    for divisor in [1000, 100, 10, 1] {
        out.push(digit(year / divisor % 10));
    }
    push_time_after_year(out, utc);
}

fn push_time_after_year(out: &mut String, utc: time::OffsetDateTime) {
    for (separator, part) in [
        ('-', u8::from(utc.month())),
        ('-', utc.day()),
        ('T', utc.hour()),
        (':', utc.minute()),
        (':', utc.second()),
    ] {
        out.push(separator);
        out.push(digit(usize::from(part / 10)));
        out.push(digit(usize::from(part % 10)));
    }
    out.push('Z');
}

/// The ASCII digit for `value` (below 10).
fn digit(value: usize) -> char {
    char::from(b"0123456789"[value % 10])
}

/// Renders a success body in `format`, into a buffer sized for it once.
#[must_use]
pub fn render_success(body: Body<'_>, format: Format) -> String {
    let mut out = String::with_capacity(fields_len(&body.fields) + 2 * body.action.len() + 64);
    match format {
        Format::Json => write_object(&mut out, format, &body.fields),
        Format::Xml => {
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><");
            out.push_str(body.action);
            out.push_str("Response>");
            write_object(&mut out, format, &body.fields);
            out.push_str("</");
            out.push_str(body.action);
            out.push_str("Response>");
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
        ("Message", Value::str(error.message.as_str())),
        ("Recommend", Value::str(recommend)),
    ];
    let mut out = String::with_capacity(512);
    match format {
        Format::Json => write_object(&mut out, format, &fields),
        Format::Xml => {
            out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>");
            write_object(&mut out, format, &fields);
            out.push_str("</Error>");
        }
    }
    out
}

/// Whether any of the eight bytes in `word` is one JSON must escape: a control character
/// (below 0x20), a quote or a backslash. These are the classic SWAR tests for a byte below
/// a bound and for a zero byte; they can mark bytes next to a match too, but never report a
/// match in a word that has none, which is all this asks.
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |value: u64, bound: u64| value.wrapping_sub(ONES * bound) & !value & HIGHS;
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    below(word, 0x20) | quote | backslash != 0
}

/// Whether JSON must escape any byte of `bytes`: eight bytes are checked at a time, the
/// last few one by one.
fn needs_escape(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    let word_needs = words.by_ref().any(|chunk| {
        <[u8; 8]>::try_from(chunk).is_ok_and(|word| word_needs_escape(u64::from_le_bytes(word)))
    });
    word_needs
        || words
            .remainder()
            .iter()
            .any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\')
}

fn write_json_string(out: &mut String, value: &str) {
    out.push('"');
    // Most stored text needs no escape at all, and is copied whole.
    if needs_escape(value.as_bytes()) {
        write_json_escaped(out, value);
    } else {
        out.push_str(value);
    }
    out.push('"');
}

/// Writes a field's name and the colon after it. Names are the API's own identifiers,
/// fixed in the code, so they never need an escape.
fn write_json_name(out: &mut String, name: &'static str) {
    out.push('"');
    out.push_str(name);
    out.push_str("\":");
}

/// The body of a JSON string that holds bytes to escape. Runs of plain text are copied
/// whole; the bytes JSON must escape are all ASCII, which never occurs inside a multi-byte
/// UTF-8 sequence, so every cut falls on a character boundary.
fn write_json_escaped(out: &mut String, value: &str) {
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

/// Writes `text` as XML character data: escaped, with what XML cannot carry replaced.
fn write_xml_text(out: &mut String, text: &str) {
    out.push_str(&quick_xml::escape::escape(xml_chars(text).as_ref()));
}

/// Writes the fields of one object, in either format, straight into the response buffer.
/// A page of records is written through it field by field, and so is every [`Value`]: one
/// writer, so the two formats cannot disagree.
pub struct Fields<'o> {
    out: &'o mut String,
    format: Format,
    /// Whether no field has been written yet (JSON separates fields with commas).
    first: bool,
}

impl<'o> Fields<'o> {
    fn new(out: &'o mut String, format: Format) -> Self {
        Self {
            out,
            format,
            first: true,
        }
    }

    /// Opens field `name`: JSON `,"name":`, XML `<name>`.
    fn open(&mut self, name: &'static str) {
        match self.format {
            Format::Json => {
                if !self.first {
                    self.out.push(',');
                }
                write_json_name(self.out, name);
            }
            Format::Xml => {
                self.out.push('<');
                self.out.push_str(name);
                self.out.push('>');
            }
        }
        self.first = false;
    }

    /// Closes field `name` (XML only).
    fn close(&mut self, name: &'static str) {
        if self.format == Format::Xml {
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push('>');
        }
    }

    /// A string field.
    pub fn str(&mut self, name: &'static str, value: &str) {
        self.open(name);
        match self.format {
            Format::Json => write_json_string(self.out, value),
            Format::Xml => write_xml_text(self.out, value),
        }
        self.close(name);
    }

    /// A field of decimal digits, a JSON string (see [`Value::Digits`]).
    pub fn digits(&mut self, name: &'static str, value: u64) {
        self.open(name);
        self.quoted(|out| out.push_str(itoa::Buffer::new().format(value)));
        self.close(name);
    }

    /// A time field in the API's format, a JSON string (see [`Value::Time`]).
    pub fn time(&mut self, name: &'static str, value: time::OffsetDateTime) {
        self.open(name);
        self.quoted(|out| push_time(out, value));
        self.close(name);
    }

    /// An integer field.
    pub fn int(&mut self, name: &'static str, value: i64) {
        self.open(name);
        self.out.push_str(itoa::Buffer::new().format(value));
        self.close(name);
    }

    /// The cloud's wrapped list of objects, each written by `write` (see [`Value::List`]).
    pub fn list<T>(
        &mut self,
        name: &'static str,
        item: &'static str,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut Fields<'_>, T),
    ) {
        self.open(name);
        self.elements(item, items, |out, format, element| {
            write_record(out, format, |fields| write(fields, element));
        });
        self.close(name);
    }

    /// Any [`Value`] as field `name`.
    fn value(&mut self, name: &'static str, value: &Value<'_>) {
        self.open(name);
        write_value(self.out, self.format, value);
        self.close(name);
    }

    /// Writes `content` between quotes in JSON, bare in XML.
    fn quoted(&mut self, content: impl FnOnce(&mut String)) {
        write_quoted(self.out, self.format, content);
    }

    /// The inside of a wrapped list: JSON `{"item":[e,e]}`, XML `<item>e</item>` repeated;
    /// `write` writes each element's content.
    fn elements<T>(
        &mut self,
        item: &'static str,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut String, Format, T),
    ) {
        match self.format {
            Format::Json => {
                self.out.push('{');
                write_json_name(self.out, item);
                self.out.push('[');
                for (index, element) in items.into_iter().enumerate() {
                    if index > 0 {
                        self.out.push(',');
                    }
                    write(self.out, self.format, element);
                }
                self.out.push_str("]}");
            }
            Format::Xml => {
                for element in items {
                    self.out.push('<');
                    self.out.push_str(item);
                    self.out.push('>');
                    write(self.out, self.format, element);
                    self.out.push_str("</");
                    self.out.push_str(item);
                    self.out.push('>');
                }
            }
        }
    }
}

/// Writes an object's fields: in JSON with its braces, in XML as its child elements.
fn write_object(out: &mut String, format: Format, fields: &[(&'static str, Value<'_>)]) {
    write_record(out, format, |writer| {
        for (name, value) in fields {
            writer.value(name, value);
        }
    });
}

/// Writes a value's content: what goes after a JSON field's colon, or inside its XML element.
fn write_value(out: &mut String, format: Format, value: &Value<'_>) {
    match value {
        Value::Str(text) => match format {
            Format::Json => write_json_string(out, text),
            Format::Xml => write_xml_text(out, text),
        },
        Value::Digits(number) => {
            write_quoted(out, format, |out| {
                out.push_str(itoa::Buffer::new().format(*number))
            });
        }
        Value::Time(at) => write_quoted(out, format, |out| push_time(out, *at)),
        Value::Int(number) => out.push_str(itoa::Buffer::new().format(*number)),
        Value::Object(fields) => write_object(out, format, fields),
        Value::List { item, items } => {
            Fields::new(out, format).elements(item, items, |out, format, element| {
                write_value(out, format, element);
            });
        }
        Value::Records { item, records } => {
            Fields::new(out, format).elements(item, 0..records.count(), |out, format, index| {
                write_record(out, format, |fields| records.write(index, fields));
            });
        }
    }
}

/// Writes `content` between quotes in JSON, bare in XML.
fn write_quoted(out: &mut String, format: Format, content: impl FnOnce(&mut String)) {
    let json = format == Format::Json;
    if json {
        out.push('"');
    }
    content(out);
    if json {
        out.push('"');
    }
}

/// Writes one object whose fields `write` writes: in JSON with its braces.
fn write_record(out: &mut String, format: Format, write: impl FnOnce(&mut Fields<'_>)) {
    let json = format == Format::Json;
    if json {
        out.push('{');
    }
    write(&mut Fields::new(out, format));
    if json {
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_word_needs_escape_exactly_when_one_of_its_bytes_does(bytes in proptest::array::uniform8(any::<u8>())) {
            let expected = bytes.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\');
            prop_assert_eq!(word_needs_escape(u64::from_le_bytes(bytes)), expected);
        }

        #[test]
        fn times_are_written_as_the_general_formatter_writes_them(seconds in -62_000_000_000i64..253_402_300_799) {
            let at = time::OffsetDateTime::from_unix_timestamp(seconds).unwrap();
            let expected = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
            let mut out = String::new();
            push_time(&mut out, at);
            prop_assert_eq!(out, expected);
        }

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
            Fields::new(&mut out, Format::Xml).str("Name", &text);
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

    fn sample() -> Body<'static> {
        Body {
            action: "DescribeImages",
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
        let json = render_success(sample(), Format::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["Code"], serde_json::json!(0));
        assert_eq!(parsed["Images"]["Image"][0]["ImageId"], "a<&>\"b");
        assert_eq!(parsed["Images"]["Image"][0]["ImageSize"], "40");
    }

    #[test]
    fn empty_lists_stay_wrapped() {
        let body = || Body {
            action: "DescribeImages",
            fields: vec![(
                "Images",
                Value::List {
                    item: "Image",
                    items: vec![],
                },
            )],
        };
        assert_eq!(render_success(body(), Format::Json), r#"{"Images":{"Image":[]}}"#);
        assert!(render_success(body(), Format::Xml)
            .ends_with("<DescribeImagesResponse><Images></Images></DescribeImagesResponse>"));
    }

    #[test]
    fn xml_repeats_items_under_the_wrapper_and_escapes_text() {
        let xml = render_success(sample(), Format::Xml);
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
            action: "X",
            fields: vec![("Message", Value::str("a\u{1}b\n\"c\\"))],
        };
        let json = render_success(body, Format::Json);
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
    fn every_byte_value_in_every_place_of_a_word_is_judged_alone() {
        for place in 0..8 {
            for byte in 0..=u8::MAX {
                let mut word = [b'a'; 8];
                word[place] = byte;
                let expected = byte < 0x20 || byte == b'"' || byte == b'\\';
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(word)),
                    expected,
                    "{byte:#x} at {place}"
                );
            }
        }
    }

    #[test]
    fn digits_and_times_are_strings_in_json_and_text_in_xml() {
        let body = || Body {
            action: "X",
            fields: vec![
                ("Size", Value::Digits(18_446_744_073_709_551_615)),
                (
                    "At",
                    Value::Time(time::macros::datetime!(2026-12-05 01:02:03 +08:00)),
                ),
            ],
        };
        assert_eq!(
            render_success(body(), Format::Json),
            r#"{"Size":"18446744073709551615","At":"2026-12-04T17:02:03Z"}"#
        );
        assert!(render_success(body(), Format::Xml).ends_with(
            "<XResponse><Size>18446744073709551615</Size><At>2026-12-04T17:02:03Z</At></XResponse>"
        ));
    }

    #[test]
    fn records_write_what_the_same_tree_would() {
        fn write_pair(pair: &(&str, u64), fields: &mut Fields<'_>) {
            fields.str("Name", pair.0);
            fields.list("Sizes", "Size", [pair.1, pair.1 + 1], |fields, size| {
                fields.digits("Gib", size);
            });
            fields.int("Count", 7);
        }
        let pairs = [("a<\"b", 1), ("c", 40)];
        let tree = || Body {
            action: "X",
            fields: vec![(
                "Items",
                Value::List {
                    item: "Item",
                    items: pairs
                        .iter()
                        .map(|(name, size)| {
                            Value::Object(vec![
                                ("Name", Value::str(*name)),
                                (
                                    "Sizes",
                                    Value::List {
                                        item: "Size",
                                        items: vec![
                                            Value::Object(vec![("Gib", Value::Digits(*size))]),
                                            Value::Object(vec![("Gib", Value::Digits(size + 1))]),
                                        ],
                                    },
                                ),
                                ("Count", Value::Int(7)),
                            ])
                        })
                        .collect(),
                },
            )],
        };
        let records = || Body {
            action: "X",
            fields: vec![("Items", Value::records("Item", &pairs, write_pair, 64))],
        };
        for format in [Format::Json, Format::Xml] {
            assert_eq!(render_success(records(), format), render_success(tree(), format));
        }
        assert_eq!(
            render_success(records(), Format::Json),
            r#"{"Items":{"Item":[{"Name":"a<\"b","Sizes":{"Size":[{"Gib":"1"},{"Gib":"2"}]},"Count":7},{"Name":"c","Sizes":{"Size":[{"Gib":"40"},{"Gib":"41"}]},"Count":7}]}}"#
        );
    }

    #[test]
    fn format_is_case_insensitive() {
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("XML"), Some(Format::Xml));
        assert_eq!(Format::parse("yaml"), None);
    }
}
