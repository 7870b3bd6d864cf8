//! `ens-testing` against the real service it starts in-process: signed calls through
//! `ens-client`, and every typed control call, each checked by what the API then answers.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "the helpers below are test code: a test fails by panicking"
)]

use std::time::{Duration, Instant};

use ens_client::{Client, ClientError};
use ens_testing::{
    ControlClient, ControlError, EnsTestServer, Fault, JournalFilter, NewAccessKey, NewAccount,
};

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// The IDs on one DescribeImages page of `node` (50 a page), and the TotalCount.
async fn describe(client: &Client, node: &str) -> Result<(Vec<String>, u64), ClientError> {
    let page = client
        .call(
            "DescribeImages",
            &params(&[("EnsRegionId", node), ("PageSize", "50")]),
        )
        .await?;
    let ids = page["Images"]["Image"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|image| image["ImageId"].as_str().unwrap_or("?").to_owned())
        .collect();
    Ok((ids, page["TotalCount"].as_u64().unwrap_or(u64::MAX)))
}

/// The built-in catalog's public images on `node`, in catalog order: what DescribeImages
/// must list there.
fn catalog_images_on(node: &str) -> Vec<String> {
    let catalog = ens_server::catalog::parse(ens_server::catalog::BUILT_IN).unwrap();
    catalog
        .images
        .iter()
        .filter(|image| image.nodes.is_empty() || image.nodes.iter().any(|n| n.as_str() == node))
        .map(|image| image.id.as_str().to_owned())
        .collect()
}

#[tokio::test]
async fn signed_describe_images_returns_the_built_in_catalog() {
    let started = Instant::now();
    let server = EnsTestServer::start().await.unwrap();
    let ready = started.elapsed();
    assert!(ready < Duration::from_secs(5), "start took {ready:?}");
    assert!(server.endpoint().starts_with("127.0.0.1:"));
    assert_ne!(server.address().port(), 0);
    assert_eq!(server.account_id().len(), 16);
    assert!(server.access_key_id().starts_with("LTAI"));

    for node in ["cn-dalian-unicom", "cn-beijing-cmcc"] {
        let expected = catalog_images_on(node);
        assert!(expected.len() >= 10, "{node}: {expected:?}");
        let (ids, total) = describe(&server.client().unwrap(), node).await.unwrap();
        assert_eq!(ids, expected, "{node}");
        assert_eq!(total, expected.len() as u64, "{node}");
    }
    // The V1 signature (the core SDK's) works too.
    let v1 = server
        .client_with(server.owner(), ens_client::SignatureVersion::V1)
        .unwrap();
    assert_eq!(
        describe(&v1, "cn-dalian-unicom").await.unwrap().0,
        catalog_images_on("cn-dalian-unicom")
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_fault_fails_the_next_call_and_the_journal_shows_it() {
    let server = EnsTestServer::start().await.unwrap();
    let client = server.client().unwrap();
    let control = server.control();
    describe(&client, "cn-dalian-unicom").await.unwrap();

    let rule = control
        .add_fault(Fault::error("DescribeImages", "ServiceUnavailable", 503).count(1))
        .await
        .unwrap();
    assert_eq!(control.faults().await.unwrap()[0].fault_id, rule.fault_id);
    let error = describe(&client, "cn-dalian-unicom").await.unwrap_err();
    assert_eq!(error.status(), Some(503), "{error}");
    assert_eq!(error.code(), Some("ServiceUnavailable"), "{error}");
    // Count 1: the rule is spent and gone, so the call after succeeds.
    assert!(control.faults().await.unwrap().is_empty());
    describe(&client, "cn-dalian-unicom").await.unwrap();

    let calls = control
        .journal(JournalFilter::new().action("DescribeImages"))
        .await
        .unwrap();
    let seen: Vec<(&str, u16, Option<u64>)> = calls
        .iter()
        .map(|call| (call.outcome.as_str(), call.http_status, call.fault_id))
        .collect();
    assert_eq!(
        seen,
        [
            ("Success", 200, None),
            ("ServiceUnavailable", 503, Some(rule.fault_id)),
            ("Success", 200, None),
        ]
    );
    assert!(calls.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert_eq!(calls[1].account_id.as_deref(), Some(server.account_id()));
    assert_eq!(calls[1].access_key_id, server.access_key_id());
    assert!(!calls[1].parameters.contains_key("Signature"));
    let failed = control
        .journal(JournalFilter::new().outcome("ServiceUnavailable"))
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].request_id, calls[1].request_id);

    assert_eq!(control.clear_journal(None).await.unwrap(), 3);
    assert!(control.journal(JournalFilter::new()).await.unwrap().is_empty());
}

#[tokio::test]
async fn throttle_and_scoped_faults_act_only_where_they_are_scoped() {
    let server = EnsTestServer::start().await.unwrap();
    let control = server.control();
    let other = control.create_account(&NewAccount::default()).await.unwrap();
    let rule = control
        .add_fault(Fault::throttle("*", Duration::from_millis(1500)).account_id(&other.account_id))
        .await
        .unwrap();
    let error = describe(&server.client_for(&other).unwrap(), "cn-dalian-unicom")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("Throttling.User"), "{error}");
    // The owner's account is not in the rule's scope.
    describe(&server.client().unwrap(), "cn-dalian-unicom")
        .await
        .unwrap();
    let listed = control.faults().await.unwrap();
    assert_eq!((listed.len(), listed[0].fired), (1, 1));

    assert_eq!(control.clear_faults(Some(server.account_id())).await.unwrap(), 0);
    control.remove_fault(rule.fault_id).await.unwrap();
    let missing = control.remove_fault(rule.fault_id).await.unwrap_err();
    assert_eq!((missing.status(), missing.code()), (Some(404), Some("NotFound")));
    describe(&server.client_for(&other).unwrap(), "cn-dalian-unicom")
        .await
        .unwrap();

    let refused = control
        .add_fault(Fault::error("DescribeImages", "X", 200))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("InvalidInput"), "{refused}");
    assert!(refused.to_string().contains("HttpStatus"), "{refused}");
}

