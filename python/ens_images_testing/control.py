"""A client of the ens-images control API (JSON over HTTP, bearer token); standard library only."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Union


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

    # Scenes, state and snapshots -----------------------------------------------------------

    def add_image(self, account_id: str, image_name: str, ens_region_ids: List[str],
                  **fields: Any) -> Dict[str, Any]:
        """Puts a custom image straight into the store, in any `Status` (`Creating`,
        `Pack_failed`, ...); `fields` as the README lists them (`ImageId`, `SharedWith`, ...)."""
        return self.request("POST", f"/accounts/{account_id}/images",
                            {"ImageName": image_name, "EnsRegionIds": ens_region_ids, **fields})

    def export_state(self, account_id: Optional[str] = None) -> Dict[str, Any]:
        """The state document of everything (or of one account): the `--seed` format.
        It holds AccessKey secrets in clear."""
        return self.request("GET", "/state", query={"AccountId": account_id})

    def import_state(self, document: Dict[str, Any], account_id: Optional[str] = None) -> Dict[str, Any]:
        """Replaces everything (or one account) with `document`; all or nothing."""
        return self.request("PUT", "/state", document, query={"AccountId": account_id})

    def take_snapshot(self, name: str, account_id: Optional[str] = None) -> Dict[str, Any]:
        """Keeps the state of everything (or of one account) in the server's memory as `name`."""
        return self.request("POST", "/snapshots", _drop_none({"Name": name, "AccountId": account_id}))

    def restore_snapshot(self, name: str) -> Dict[str, Any]:
        """Puts the store (or the snapshot's account) back as it was when `name` was taken."""
        return self.request("POST", f"/snapshots/{urllib.parse.quote(name, safe='')}/restore")

    def snapshots(self) -> List[Dict[str, Any]]:
        """The snapshots kept, by name."""
        return self.request("GET", "/snapshots")["Snapshots"]

    def delete_snapshot(self, name: str) -> None:
        """Forgets one snapshot."""
        self.request("DELETE", f"/snapshots/{urllib.parse.quote(name, safe='')}")

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

    # Policies ----------------------------------------------------------------------------

    @staticmethod
    def _segment(text: str) -> str:
        """`text` as one path segment (RAM user names may hold `@` and `.`)."""
        return urllib.parse.quote(text, safe="")

    def policies(self, account_id: str) -> List[Dict[str, Any]]:
        """The account's RAM policies, each with its `PolicyDocument` and `AttachedTo` users."""
        return self.request("GET", f"/accounts/{account_id}/policies")["Policies"]

    def create_policy(self, account_id: str, policy_name: str,
                      document: Union[Dict[str, Any], str]) -> Dict[str, Any]:
        """Stores a RAM policy document (a dict, or its JSON text), validated as
        `ens-images admin policy create` validates it."""
        return self.request("POST", f"/accounts/{account_id}/policies",
                            {"PolicyName": policy_name, "PolicyDocument": document})

    def delete_policy(self, account_id: str, policy_name: str) -> None:
        """Deletes a policy; refused (409 Conflict) while it is attached to a user."""
        self.request("DELETE", f"/accounts/{account_id}/policies/{self._segment(policy_name)}")

    def attach_policy(self, account_id: str, user_name: str, policy_name: str) -> Dict[str, Any]:
        """Attaches a policy to a RAM user; it applies from the user's next call."""
        return self.request("POST", f"/accounts/{account_id}/users/{self._segment(user_name)}/policies",
                            {"PolicyName": policy_name})

    def detach_policy(self, account_id: str, user_name: str, policy_name: str) -> Dict[str, Any]:
        """Detaches a policy from a RAM user; it stops applying from the user's next call."""
        return self.request(
            "DELETE",
            f"/accounts/{account_id}/users/{self._segment(user_name)}/policies/{self._segment(policy_name)}")

    # Lifecycle clock ---------------------------------------------------------------------

    def clock(self) -> Dict[str, Any]:
        """The build clock: `{"Frozen": bool, "BuildStepMs": n}`."""
        return self.request("GET", "/clock")

    def freeze_builds(self) -> Dict[str, Any]:
        """Stops builds from moving by themselves: new images stay `Creating` until stepped."""
        return self.request("PUT", "/clock", {"Frozen": True})

    def unfreeze_builds(self) -> Dict[str, Any]:
        """Lets builds move by themselves again, each from a fresh step."""
        return self.request("PUT", "/clock", {"Frozen": False})

    def step_builds(self, steps: int = 1, account_id: Optional[str] = None,
                    image_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """Moves every build in scope (one account's, one image, or all) `steps` steps now;
        returns the images that moved, each `{"ImageId", "Status"}`, oldest first."""
        return self.request("POST", "/clock/steps", _drop_none({
            "Steps": steps, "AccountId": account_id, "ImageId": image_id}))["Images"]

    def set_build_outcome(self, image_id: str, fail_at: Optional[str]) -> Dict[str, Any]:
        """Makes the build of one image fail at `"pack"` or `"upload"`, or succeed (`None`),
        whatever its source says."""
        return self.request("PUT", f"/images/{urllib.parse.quote(image_id, safe='')}/build",
                            {"FailAt": fail_at})
