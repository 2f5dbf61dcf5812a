"""Hostile input, generated: loading and checking a file never raises, it yields findings."""

from __future__ import annotations

import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connsync.model import Declaration, Finding
from connsync.validate import rules
from connsync.validate.loader import load_bytes

# HYPOTHESIS_PROFILE=thorough for a long hunt; the suite runs the quick one.
settings.register_profile("quick", max_examples=250, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=5000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))


def check(raw: bytes) -> None:
    item = load_bytes(raw, "fuzz.yaml")
    if isinstance(item, Declaration):
        findings = rules.check_declaration(item)
        assert all(isinstance(f, Finding) and f.line >= 1 and f.column >= 1 for f in findings)
    else:
        assert item.file == "fuzz.yaml" and item.line >= 1


@given(st.binary(max_size=512))
def test_random_bytes(raw: bytes) -> None:
    check(raw)


YAML_PIECES = st.sampled_from([
    "apiVersion: connsync/v1\n", "provider: aws\n", "provider: [x]\n", "metadata:\n", "  name: A\n",
    "spec:\n", "  account_id: 1\n", "  default_region: us-east-1\n", "  secret_access_key: x\n",
    "  access_key_id: AKIAIOSFODNN7EXAMPLE\n", "sops: {mac: x}\n", "- item\n", "&a x\n", "*a\n",
    "  labels: {a: 1}\n", "? [k]\n: v\n", "!!binary aGk=\n", "\t\n", "---\n", "{", "}", ": ", "'", '"',
    "!!python/object:os.system\n", "k: !!timestamp 2020-01-01\n", "\xff", "  - 1\n", "spec: ~\n",
    "k: !!int x\n", "k: !!bool maybe\n", "k: !!float .\n", "k: !!set {a}\n", "k: !!omap [a]\n",
    "<<: {a: 1}\n", "k: !!null x\n", "k: !!str\n", "? !!binary x\n",
])


@given(st.lists(YAML_PIECES, max_size=25))
def test_yaml_shaped_garbage(pieces: list[str]) -> None:
    check("".join(pieces).encode("utf-8", "surrogatepass"))


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children,
                                                                        max_size=4),
    max_leaves=20,
)


@given(st.fixed_dictionaries({"apiVersion": st.just("connsync/v1"),
                              "provider": st.sampled_from(["aws", "azure", "gcp", "x"]),
                              "metadata": documents, "spec": documents}, optional={"sops": documents}))
def test_connection_shaped_documents(document: dict[str, object]) -> None:
    check(yaml.safe_dump(document).encode())
