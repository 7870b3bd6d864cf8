"""A client of the ens-images control API (JSON over HTTP, bearer token); standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional


class ControlError(Exception):
    """A refused control call: the HTTP status and the API's `Code` and `Message`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _drop_none(fields: Dict[str, Any]) -> Dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


class ControlClient:
    """Calls the control API at `url` (e.g. `http://127.0.0.1:4567`) with `token`."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self._token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
                query: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """One call; returns the JSON answer or raises `ControlError`."""
        url = self.url + path
        query = _drop_none(query or {})
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, method=method, data=data, headers={
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
        })
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            try:
                answer = json.loads(error.read())
            except ValueError:
                answer = {}
            raise ControlError(error.code, answer.get("Code", "?"), answer.get("Message", "")) from None

    # Accounts and keys -----------------------------------------------------------------

    def accounts(self) -> List[Dict[str, Any]]:
        """Every account with its owner AccessKey IDs."""
        return self.request("GET", "/accounts")["Accounts"]

    def create_account(self, account_id: Optional[str] = None, access_key_id: Optional[str] = None,
                       access_key_secret: Optional[str] = None) -> Dict[str, Any]:
        """A new account with one owner AccessKey; unset IDs and the secret are generated."""
        return self.request("POST", "/accounts", _drop_none({
            "AccountId": account_id, "AccessKeyId": access_key_id,
            "AccessKeySecret": access_key_secret}))

    def create_access_key(self, account_id: str, user_name: Optional[str] = None,
                          access_key_id: Optional[str] = None,
                          access_key_secret: Optional[str] = None) -> Dict[str, Any]:
        """A new AccessKey for the account's owner, or for one of its RAM users."""
        return self.request("POST", f"/accounts/{account_id}/access-keys", _drop_none({
            "UserName": user_name, "AccessKeyId": access_key_id,
            "AccessKeySecret": access_key_secret}))

    def create_user(self, account_id: str, user_name: str) -> Dict[str, Any]:
        """A RAM user (with no rights until a policy is attached)."""
        return self.request("POST", f"/accounts/{account_id}/users", {"UserName": user_name})

    def add_instance(self, account_id: str, ens_region_id: str, **fields: Any) -> Dict[str, Any]:
        """Registers an instance CreateImage can capture; `fields` as the README lists them
        (`InstanceId`, `ImageId`, `Platform`, `OSType`, `SystemDiskSize`, ...)."""
        return self.request("POST", f"/accounts/{account_id}/instances",
                            {"EnsRegionId": ens_region_id, **fields})

    def add_snapshot(self, account_id: str, ens_region_id: str, **fields: Any) -> Dict[str, Any]:
        """Registers a snapshot CreateImage can turn into an image."""
        return self.request("POST", f"/accounts/{account_id}/snapshots",
                            {"EnsRegionId": ens_region_id, **fields})

    # Resets ------------------------------------------------------------------------------

    def reset(self, account_id: Optional[str] = None) -> Dict[str, Any]:
        """Everything back to a first start (journal and faults cleared too), or one account
        emptied (its images, shares, instances, snapshots, users, policies; its journal
        entries and faults)."""
        if account_id is None:
            return self.request("POST", "/reset")
        return self.request("POST", f"/accounts/{account_id}/reset")

    # Journal -----------------------------------------------------------------------------

    def journal(self, action: Optional[str] = None, account_id: Optional[str] = None,
                outcome: Optional[str] = None, request_id: Optional[str] = None,
                since: Optional[str] = None, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """The answered API calls that match, oldest first (the latest `limit`, 100 by default)."""
        return self.request("GET", "/journal", query={
            "Action": action, "AccountId": account_id, "Outcome": outcome,
            "RequestId": request_id, "Since": since, "Limit": limit})["Entries"]

    def clear_journal(self, account_id: Optional[str] = None) -> int:
        """Forgets the journal (of one account); returns how many entries went."""
        return self.request("DELETE", "/journal", query={"AccountId": account_id})["Removed"]

    # Faults ------------------------------------------------------------------------------

    def add_fault(self, action: str = "*", *, error_code: Optional[str] = None,
                  http_status: int = 400, message: Optional[str] = None,
                  throttle_ms: Optional[int] = None, latency_ms: Optional[int] = None,
                  count: Optional[int] = None, probability: Optional[float] = None,
                  account_id: Optional[str] = None, access_key_id: Optional[str] = None,
                  image_id: Optional[str] = None) -> Dict[str, Any]:
        """A fault rule: answer `error_code` (with `http_status`), or `Throttling.User` asking
        to retry after `throttle_ms`, and/or wait `latency_ms` first; on the next `count`
        matching calls, with `probability`, or always. Returns the rule with its `FaultId`."""
        rule: Dict[str, Any] = _drop_none({
            "Action": action, "AccountId": account_id, "AccessKeyId": access_key_id,
            "ImageId": image_id, "LatencyMs": latency_ms, "Count": count,
            "Probability": probability})
        if error_code is not None:
            rule["Error"] = _drop_none({"Code": error_code, "HttpStatus": http_status,
                                        "Message": message})
        if throttle_ms is not None:
            rule["Throttle"] = {"RetryAfterMs": throttle_ms}
        return self.request("POST", "/faults", rule)

    def faults(self) -> List[Dict[str, Any]]:
        """The rules set, in the order they are checked."""
        return self.request("GET", "/faults")["Faults"]

    def clear_faults(self, account_id: Optional[str] = None) -> int:
        """Removes every rule (or those scoped to one account); returns how many."""
        return self.request("DELETE", "/faults", query={"AccountId": account_id})["Removed"]

    def remove_fault(self, fault_id: int) -> None:
        """Removes one rule."""
        self.request("DELETE", f"/faults/{fault_id}")