#[tokio::test]
async fn reset_removes_an_account_created_through_control() {
    let server = EnsTestServer::start().await.unwrap();
    let control = server.control();
    let created = control
        .create_account(&NewAccount {
            access_key_id: Some("ci-job-1".into()),
            access_key_secret: Some("s3cret-of-ci-job-1".into()),
            ..NewAccount::default()
        })
        .await
        .unwrap();
    assert_eq!(created.access_key_id, "ci-job-1");
    assert_eq!(created.access_key_secret(), "s3cret-of-ci-job-1");
    let accounts: Vec<String> = control
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .map(|account| account.account_id)
        .collect();
    assert_eq!(accounts, [server.account_id(), created.account_id.as_str()]);
    let job = server.client_for(&created).unwrap();
    describe(&job, "cn-dalian-unicom").await.unwrap();

    let summary = control.reset().await.unwrap();
    assert_eq!(summary.owner_account_id, server.account_id());
    assert_eq!(summary.accounts_removed, 1);
    assert_eq!(summary.journal_entries_removed, 1);
    let accounts = control.accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].account_id, server.account_id());
    assert_eq!(accounts[0].access_key_ids, [server.access_key_id()]);
    let error = describe(&job, "cn-dalian-unicom").await.unwrap_err();
    assert_eq!(error.code(), Some("InvalidAccessKeyId.NotFound"), "{error}");
    describe(&server.client().unwrap(), "cn-dalian-unicom")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_snapshot_and_a_state_document_bring_an_account_back() {
    let server = EnsTestServer::start().await.unwrap();
    let control = server.control();
    let job = control
        .create_account(&NewAccount {
            access_key_id: Some("ci-job-9".into()),
            access_key_secret: Some("s3cret-of-ci-job-9".into()),
            ..NewAccount::default()
        })
        .await
        .unwrap();
    let image = serde_json::json!({"ImageName": "web-base", "EnsRegionIds": ["cn-dalian-unicom"]});
    control.add_image(&job.account_id, &image).await.unwrap();
    let client = server.client_for(&job).unwrap();
    // DescribeSelfImages answers its TotalCount as a string, as the cloud does.
    let own = |page: serde_json::Value| page["Images"]["Image"].as_array().map_or(0, Vec::len);
    let listed = client.call("DescribeSelfImages", &params(&[])).await.unwrap();
    assert_eq!(own(listed), 1);

    let taken = control.take_snapshot("job", Some(&job.account_id)).await.unwrap();
    assert_eq!(taken["Images"], 1);
    let document = control.export_state(Some(&job.account_id)).await.unwrap();
    control.reset_account(&job.account_id).await.unwrap();
    let listed = client.call("DescribeSelfImages", &params(&[])).await.unwrap();
    assert_eq!(own(listed), 0);

    control.restore_snapshot("job").await.unwrap();
    let listed = client.call("DescribeSelfImages", &params(&[])).await.unwrap();
    assert_eq!(own(listed), 1);
    control.reset_account(&job.account_id).await.unwrap();
    let imported = control
        .import_state(&document, Some(&job.account_id))
        .await
        .unwrap();
    assert_eq!(imported["Images"], 1);
    assert_eq!(
        control.export_state(Some(&job.account_id)).await.unwrap(),
        document
    );
    let missing = control
        .restore_snapshot("nothing-by-that-name")
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, ControlError::Refused { status: 404, .. }),
        "{missing:?}"
    );
}

