//! Page numbers, page sizes and pages of results, as every Describe* call uses them.

use crate::validation::InvalidField;

/// A 1-based page number. Bounded so that `offset` never overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageNumber(u32);

impl PageNumber {
    /// The first page, the cloud's default.
    pub const FIRST: Self = Self(1);

    /// Parses the decimal text the SDKs send; `None` (absent) means the first page.
    ///
    /// # Errors
    /// `InvalidField("PageNumber")` for text that is not a number from 1 to 2^31-1.
    pub fn parse(value: Option<&str>) -> Result<Self, InvalidField> {
        match value {
            None => Ok(Self::FIRST),
            Some(text) => match parse_positive(text) {
                Some(number) => Ok(Self(number)),
                None => Err(InvalidField::new(
                    "PageNumber",
                    "must be an integer from 1 to 2147483647",
                )),
            },
        }
    }

    /// The number as the response echoes it.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

/// A page size within the limits of one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    /// Parses the decimal text the SDKs send; absent means `default`.
    ///
    /// # Errors
    /// `InvalidField("PageSize")` for text that is not a number from 1 to `max`.
    pub fn parse(value: Option<&str>, default: u32, max: u32) -> Result<Self, InvalidField> {
        match value {
            None => Ok(Self(default)),
            Some(text) => match parse_positive(text) {
                Some(size) if size <= max => Ok(Self(size)),
                _ => Err(InvalidField::new(
                    "PageSize",
                    format!("must be an integer from 1 to {max}"),
                )),
            },
        }
    }

    /// The size as the response echoes it.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Which slice of an ordered result a caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The 1-based page.
    pub number: PageNumber,
    /// Items per page.
    pub size: PageSize,
}

impl PageRequest {
    /// How many items precede the page; cannot overflow (u32 * u32 fits in u64).
    #[must_use]
    pub fn offset(self) -> u64 {
        u64::from(self.number.get() - 1) * u64::from(self.size.get())
    }

    /// How many items the page holds at most.
    #[must_use]
    pub fn limit(self) -> u64 {
        u64::from(self.size.get())
    }
}

/// One page of an ordered result and the size of the whole result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of the requested page, in the documented order.
    pub items: Vec<T>,
    /// How many items match over all pages.
    pub total_count: u64,
    /// The request this page answers, echoed by the response.
    pub request: PageRequest,
}

/// Accepts an optional leading `+`, digits only, value 1..=i32::MAX (the cloud's Integer type).
fn parse_positive(text: &str) -> Option<u32> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    if value == 0 || value > u64::from(i32::MAX.unsigned_abs()) {
        return None;
    }
    u32::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn absent_values_take_the_documented_defaults() {
        assert_eq!(PageNumber::parse(None).unwrap().get(), 1);
        assert_eq!(PageSize::parse(None, 10, 50).unwrap().get(), 10);
    }

    #[test]
    fn page_size_over_the_maximum_is_invalid() {
        assert_eq!(PageSize::parse(Some("50"), 10, 50).unwrap().get(), 50);
        let error = PageSize::parse(Some("51"), 10, 50).unwrap_err();
        assert_eq!(error.field, "PageSize");
    }

    #[test]
    fn zero_negative_and_non_numbers_are_invalid() {
        for bad in [
            "0",
            "-1",
            "abc",
            "",
            " 1",
            "1.5",
            "99999999999",
            "2147483648",
            "0x10",
        ] {
            assert!(PageNumber::parse(Some(bad)).is_err(), "{bad}");
            assert!(PageSize::parse(Some(bad), 10, 50).is_err(), "{bad}");
        }
        assert_eq!(
            PageNumber::parse(Some("2147483647")).unwrap().get(),
            2_147_483_647
        );
    }

    #[test]
    fn offset_of_the_last_page_number_does_not_overflow() {
        let request = PageRequest {
            number: PageNumber::parse(Some("2147483647")).unwrap(),
            size: PageSize::parse(Some("50"), 10, 50).unwrap(),
        };
        assert_eq!(request.offset(), 2_147_483_646 * 50);
    }

    proptest! {
        #[test]
        fn any_in_range_number_round_trips(n in 1u32..=2_147_483_647) {
            prop_assert_eq!(PageNumber::parse(Some(&n.to_string())).unwrap().get(), n);
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".*") {
            let _ = PageNumber::parse(Some(&text));
            let _ = PageSize::parse(Some(&text), 10, 50);
        }
    }
}
