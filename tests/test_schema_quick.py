"""The quick schema check (jsonschema-rs) against jsonschema, which explains: a document the quick
check calls valid has no jsonschema error, and every finding is jsonschema's, whichever path ran."""

from __future__ import annotations

import copy
import datetime as dt
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connsync.model import NOWHERE, Declaration
from connsync.validate import loader, rules, schema

REPO = Path(__file__).resolve().parent.parent
# Twelve digits that are not [0-9]: fullwidth and Arabic-Indic (\d in both engines, [0-9] in neither).
FULLWIDTH = "".join(chr(0xFF10 + int(d)) for d in "123456789012")
ARABIC_INDIC = "".join(chr(0x660 + int(d)) for d in "123456789012")

settings.register_profile("quick", max_examples=300, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))

ENC = ("ENC[AES256_GCM,data:BCw5MA==,iv:Tvmqj/SsQkqVW3mnxTZQG7RHg04HYiI9P9FqNl0fNWM=,"
       "tag:hLKHFVSaJbM5QQ5io6fwTw==,type:str]")
GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"
SOPS = {"age": [{"recipient": "age1xyz", "enc": "-----BEGIN AGE ENCRYPTED FILE-----\n"}],
        "lastmodified": "2026-01-01T00:00:00Z", "mac": ENC, "version": "3.11.0"}
CONNECTIONS: dict[str, dict[str, Any]] = {
    "aws": {"apiVersion": "connsync/v1", "provider": "aws",
            "metadata": {"name": "AWS Prod", "id": "aws-prod", "labels": {"env": "prod"}},
            "spec": {"account_id": "123456789012", "default_region": "eu-west-1",
                     "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": ENC},
            "sops": SOPS},
    "aws-role": {"apiVersion": "connsync/v1", "provider": "aws", "metadata": {"name": "AWS Role"},
                 "spec": {"account_id": "123456789012", "default_region": "us-east-1",
                          "role_arn": "arn:aws:iam::123456789012:role/deploy", "external_id": ENC,
                          "session_duration_seconds": 3600}},
    "azure": {"apiVersion": "connsync/v1", "provider": "azure", "metadata": {"name": "Azure Dev"},
              "spec": {"tenant_id": GUID, "subscription_id": GUID, "client_id": GUID, "client_secret": ENC,
                       "cloud": "AzureCloud"}, "sops": SOPS},
    "gcp": {"apiVersion": "connsync/v1", "provider": "gcp", "metadata": {"name": "GCP Analytics"},
            "spec": {"project_id": "analytics-123",
                     "client_email": "loader-1@analytics-123.iam.gserviceaccount.com",
                     "private_key_id": "0123456789abcdef0123456789abcdef01234567", "private_key": ENC},
            "sops": SOPS},
}
CONFIG = {"workspace": "prod", "store": "postgresql://db.example/connsync", "connections": "connections",
          "policies": ["policies", "more-policies"],
          "verify": {"max_key_age_days": 90, "history": 20, "concurrency": 8, "per_account_concurrency": 2,
                     "timeout_seconds": 12.5, "require_verified": True},
          "apply": {"prune": False, "max_deletes": 10}}
POLICY = {"apiVersion": "connsync/v1", "kind": "Policy", "metadata": {"name": "baseline"},
          "rules": [{"id": "prod-owner", "severity": "warning", "match": {"providers": ["aws", "gcp"],
                                                                          "labels": {"env": "prod"}},
                     "require": {"labels": ["owner"], "accounts": ["123456789012"], "regions": ["eu-west-1"],
                                 "max_key_age_days": 90, "least_privilege": True, "name": "^prod-"},
                     "message": "Production connections name an owner"}],
          "waivers": [{"rule": "prod-owner", "connection": "AWS Prod", "expires": "2027-09-30",
                       "reason": "OPS-1234: moving"}]}

