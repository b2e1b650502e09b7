"""The README's receiver-side verification snippet, run as written against what the sidecar
signs."""

from __future__ import annotations

import re
import time
from typing import Any

from sidecar.management.alerts.signing import new_secret, signed_headers, signing_key
from tests.support import ROOT


def snippet() -> dict[str, Any]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Alerts and webhooks"):]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the documented code, as written
    return namespace


def test_the_readme_snippet_verifies_the_sidecars_signatures() -> None:
    verify_webhook = snippet()["verify_webhook"]
    secret, body = new_secret(), b'{"type":"key.revoked","timestamp":"x","data":{}}'
    now = int(time.time())
    headers = signed_headers(signing_key(secret), "msg_1", now, body)
    assert verify_webhook(secret, headers, body) is True
    assert verify_webhook(secret, headers, body + b" ") is False
    assert verify_webhook(new_secret(), headers, body) is False
    old = signed_headers(signing_key(secret), "msg_1", now - 3600, body)
    assert verify_webhook(secret, old, body) is False  # a replay
    rotated = {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}
    assert verify_webhook(secret, rotated, body) is True  # one of several signatures
