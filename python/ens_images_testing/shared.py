"""One CI job's share of a server that several jobs use at once.

A job gets an account of its own (a namespace: its images, keys, shares, journal entries,
faults and snapshots), made through the control API when the job starts, and a control
client that scopes every call to that account by default, so the same tests run against a
private server or a shared one unchanged.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from .control import ControlClient
from .server import tea_config

#: The variables that point a test session at a shared server instead of starting one.
SHARED_ENDPOINT = "ENS_IMAGES_SHARED_ENDPOINT"
SHARED_CONTROL_URL = "ENS_IMAGES_SHARED_CONTROL_URL"
SHARED_CONTROL_TOKEN = "ENS_IMAGES_SHARED_CONTROL_TOKEN"


class AccountControl(ControlClient):
    """A control client whose resets, faults, journal queries and snapshots default to one
    account: what one job may do on a server other jobs use too."""

    def __init__(self, url: str, token: str, account_id: str, timeout: float = 30.0):
        super().__init__(url, token, timeout)
        self.account_id = account_id

    def reset(self, account_id: Optional[str] = None) -> Dict[str, Any]:
        """Empties this job's account (never the whole server)."""
        return super().reset(account_id or self.account_id)

    def journal(self, action: Optional[str] = None, account_id: Optional[str] = None,
                outcome: Optional[str] = None, request_id: Optional[str] = None,
                since: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """This job's calls that match (another account's when asked)."""
        return super().journal(action, account_id or self.account_id, outcome, request_id, since, limit)

    def clear_journal(self, account_id: Optional[str] = None) -> int:
        return super().clear_journal(account_id or self.account_id)

    def add_fault(self, action: str = "*", **rule: Any) -> Dict[str, Any]:
        """A fault rule that acts on this job's calls only (unless `account_id` says another)."""
        rule["account_id"] = rule.get("account_id") or self.account_id
        return super().add_fault(action, **rule)

    def clear_faults(self, account_id: Optional[str] = None) -> int:
        return super().clear_faults(account_id or self.account_id)

    def take_snapshot(self, name: str, account_id: Optional[str] = None) -> Dict[str, Any]:
        """Keeps this job's account (snapshot names are shared: prefix them with the job)."""
        return super().take_snapshot(name, account_id or self.account_id)


class SharedServer:
    """A server another process runs, seen through an account made for this job; the same
    attributes as `EnsImagesServer` (`endpoint`, `account_id`, the key, `config()`,
    `control`)."""

    def __init__(self, endpoint: str, control_url: str, token: str):
        self.endpoint = endpoint
        self.url = f"http://{endpoint}"
        admin = ControlClient(control_url, token)
        job = admin.create_account()
        self.account_id = job["AccountId"]
        self.access_key_id = job["AccessKeyId"]
        self.access_key_secret = job["AccessKeySecret"]
        self.control = AccountControl(control_url, token, self.account_id)

    @classmethod
    def from_environment(cls) -> Optional["SharedServer"]:
        """The shared server the environment names, or None when it names none."""
        url = os.environ.get(SHARED_CONTROL_URL)
        if not url:
            return None
        return cls(os.environ[SHARED_ENDPOINT], url, os.environ[SHARED_CONTROL_TOKEN])

    def config(self, access_key_id: Optional[str] = None, access_key_secret: Optional[str] = None,
               **fields: Any):
        """A Tea SDK `Config` signed with this job's key unless another is given."""
        return tea_config(self.endpoint, access_key_id or self.access_key_id,
                          access_key_secret or self.access_key_secret, **fields)