# Where Python's re and Rust's regex part ways (\s, $, Unicode digits), and values at the edge of
# what each reads as JSON.
TRICKY_TEXT = st.sampled_from([
    "", " ", "a", "a\x1c", "\x1fa", "a\n", "123456789012\n", FULLWIDTH, ARABIC_INDIC,
    "AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPL\n", "us-east-1", "eu-west-1\n", "x" * 129, ENC, "\u00a0a",
    "a\u2028", "a\x85", "a\u180e", "arn:aws:iam::123456789012:role/x", GUID, GUID.upper() + "\n", "aws",
    "gcp", "azure", "connsync/v1", "Policy", "prod-owner", "2027-09-30", "2027-09-30T00:00:00Z", "sqlite:x",
    "ab\x7f", "AzureCloud", "analytics-123", "\ud800",
])
SCALARS = (TRICKY_TEXT | st.text(max_size=20) | st.integers() | st.integers(2**63 - 2, 2**65)
           | st.floats() | st.sampled_from([0.0, -0.0, 1.0, 900.0, 43200.0, 1e308, 3600.5])
           | st.booleans() | st.none() | st.dates())
VALUES = st.recursive(
    SCALARS,
    lambda inner: (st.lists(inner, max_size=3) | st.tuples(inner, inner)
                   | st.dictionaries(TRICKY_TEXT | st.text(max_size=8) | st.integers(-2, 2), inner,
                                     max_size=3)),
    max_leaves=8,
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a document (the root's children included)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key)
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _places(item, (*path, index))


@st.composite
def mutated(draw: st.DrawFn, bases: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid document with one to three things changed: a value replaced, a key removed, a key added."""
    document = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        places = list(_places(document))
        if not places:
            break
        *parents, last = draw(st.sampled_from(places))
        parent: Any = document
        for part in parents:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if action == "replace":
            parent[last] = draw(VALUES)
        elif action == "remove":
            del parent[last]
        elif isinstance(parent, dict):
            parent[draw(TRICKY_TEXT | st.text(max_size=8) | st.integers(-2, 2))] = draw(VALUES)
        else:
            parent.append(draw(VALUES))
    return document


def agree(document: dict[str, Any]) -> None:
    decl = Declaration("connections/x.yaml", document, "digest", source=NOWHERE)
    explained = schema.explain_document(decl)
    if schema.quick_valid(decl):
        assert explained == [], "the quick check called a document valid that jsonschema does not"
    assert schema.validate_document(decl) == explained


@pytest.mark.parametrize("name", sorted(CONNECTIONS))
def test_valid_connections_are_proved_valid(name: str) -> None:
    """The quick path is the one a valid file takes: nothing for jsonschema to do."""
    decl = Declaration("connections/x.yaml", CONNECTIONS[name], "digest")
    assert schema.quick_valid(decl)
    assert schema.explain_document(decl) == []


@pytest.mark.parametrize(("name", "document"), [(schema.CONFIG, CONFIG), (schema.POLICY, POLICY)])
def test_valid_settings_are_proved_valid(name: str, document: dict[str, Any]) -> None:
    assert schema.proves_valid(name, document)
    assert schema.explain_problems(name, document, NOWHERE) == []


@given(mutated(list(CONNECTIONS.values())))
def test_connections_agree(document: dict[str, Any]) -> None:
    agree(document)


@given(mutated([CONFIG, POLICY]))
def test_settings_agree(document: dict[str, Any]) -> None:
    name = schema.POLICY if "rules" in document or "kind" in document else schema.CONFIG
    explained = schema.explain_problems(name, document, NOWHERE)
    if schema.proves_valid(name, document):
        assert explained == [], "the quick check called a document valid that jsonschema does not"
    assert schema.document_problems(name, document, NOWHERE) == explained


@pytest.mark.parametrize(("field", "value"), [
    ("account_id", "123456789012\n"),  # Python's $ matches before a final newline; Rust's does not
    ("default_region", "eu-west-1\n"),
    ("account_id", FULLWIDTH),  # digits, not [0-9]
    ("session_duration_seconds", 3600.0),  # a whole float is an integer to both
    ("session_duration_seconds", True),  # a bool is not
    ("session_duration_seconds", math.inf),
    ("session_duration_seconds", math.nan),
    ("session_duration_seconds", 2**64),
    ("external_id", ("a", "b")),  # a tuple is no array to jsonschema
    ("external_id", dt.date(2026, 1, 1)),
    ("external_id", {1: "x"}),
])
def test_edges_agree(field: str, value: Any) -> None:
    document = copy.deepcopy(CONNECTIONS["aws-role"])
    document["spec"][field] = value
    agree(document)


@pytest.mark.parametrize(("name", "path", "value"), [
    (schema.CONFIG, ("policies",), ("policies", "more")),  # a tuple: an array to jsonschema-rs only
    (schema.POLICY, ("rules", 0, "require", "accounts"), ("123456789012",)),
    (schema.CONFIG, ("verify", "timeout_seconds"), math.inf),  # a number, but not a finite one
    (schema.CONFIG, ("verify", "timeout_seconds"), math.nan),
    (schema.CONFIG, ("store",), "sqlite:x\x1b"),
    (schema.POLICY, ("rules", 0, "match", "providers"), ["aws", "aws"]),
    (schema.POLICY, ("rules", 0, "require", "regions"), [1, True]),
])
def test_settings_edges_agree(name: str, path: tuple[Any, ...], value: Any) -> None:
    document = copy.deepcopy(CONFIG if name == schema.CONFIG else POLICY)
    *parents, last = path
    parent: Any = document
    for part in parents:
        parent = parent[part]
    parent[last] = value
    explained = schema.explain_problems(name, document, NOWHERE)
    assert explained, "each of these is an error to jsonschema"
    assert not schema.proves_valid(name, document)
    assert schema.document_problems(name, document, NOWHERE) == explained


@pytest.mark.parametrize("name", ["a\x1c", "\x1fa", "a\x85"])
def test_name_patterns_follow_python_re(name: str) -> None:
    """``\\S`` in Python's re excludes the separators U+001C-U+001F; Rust's regex would take them."""
    document = copy.deepcopy(CONNECTIONS["gcp"])
    document["metadata"]["name"] = name
    agree(document)
    assert not schema.quick_valid(Declaration("x.yaml", document, "d"))


def test_sops_values_jsonschema_takes_are_explained_the_same() -> None:
    """Inside ``sops`` anything goes: a value jsonschema-rs cannot take is jsonschema's to judge."""
    document = copy.deepcopy(CONNECTIONS["azure"])
    document["sops"] = {**SOPS, "odd": [math.inf, ("a",), {1: dt.date(2026, 1, 1)}]}
    decl = Declaration("x.yaml", document, "d")
    assert not schema.quick_valid(decl)
    assert schema.validate_document(decl) == schema.explain_document(decl) == []


FILES = [
    "apiVersion: connsync/v1\nprovider: aws\nmetadata: {name: A}\nspec:\n  account_id: '123'\n",
    "apiVersion: connsync/v1\nprovider: aws\nmetadata: {name: A, colour: red}\n"
    "spec: {account_id: '123456789012', default_region: us-east-1,\n"
    "       access_key_id: AKIAIOSFODNN7EXAMPLE}\n",
    "apiVersion: connsync/v2\nprovider: azure\nmetadata: {name: ' A'}\n"
    "spec:\n  tenant_id: x\n  cloud: Mars\n",
    "apiVersion: connsync/v1\nprovider: gcp\nmetadata: {name: G}\nspec: {project_id: P, extra: 1}\n",
    "apiVersion: connsync/v1\nprovider: aws\nmetadata: {name: R}\n"
    "spec: {account_id: '123456789012', default_region: us-east-1, external_id: x,\n"
    "       session_duration_seconds: 60}\n",
    "apiVersion: connsync/v1\nprovider: nope\nmetadata: {name: N}\nspec: {}\n",
    "apiVersion: connsync/v1\nprovider: aws\nmetadata: {name: L, labels: {a: 1}}\nspec: []\n",
    "provider: aws\nspec: {account_id: !!pairs [a: 1]}\n",
]


REPOSITORY_FILES = [p.read_text() for p in sorted((REPO / "connections").glob("*.yaml"))]


@pytest.mark.parametrize("text", FILES + REPOSITORY_FILES)
def test_files_give_the_same_findings_either_way(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the loader and the rules: the same findings, at the same lines and columns, whether the
    quick check ran or not."""
    decl = loader.load_bytes(text.encode(), "connections/x.yaml")
    assert isinstance(decl, Declaration)
    with_quick = rules.check_declaration(decl)
    monkeypatch.setattr(schema, "proves_valid", lambda *args, **kwargs: False)
    assert rules.check_declaration(decl) == with_quick


def test_repository_files_take_the_quick_path() -> None:
    for path in sorted((REPO / "connections").glob("*.yaml")):
        decl = loader.load_file(path)
        assert isinstance(decl, Declaration) and schema.quick_valid(decl), path
    policy = yaml.safe_load((REPO / "policies" / "baseline.yaml").read_text())
    policy["waivers"][0]["expires"] = str(policy["waivers"][0]["expires"])  # as the loader reads it
    assert schema.proves_valid(schema.POLICY, policy)