#[tokio::test]
async fn ram_user_keys_and_account_resets() {
    let server = EnsTestServer::start().await.unwrap();
    let control = server.control();
    let account = control.create_account(&NewAccount::default()).await.unwrap();
    let user = control
        .create_user(&account.account_id, "deployer")
        .await
        .unwrap();
    assert_eq!(
        (user.account_id.as_str(), user.user_name.as_str()),
        (account.account_id.as_str(), "deployer")
    );
    let key = control
        .create_access_key(
            &account.account_id,
            &NewAccessKey {
                user_name: Some("deployer".into()),
                ..NewAccessKey::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(key.user_name.as_deref(), Some("deployer"));
    // A RAM user has no rights until a policy is attached.
    let error = describe(&server.client_for(&key).unwrap(), "cn-dalian-unicom")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("NoPermission"), "{error}");
    let entries = control
        .journal(JournalFilter::new().account_id(&account.account_id))
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].user_name.as_deref(), Some("deployer"));
    assert_eq!(Some(entries[0].outcome.as_str()), error.code());

    let second_owner_key = control
        .create_access_key(&account.account_id, &NewAccessKey::default())
        .await
        .unwrap();
    describe(&server.client_for(&second_owner_key).unwrap(), "cn-dalian-unicom")
        .await
        .unwrap();
    let summary = control.reset_account(&account.account_id).await.unwrap();
    assert_eq!(summary.account_id, account.account_id);
    assert_eq!(summary.journal_entries_removed, 2);
    // The account and its owner keys stay; its RAM user (and the user's key) went.
    describe(&server.client_for(&account).unwrap(), "cn-dalian-unicom")
        .await
        .unwrap();
    let gone = describe(&server.client_for(&key).unwrap(), "cn-dalian-unicom")
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some("InvalidAccessKeyId.NotFound"), "{gone}");

    let unknown = control.reset_account("1000000000000001").await.unwrap_err();
    assert_eq!(unknown.status(), Some(404), "{unknown}");
}

#[tokio::test]
async fn two_servers_at_once_are_independent() {
    let (a, b) = tokio::try_join!(EnsTestServer::start(), EnsTestServer::start()).unwrap();
    assert_ne!(a.address(), b.address());
    assert_ne!(a.control_url(), b.control_url());
    assert_ne!(a.account_id(), b.account_id());
    assert_ne!(a.store_dir(), b.store_dir());

    a.control()
        .add_fault(Fault::error("*", "InternalError", 500))
        .await
        .unwrap();
    let created = a.control().create_account(&NewAccount::default()).await.unwrap();
    let error = describe(&a.client().unwrap(), "cn-dalian-unicom")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("InternalError"));
    // B has none of A's fault, account or journal, and does not know A's keys.
    describe(&b.client().unwrap(), "cn-dalian-unicom").await.unwrap();
    assert!(b.control().faults().await.unwrap().is_empty());
    assert_eq!(b.control().accounts().await.unwrap().len(), 1);
    assert_eq!(a.control().accounts().await.unwrap().len(), 2);
    let b_calls = b.control().journal(JournalFilter::new()).await.unwrap();
    assert_eq!(b_calls.len(), 1);
    assert_eq!(b_calls[0].account_id.as_deref(), Some(b.account_id()));
    let a_key_on_b = describe(&b.client_for(&created).unwrap(), "cn-dalian-unicom")
        .await
        .unwrap_err();
    assert_eq!(a_key_on_b.code(), Some("InvalidAccessKeyId.NotFound"));
    // A's control token does not open B's control API.
    let a_token_on_b = ControlClient::new(b.control_url(), a.control_token()).unwrap();
    assert_eq!(a_token_on_b.accounts().await.unwrap_err().status(), Some(401));

    // Stopping A leaves B serving.
    a.shutdown().await.unwrap();
    describe(&b.client().unwrap(), "cn-dalian-unicom").await.unwrap();
}

