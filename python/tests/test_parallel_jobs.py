"""Several CI jobs run one application's test suite at once against one server, each through
an account of its own (the plugin's shared mode), and none sees another's effects."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from ens_images_testing import EnsImagesServer

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "test_example.py")

# A second test file for each job: it makes an image, shares nothing, and checks that only
# its own image and the public catalog are visible, whatever the other jobs are doing.
OWN_IMAGES_TEST = textwrap.dedent('''
    from alibabacloud_ens20171110 import models
    from alibabacloud_ens20171110.client import Client


    def test_a_job_sees_only_its_own_images(ens_images):
        for round in range(5):
            made = ens_images.control.add_image(ens_images.account_id, f"job-image-{round}",
                                                ["cn-dalian-unicom"])
            client = Client(ens_images.config())
            own = client.describe_self_images(models.DescribeSelfImagesRequest(page_size="50")).body
            assert [image.image_id for image in own.images.image] == [made["ImageId"]]
            ens_images.control.reset()
            assert ens_images.control.journal(action="DescribeSelfImages") == []
''')


def test_parallel_jobs_share_one_server_without_seeing_each_other(tmp_path):
    jobs = 4
    (tmp_path / "test_own_images.py").write_text(OWN_IMAGES_TEST)
    with EnsImagesServer() as server:
        env = dict(os.environ,
                   ENS_IMAGES_SHARED_ENDPOINT=server.endpoint,
                   ENS_IMAGES_SHARED_CONTROL_URL=server.control.url,
                   ENS_IMAGES_SHARED_CONTROL_TOKEN=server.control._token)
        runs = [subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                  str(tmp_path / "test_own_images.py"), EXAMPLE],
                                 env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
                for _ in range(jobs)]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        for run, output in zip(runs, outputs):
            assert run.returncode == 0, output
            assert "2 passed" in output, output
        # Each job made its own account; the owner's account saw none of their calls.
        accounts = [a["AccountId"] for a in server.control.accounts()]
        assert len(accounts) == 1 + jobs
        assert server.control.journal(account_id=server.account_id) == []
        # The README example ran last in each job: every job's DescribeImages calls, and only
        # its own, are in its account's journal, one failed by its own fault.
        for account in accounts[1:]:
            outcomes = [call["Outcome"] for call in
                        server.control.journal(action="DescribeImages", account_id=account)]
            assert outcomes == ["Success", "ServiceUnavailable"], (account, outcomes)
