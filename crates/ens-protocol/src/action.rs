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
    /// Registers a custom image from image files in object storage.
    ImportImage,
    /// Copies a custom image to a bucket of object storage.
    ExportImage,
    /// Reports where one image's export stands.
    DescribeExportImageStatus,
    /// Lists the caller's custom images with their export state and URL.
    DescribeExportImageInfo,
}

impl Action {
    /// Every action, for dispatch tables and documentation.
    pub const ALL: [Self; 12] = [
        Self::DescribeImages,
        Self::CreateImage,
        Self::DeleteImage,
        Self::ModifyImageAttribute,
        Self::DescribeImageInfos,
        Self::DescribeSelfImages,
        Self::DescribeImageSharePermission,
        Self::ModifyImageSharePermission,
        Self::ImportImage,
        Self::ExportImage,
        Self::DescribeExportImageStatus,
        Self::DescribeExportImageInfo,
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
            Self::ImportImage => "ImportImage",
            Self::ExportImage => "ExportImage",
            Self::DescribeExportImageStatus => "DescribeExportImageStatus",
            Self::DescribeExportImageInfo => "DescribeExportImageInfo",
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
            Self::ImportImage => "ens:ImportImage",
            Self::ExportImage => "ens:ExportImage",
            Self::DescribeExportImageStatus => "ens:DescribeExportImageStatus",
            Self::DescribeExportImageInfo => "ens:DescribeExportImageInfo",
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
        assert_eq!(Action::parse("ImportImage"), Some(Action::ImportImage));
        assert_eq!(Action::parse("exportimage"), None);
        assert_eq!(
            Action::DescribeExportImageInfo.ram_action(),
            "ens:DescribeExportImageInfo"
        );
        let mut names: Vec<&str> = Action::ALL.iter().map(|action| action.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len(), "every action is listed once");
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert_eq!(action.ram_action(), format!("ens:{}", action.as_str()));
        }
    }
}