#[tokio::test]
async fn a_wrong_control_token_is_refused_and_changes_nothing() {
    let server = EnsTestServer::start().await.unwrap();
    for token in ["wrong", "", &format!("{}x", server.control_token())] {
        let intruder = ControlClient::new(server.control_url(), token).unwrap();
        let error = intruder.create_account(&NewAccount::default()).await.unwrap_err();
        assert_eq!(
            (error.status(), error.code()),
            (Some(401), Some("Unauthorized")),
            "{token:?}: {error}"
        );
        let error = intruder.reset().await.unwrap_err();
        assert_eq!(error.status(), Some(401));
    }
    assert_eq!(server.control().accounts().await.unwrap().len(), 1);
    // The right token, given by hand, works.
    let rightful = ControlClient::new(server.control_url(), server.control_token()).unwrap();
    assert_eq!(rightful.accounts().await.unwrap().len(), 1);
    assert!(!format!("{server:?}").contains(server.control_token()));
    assert!(!format!("{server:?}").contains(server.access_key_secret()));
}

#[tokio::test]
async fn shutdown_and_drop_stop_serving_and_remove_the_store() {
    let parent = tempfile::tempdir().unwrap();
    let server = EnsTestServer::builder()
        .store_parent(parent.path())
        .start()
        .await
        .unwrap();
    let directory = server.store_dir().to_owned();
    assert!(directory.starts_with(parent.path()));
    assert!(
        std::fs::read_dir(&directory).unwrap().next().is_some(),
        "the store lives there"
    );
    let address = server.address();
    let control = server.control().clone();
    server.shutdown().await.unwrap();
    assert!(!directory.exists());
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
    assert!(matches!(
        control.accounts().await.unwrap_err(),
        ControlError::Transport(_)
    ));

    let dropped = EnsTestServer::builder()
        .store_parent(parent.path())
        .start()
        .await
        .unwrap();
    let directory = dropped.store_dir().to_owned();
    let client = dropped.client().unwrap();
    drop(dropped);
    assert!(!directory.exists(), "removed at once on drop");
    // The listener stops soon after (its task sees the stop on its next poll).
    let deadline = Instant::now() + Duration::from_secs(5);
    while describe(&client, "cn-dalian-unicom").await.is_ok() {
        assert!(Instant::now() < deadline, "still serving after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn the_builder_serves_a_chosen_catalog_and_build_time() {
    let catalog = r#"{"EnsRegionIds": ["cn-test-1"], "Images": [
        {"ImageId": "img_only_one", "ImageName": "only_one", "Architecture": "x86_64",
         "Platform": "centos", "ImageSize": 20, "CreationTime": "2024-01-01T00:00:00Z"}]}"#;
    let server = EnsTestServer::builder()
        .catalog(catalog)
        .image_build_step(Duration::from_secs(5))
        .start()
        .await
        .unwrap();
    let (ids, total) = describe(&server.client().unwrap(), "cn-test-1").await.unwrap();
    assert_eq!((ids, total), (vec!["img_only_one".to_owned()], 1));
    // The built-in nodes stay known, with none of the built-in images.
    let (ids, _) = describe(&server.client().unwrap(), "cn-dalian-unicom")
        .await
        .unwrap();
    assert_eq!(ids, ["img_only_one"]);

    assert_eq!(new_image_status(&server).await, "Creating");
    server.shutdown().await.unwrap();
    // By default a new image is Available at once.
    let default = EnsTestServer::start().await.unwrap();
    assert_eq!(new_image_status(&default).await, "Available");

    let refused = EnsTestServer::builder().catalog("{}").start().await.unwrap_err();
    assert!(refused.to_string().contains("catalog"), "{refused}");
}

