//! Checks that an error answer is a document its caller can read back.
//!
//! Error messages echo what the caller sent (a parameter name, the V1 string to sign), so any
//! byte a client can put on the wire ends up in a JSON or XML body; both SDKs fail on a body
//! they cannot parse and then report a useless error instead of the server's.

use ens_protocol::render::render_error;
use ens_protocol::{ApiError, Format};
use quick_xml::events::Event;

/// Renders `error` in `format` and asserts the body parses and carries the message.
///
/// # Panics
/// When the body is not well-formed or loses the message: that is the finding.
pub fn assert_error_renders(error: &ApiError, format: Format) {
    let body = render_error(error, "FUZZ-REQUEST-ID", "ens.aliyuncs.com", format);
    match format {
        Format::Json => {
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(&body);
            let message = parsed
                .as_ref()
                .ok()
                .and_then(|value| value.get("Message")?.as_str());
            assert_eq!(message, Some(error.message.as_str()), "JSON error body: {body}");
        }
        Format::Xml => {
            let expected: String = error
                .message
                .chars()
                .map(|c| {
                    if xml_allows(c) {
                        c
                    } else {
                        char::REPLACEMENT_CHARACTER
                    }
                })
                .collect();
            assert_eq!(
                xml_message(&body).as_deref(),
                Some(expected.as_str()),
                "XML error body: {body}"
            );
        }
    }
}

/// XML 1.0's `Char` production: which characters a document may hold at all.
fn xml_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

/// The text of `<Message>` if the whole body is well-formed XML made of allowed characters.
fn xml_message(body: &str) -> Option<String> {
    if !body.chars().all(xml_allows) {
        return None;
    }
    let mut reader = quick_xml::Reader::from_str(body);
    let mut depth = 0_usize;
    let mut inside_message = false;
    let mut message = None;
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) => {
                depth += 1;
                inside_message = start.name().as_ref() == b"Message";
                if inside_message {
                    message = Some(String::new());
                }
            }
            Event::End(_) => {
                depth = depth.checked_sub(1)?;
                inside_message = false;
            }
            Event::Text(text) if inside_message => {
                let unescaped = text.unescape().ok()?;
                message.get_or_insert_with(String::new).push_str(&unescaped);
            }
            Event::Eof => return (depth == 0).then_some(message).flatten(),
            Event::Decl(_) | Event::Text(_) => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ens_protocol::ErrorCode;

    #[test]
    fn any_message_renders_in_both_formats() {
        let error = ApiError::with_message(ErrorCode::InvalidParameter, "a<b & \"c\"\u{1}\u{fffe}\n]]>");
        assert_error_renders(&error, Format::Json);
        assert_error_renders(&error, Format::Xml);
    }

    #[test]
    fn a_broken_body_is_noticed() {
        assert_eq!(
            xml_message("<Error><Message>x</Message></Error>").as_deref(),
            Some("x")
        );
        assert_eq!(xml_message("<Error><Message>x</Error>"), None);
        assert_eq!(xml_message("<Error><Message>\u{1}</Message></Error>"), None);
    }
}
