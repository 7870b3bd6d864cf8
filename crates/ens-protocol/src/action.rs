//! The operations this service answers, by their wire names.

/// An ENS API operation. Names are case-sensitive on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Lists the images a caller may use.
    DescribeImages,
    /// Makes a custom image from an instance or a snapshot.
    CreateImage,
    /// Deletes a custom image.
    DeleteImage,
    /// Renames a custom image.
    ModifyImageAttribute,
    /// Lists the public image catalogue.
    DescribeImageInfos,
    /// Lists the caller's own and shared-in custom images, with their status.
    DescribeSelfImages,
    /// Lists the accounts an image is shared with.
    DescribeImageSharePermission,
    /// Shares an image with accounts or revokes shares.
    ModifyImageSharePermission,
}

impl Action {
    /// Every action, for dispatch tables and documentation.
    pub const ALL: [Self; 8] = [
        Self::DescribeImages,
        Self::CreateImage,
        Self::DeleteImage,
        Self::ModifyImageAttribute,
        Self::DescribeImageInfos,
        Self::DescribeSelfImages,
        Self::DescribeImageSharePermission,
        Self::ModifyImageSharePermission,
    ];

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
            Self::CreateImage => "CreateImage",
            Self::DeleteImage => "DeleteImage",
            Self::ModifyImageAttribute => "ModifyImageAttribute",
            Self::DescribeImageInfos => "DescribeImageInfos",
            Self::DescribeSelfImages => "DescribeSelfImages",
            Self::DescribeImageSharePermission => "DescribeImageSharePermission",
            Self::ModifyImageSharePermission => "ModifyImageSharePermission",
        }
    }

    /// The RAM action a policy names to allow or deny this operation.
    #[must_use]
    pub fn ram_action(self) -> &'static str {
        match self {
            Self::DescribeImages => "ens:DescribeImages",
            Self::CreateImage => "ens:CreateImage",
            Self::DeleteImage => "ens:DeleteImage",
            Self::ModifyImageAttribute => "ens:ModifyImageAttribute",
            Self::DescribeImageInfos => "ens:DescribeImageInfos",
            Self::DescribeSelfImages => "ens:DescribeSelfImages",
            Self::DescribeImageSharePermission => "ens:DescribeImageSharePermission",
            Self::ModifyImageSharePermission => "ens:ModifyImageSharePermission",
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
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(action.ram_action(), format!("ens:{}", action.as_str()));
        }
    }
}
