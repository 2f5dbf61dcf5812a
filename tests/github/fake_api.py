"""A fake GitHub REST API on 127.0.0.1: issues, pull requests' comments and labels, in memory.

Only the endpoints the workflows' github-script steps call, with GitHub's paths, methods, status
codes and the fields the scripts read; enough for the scripts to run unmodified.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

BOT = {"login": "github-actions[bot]", "type": "Bot"}


@dataclass
class State:
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    next_id: int = 100

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def add_issue(self, *, title: str, body: str = "", labels: tuple[str, ...] = (),
                  pull_request: bool = False, number: int | None = None,
                  user: dict[str, str] = BOT) -> dict[str, Any]:
        number = number or max(self.issues, default=0) + 1
        issue = {"number": number, "title": title, "body": body, "state": "open", "state_reason": None,
                 "labels": [{"name": n} for n in labels], "user": dict(user)}
        if pull_request:
            issue["pull_request"] = {"url": f"/pulls/{number}"}
        self.issues[number] = issue
        return issue

    def add_comment(self, issue: int, body: str, user: dict[str, str] = BOT) -> dict[str, Any]:
        comment_id = self.new_id()
        comment = {"id": comment_id, "issue": issue, "body": body, "user": dict(user)}
        self.comments[comment_id] = comment
        return comment

    def comments_on(self, issue: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["issue"] == issue]

    def label_names(self, issue: int) -> list[str]:
        return [label["name"] for label in self.issues[issue]["labels"]]


class _Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else {}

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.state.calls.append((method, url.path))
        if parts[:1] != ["repos"] or len(parts) < 4 or parts[3] != "issues":
            return self._send(404, {"message": "Not Found"})
        rest = parts[4:]
        state = self.state
        if method == "GET" and rest == []:
            wanted = set(filter(None, query.get("labels", "").split(",")))
            found = [i for i in state.issues.values()
                     if query.get("state", "open") in ("all", i["state"])
                     and wanted <= {label["name"] for label in i["labels"]}]
            return self._send(200, _page(found, query))
        if method == "POST" and rest == []:
            body = self._body()
            issue = state.add_issue(title=body["title"], body=body.get("body", ""),
                                    labels=tuple(body.get("labels", ())))
            return self._send(201, issue)
        if rest[:1] == ["comments"] and len(rest) == 2 and method == "PATCH":
            comment = state.comments.get(int(rest[1]))
            if comment is None:
                return self._send(404, {"message": "Not Found"})
            comment["body"] = self._body()["body"]
            return self._send(200, comment)
        number = int(rest[0])
        if number not in state.issues:
            return self._send(404, {"message": "Not Found"})
        issue = state.issues[number]
        if method == "PATCH" and len(rest) == 1:
            issue.update(self._body())
            return self._send(200, issue)
        if rest[1:] == ["comments"] and method == "GET":
            return self._send(200, _page(state.comments_on(number), query))
        if rest[1:] == ["comments"] and method == "POST":
            return self._send(201, state.add_comment(number, self._body()["body"]))
        if rest[1:] == ["labels"] and method == "POST":
            for name in self._body()["labels"]:
                if name not in state.label_names(number):
                    issue["labels"].append({"name": name})
            return self._send(200, issue["labels"])
        if rest[1:2] == ["labels"] and len(rest) == 3 and method == "DELETE":
            if rest[2] not in state.label_names(number):
                return self._send(404, {"message": "Label does not exist"})
            issue["labels"] = [label for label in issue["labels"] if label["name"] != rest[2]]
            return self._send(200, issue["labels"])
        return self._send(404, {"message": "Not Found"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    per_page = int(query.get("per_page", 30))
    page = int(query.get("page", 1))
    return items[(page - 1) * per_page: page * per_page]


class FakeGitHub:
    def __init__(self) -> None:
        self.state = State()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGitHub:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

