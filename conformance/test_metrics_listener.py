"""`--metrics-listen`: Prometheus scrapes a listener of its own, and the API's listener no
longer answers `/metrics`."""
from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request

from ens_support import ServerProcess, _server_env, make_flavor, new_access_key, require_binary

METRICS_RE = re.compile(r"ens-images metrics on (http://[0-9.:]+/metrics)")


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def test_metrics_are_served_on_their_own_listener_only(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    ak, secret = new_access_key()
    stderr_path = tmp_path / "server.stderr.log"
    cmd = [str(require_binary()), "serve", "--listen", "127.0.0.1:0",
           "--metrics-listen", "127.0.0.1:0", "--data-dir", str(data_dir)]
    with open(stderr_path, "wb") as stderr_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=stderr_file, env=_server_env(ak, secret, data_dir))
    server = ServerProcess(proc, data_dir, stderr_path, ak, secret)
    try:
        host = server.wait_listening()
        found = METRICS_RE.search(server.stdout_text())
        assert found, f"no metrics address printed before 'listening on':\n{server.stdout_text()}"
        metrics_url = found.group(1)
        assert not metrics_url.endswith(f"//{host}/metrics"), "metrics share the API's port"

        body = make_flavor("tea_v3", host, ak, secret).describe()
        assert body["TotalCount"] > 0, body

        status, text = get(metrics_url)
        assert status == 200, (status, text)
        assert re.search(r'ens_images_requests_total\{action="DescribeImages",code="Success"\} 1\b', text), text
        probe_status, _ = get(metrics_url.replace("/metrics", "/healthz"))
        assert probe_status == 200

        # The API's port no longer serves them: the path is answered as an API call would be.
        api_status, api_text = get(f"http://{host}/metrics")
        assert "ens_images_requests_total" not in api_text, api_text
        assert api_status >= 400, (api_status, api_text)
        # And the metrics listener is no API endpoint.
        other_status, _ = get(metrics_url.replace("/metrics", "/?Action=DescribeImages"))
        assert other_status == 404
    finally:
        server.stop()
