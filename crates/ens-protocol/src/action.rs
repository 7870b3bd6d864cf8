//! The operations this service answers, by their wire names.

/// An ENS API operation. Names are case-sensitive on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Lists the images a caller may use.
    DescribeImages,
}

impl Action {
    /// Every action, for dispatch tables and documentation.
    pub const ALL: [Self; 1] = [Self::DescribeImages];

    /// Looks up a wire name exactly (the cloud is case-sensitive).
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|action| action.as_str() == name)
    }

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DescribeImages => "DescribeImages",
        }
    }

    /// The RAM action a policy names to allow or deny this operation.
    #[must_use]
    pub fn ram_action(self) -> &'static str {
        match self {
            Self::DescribeImages => "ens:DescribeImages",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_case_sensitive() {
        assert_eq!(Action::parse("DescribeImages"), Some(Action::DescribeImages));
        assert_eq!(Action::parse("describeimages"), None);
        assert_eq!(Action::DescribeImages.ram_action(), "ens:DescribeImages");
    }
}