/// Registers an instance in the owner's account, images it, and returns the new image's
/// status right away.
async fn new_image_status(server: &EnsTestServer) -> String {
    let instance = server
        .control()
        .add_instance(
            server.account_id(),
            &serde_json::json!({"EnsRegionId": "cn-dalian-unicom"}),
        )
        .await
        .unwrap();
    let instance_id = instance["InstanceId"].as_str().unwrap();
    let client = server.client().unwrap();
    let created = client
        .call(
            "CreateImage",
            &params(&[("InstanceId", instance_id), ("ImageName", "built_by_test")]),
        )
        .await
        .unwrap();
    let image_id = created["ImageId"].as_str().unwrap();
    let page = client
        .call("DescribeSelfImages", &params(&[("ImageId", image_id)]))
        .await
        .unwrap();
    page["Images"]["Image"][0]["Status"]
        .as_str()
        .unwrap_or_else(|| panic!("no status in {page}"))
        .to_owned()
}

#[tokio::test]
async fn the_readme_shows_the_example_test_verbatim() {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let example = std::fs::read_to_string(format!("{manifest}/tests/readme_example.rs")).unwrap();
    let readme = std::fs::read_to_string(format!("{manifest}/../../README.md")).unwrap();
    assert!(
        readme.contains(&format!("```rust\n{example}```\n")),
        "README.md must show crates/ens-testing/tests/readme_example.rs verbatim in a ```rust block"
    );
}

/// An image imported from a bucket folder of the in-process server and exported to another
/// comes back byte for byte, and a missing object ends the import `Upload_failed` with its
/// reason in the control API.
#[tokio::test]
async fn an_imported_image_exports_byte_for_byte_from_the_default_buckets() {
    let server = EnsTestServer::start().await.unwrap();
    let client = server.client().unwrap();
    let (source, target) = (
        server.buckets_dir().join("images-in"),
        server.buckets_dir().join("exports"),
    );
    std::fs::create_dir_all(&source).unwrap();
    std::fs::create_dir_all(&target).unwrap();
    // An empty qcow2 of 3 GiB: the file is small, its disk is not.
    let image = ens_objects::qcow2::sparse_image(3 << 30).unwrap();
    std::fs::write(source.join("disk.qcow2"), &image).unwrap();

    let import = |object: &'static str| {
        params(&[
            ("ImageName", "in-process"),
            ("Architecture", "x86_64"),
            ("OSType", "linux"),
            ("ImageFormat", "qcow2"),
            ("ComputeType", "ens_vm"),
            ("OSSBucket", "images-in"),
            ("OSSObject", object),
        ])
    };
    let answer = client.call("ImportImage", &import("disk.qcow2")).await.unwrap();
    let id = answer["ImageId"].as_str().unwrap().to_owned();
    let status = |id: String| {
        let client = &client;
        async move {
            let page = client
                .call("DescribeSelfImages", &params(&[("ImageId", id.as_str())]))
                .await
                .unwrap();
            let image = page["Images"]["Image"][0].clone();
            (image["Status"].as_str().unwrap_or("?").to_owned(), image)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let image_now = loop {
        let (now, image) = status(id.clone()).await;
        if now != "Creating" || Instant::now() > deadline {
            break image;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(image_now["Status"], "Available", "{image_now}");
    assert_eq!(image_now["ImageSize"], "3");

    let exported = client
        .call(
            "ExportImage",
            &params(&[
                ("ImageId", id.as_str()),
                ("OSSBucket", "exports"),
                ("OSSRegionId", "cn-beijing"),
                ("OSSPrefix", "out/"),
            ]),
        )
        .await
        .unwrap();
    let written = target.join("out").join(format!("{id}.qcow2"));
    assert!(
        exported["ExportedImageURL"]
            .as_str()
            .unwrap()
            .ends_with(&format!("out/{id}.qcow2")),
        "{exported}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client
            .call("DescribeExportImageStatus", &params(&[("ImageId", id.as_str())]))
            .await
            .unwrap();
        if status["ImageExportStatus"] != "Exporting" || Instant::now() > deadline {
            assert_eq!(status["ImageExportStatus"], "Exported", "{status}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(std::fs::read(&written).unwrap(), image);

    let missing = client
        .call("ImportImage", &import("nothing-here.qcow2"))
        .await
        .unwrap();
    let missing = missing["ImageId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let (now, image) = status(missing.clone()).await;
        if now != "Creating" || Instant::now() > deadline {
            break image;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed["Status"], "Upload_failed", "{failed}");
    let transfers = server.control().image_transfers(&missing).await.unwrap();
    let reason = transfers["Transfers"][0]["Reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains("nothing-here.qcow2") && reason.contains("does not exist"),
        "{transfers}"
    );
    server.shutdown().await.unwrap();
}
