//! Code that lists ENS images, tested against a local stand-in of the cloud: the signed
//! `ens-client`, an in-process `EnsTestServer`, a fault, and a journal assertion.

use std::collections::BTreeMap;

use ens_client::{Client, ClientError};
use ens_testing::{EnsTestServer, Fault, JournalFilter};

/// The code under test: the IDs of the images on an ENS node, none while ENS is down.
async fn list_image_ids(client: &Client, node: &str) -> Result<Vec<String>, ClientError> {
    let params = vec![
        ("EnsRegionId".to_owned(), node.to_owned()),
        ("PageSize".to_owned(), "50".to_owned()),
    ];
    let page = match client.call("DescribeImages", &params).await {
        Ok(page) => page,
        Err(ClientError::Api(_)) => return Ok(Vec::new()),
        Err(other) => return Err(other),
    };
    let images = page["Images"]["Image"].as_array().into_iter().flatten();
    let ids = images.filter_map(|image| image["ImageId"].as_str());
    Ok(ids.map(str::to_owned).collect())
}

#[tokio::test]
async fn lists_images_and_survives_an_outage() -> Result<(), Box<dyn std::error::Error>> {
    let ens = EnsTestServer::start().await?;
    let (client, control) = (ens.client()?, ens.control());
    let ids = list_image_ids(&client, "cn-dalian-unicom").await?;
    assert!(ids.iter().any(|id| id == "centos_7_9_x64_20G_alibase_20230815"));

    // The next DescribeImages fails as the cloud would, with 503 ServiceUnavailable.
    let fault = Fault::error("DescribeImages", "ServiceUnavailable", 503).count(1);
    let rule = control.add_fault(fault).await?;
    assert!(list_image_ids(&client, "cn-dalian-unicom").await?.is_empty());

    let describes = JournalFilter::new().action("DescribeImages");
    let calls = control.journal(describes).await?;
    let outcomes: Vec<&str> = calls.iter().map(|call| call.outcome.as_str()).collect();
    assert_eq!(outcomes, ["Success", "ServiceUnavailable"]);
    assert_eq!(calls[1].fault_id, Some(rule.fault_id));
    let expected = BTreeMap::from([
        ("EnsRegionId".to_owned(), "cn-dalian-unicom".to_owned()),
        ("PageSize".to_owned(), "50".to_owned()),
    ]);
    assert_eq!(calls[1].parameters, expected);
    ens.shutdown().await?;
    Ok(())
}
