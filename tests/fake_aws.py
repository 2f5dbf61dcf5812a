"""A fake STS/IAM query-protocol endpoint on 127.0.0.1, for the throttling test and bench/verify.py.

It answers GetCallerIdentity, ListAccessKeys and ListAttachedUserPolicies for any access key after a
configurable latency, spending next to no CPU (the figure a benchmark reads is
connsync's own). It does not check signatures: the moto server does that in
the other tests. It can answer ``Throttling`` a given number of times first.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.loopback import serving

DEFAULT_ACCOUNT = "123456789012"
_KEY_RE = re.compile(r"Credential=([A-Z0-9]+)/")

_IDENTITY = """<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult><Arn>arn:aws:iam::{account}:user/platform</Arn><UserId>AIDAEXAMPLE</UserId>
<Account>{account}</Account></GetCallerIdentityResult>
<ResponseMetadata><RequestId>1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"""
_KEYS = """<ListAccessKeysResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
<ListAccessKeysResult><IsTruncated>false</IsTruncated><AccessKeyMetadata><member>
<UserName>platform</UserName><AccessKeyId>{key}</AccessKeyId><Status>Active</Status>
<CreateDate>{created}</CreateDate></member></AccessKeyMetadata></ListAccessKeysResult>
<ResponseMetadata><RequestId>2</RequestId></ResponseMetadata></ListAccessKeysResponse>"""
_POLICIES = """<ListAttachedUserPoliciesResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">
<ListAttachedUserPoliciesResult><IsTruncated>false</IsTruncated><AttachedPolicies>{members}</AttachedPolicies>
</ListAttachedUserPoliciesResult>
<ResponseMetadata><RequestId>4</RequestId></ResponseMetadata></ListAttachedUserPoliciesResponse>"""
_POLICY = ("<member><PolicyName>{name}</PolicyName>"
           "<PolicyArn>arn:aws:iam::aws:policy/{name}</PolicyArn></member>")
_THROTTLED = """<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>
<Message>Rate exceeded</Message></Error><RequestId>3</RequestId></ErrorResponse>"""


@dataclass
class FakeAws:
    """What the endpoint answers, and what it saw."""

    latency: float = 0.0
    accounts: Mapping[str, str] = field(default_factory=dict)  # access key id -> account
    throttle: int = 0  # answer this many requests with a throttling error first
    throttle_code: str = "Throttling"
    attached: tuple[str, ...] = ()  # AWS managed policies attached to every key's user
    url: str = ""
    requests: dict[str, int] = field(default_factory=dict)  # action -> count
    throttled: int = 0
    keys: set[str] = field(default_factory=set)  # access key ids that signed a request
    in_flight: int = 0
    most_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, action: str, key: str) -> tuple[int, str]:
        with self._lock:
            self.requests[action] = self.requests.get(action, 0) + 1
            self.keys.add(key)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            throttled = self.throttled < self.throttle
            self.throttled += throttled
        try:
            if self.latency:
                time.sleep(self.latency)
            if throttled:
                return 400, _THROTTLED.format(code=self.throttle_code)
            if action == "GetCallerIdentity":
                return 200, _IDENTITY.format(account=self.accounts.get(key, DEFAULT_ACCOUNT))
            if action == "ListAccessKeys":
                created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
                return 200, _KEYS.format(key=key, created=created)
            if action == "ListAttachedUserPolicies":
                return 200, _POLICIES.format(members="".join(_POLICY.format(name=n) for n in self.attached))
            return 400, _THROTTLED.format(code="InvalidAction")
        finally:
            with self._lock:
                self.in_flight -= 1


def _handler(fake: FakeAws) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as AWS endpoints do

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            action = urllib.parse.parse_qs(body).get("Action", [""])[0]
            match = _KEY_RE.search(self.headers.get("Authorization") or "")
            status, text = fake.answer(action, match.group(1) if match else "")
            payload = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

    return Handler



@contextmanager
def serve(fake: FakeAws) -> Iterator[FakeAws]:
    """Serve ``fake`` on a free loopback port for the duration of the block."""
    with serving(_handler(fake)) as url:
        fake.url = url
        yield fake
