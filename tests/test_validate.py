"""validate: every rule and every bad input, through the CLI and the library."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from connsync.model import Finding
from connsync.validate import rules
from connsync.validate.loader import MAX_FILE_BYTES
from tests.conftest import CANARY, REPO, Run, run_process
from tests.helpers import FAKE_ENC, aws_doc, key_id_for, write_doc


def findings_of(run: Run, *paths: str) -> tuple[int, list[dict[str, Any]]]:
    result = run("validate", "--format", "json", *paths)
    assert "Traceback" not in result.out + result.err
    report = json.loads(result.out)
    return result.code, report["findings"]


def test_valid_file_passes(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/prod.yaml", aws_doc())
    result = run("validate")
    assert result.code == 0, result.out
    assert "1 file checked: 0 errors, 0 warnings - ok" in result.out


@pytest.mark.parametrize(
    ("content", "rule", "line", "column", "fragment"),
    [
        (b"apiVersion: [unclosed\n", "yaml", 2, 1, "expected"),
        (b"a:\n\tb: 1\n", "yaml", 2, 1, "tab"),
        (b"", "yaml", 1, 1, "empty"),
        (b"# only a comment\n", "yaml", 1, 1, "empty"),
        (b"- a\n- b\n", "schema", 1, 1, "mapping, not a list"),
        (b"'just a string'\n", "schema", 1, 1, "mapping, not a str"),
        (b"!!python/object/apply:os.system ['touch pwned']\n", "yaml", 1, 1, "constructor"),
        (b"a: !!python/name:os.system\n", "yaml", 1, 4, "constructor"),
        (b"a: 1\nb: 2\na: 3\n", "duplicate-key", 3, 1, "appears twice"),
        (b"a: &x [1]\nb: *x\n", "yaml", 1, 4, "aliases"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "yaml", 1, 1, "binary"),
        (b"a: \xff\xfe\n", "yaml", 1, 4, "UTF-8"),
        (b"---\na: 1\n---\nb: 2\n", "yaml", 3, 1, "single document"),
    ],
)
def test_bad_yaml_is_one_finding(
    run: Run, workdir: Path, content: bytes, rule: str, line: int, column: int, fragment: str
) -> None:
    (workdir / "connections/bad.yaml").write_bytes(content)
    code, findings = findings_of(run)
    assert code == 1
    assert len(findings) == 1, findings
    (finding,) = findings
    assert (finding["rule"], finding["line"], finding["column"]) == (rule, line, column)
    assert fragment.lower() in str(finding["message"]).lower()
    assert finding["file"] == "connections/bad.yaml"
    assert not (workdir / "pwned").exists()


@pytest.mark.parametrize(
    ("content", "rule"),
    [(b"a: [", "yaml"), (b"\x00", "yaml"), (b"", "yaml"), (b"- 1\n", "schema"),
     (b"a: 1\na: 2\n", "duplicate-key"), (b"a: &x 1\nb: *x\n", "yaml"),
     (b"!!python/name:os.system\n", "yaml")],
)
def test_loader_returns_one_finding_per_bad_file(content: bytes, rule: str) -> None:
    from connsync.validate.loader import load_bytes

    finding = load_bytes(content, "x.yaml")
    assert isinstance(finding, Finding) and finding.rule == rule and finding.file == "x.yaml"


def test_python_tag_is_never_executed(run: Run, workdir: Path) -> None:
    marker = workdir / "executed"
    (workdir / "connections/evil.yaml").write_text(
        f"!!python/object/apply:os.system ['touch {marker}']\n"
    )
    assert run("validate").code == 1
    assert not marker.exists()


def test_alias_bomb_is_refused_quickly(run: Run, workdir: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (workdir / "connections/bomb.yaml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    code, findings = findings_of(run)
    assert time.monotonic() - started < 10  # expanded, this would be 9**10 strings
    assert code == 1
    assert [f["rule"] for f in findings] == ["yaml"]


def test_huge_file_is_capped_before_parsing(run: Run, workdir: Path) -> None:
    with (workdir / "connections/huge.yaml").open("wb") as handle:
        handle.write(b"a: " + b"x" * (30 * 1024 * 1024) + b"\n")
    code, findings = findings_of(run)
    assert code == 1
    assert len(findings) == 1
    assert f"{MAX_FILE_BYTES:,}" in str(findings[0]["message"])


def test_deep_nesting_is_a_finding(run: Run, workdir: Path) -> None:
    (workdir / "connections/deep.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    code, findings = findings_of(run)
    assert code == 1
    assert len(findings) == 1


def test_unknown_provider_and_api_version(run: Run, workdir: Path) -> None:
    doc = aws_doc()
    doc.update(apiVersion="connsync/v2", provider="azur")
    write_doc(workdir / "connections/x.yaml", doc)
    _, findings = findings_of(run)
    by_path = {f["path"]: f for f in findings}
    assert by_path["$.provider"]["line"] == 2
    assert "'azur' is not one of" in str(by_path["$.provider"]["message"])
    assert by_path["$.apiVersion"]["line"] == 1
    assert len(findings) == 2  # no wall of errors from the provider dispatch


def test_unknown_key_is_reported_at_its_own_line(run: Run, workdir: Path) -> None:
    doc = aws_doc()
    doc["spec"]["acount_id"] = "1"
    doc["metadata"]["lables"] = {}
    write_doc(workdir / "connections/x.yaml", doc)
    _, findings = findings_of(run)
    by_path = {f["path"]: f for f in findings}
    text = (workdir / "connections/x.yaml").read_text().splitlines()
    spec_finding = by_path["$.spec.acount_id"]
    assert text[int(spec_finding["line"]) - 1].strip().startswith("acount_id:")
    assert spec_finding["column"] == 3
    assert "did you mean 'account_id'" in str(spec_finding["message"])
    assert text[int(by_path["$.metadata.lables"]["line"]) - 1].strip().startswith("lables:")


def test_missing_field_and_wrong_types(run: Run, workdir: Path) -> None:
    doc = aws_doc()
    del doc["spec"]["default_region"]
    doc["metadata"]["labels"] = {"env": 3}
    write_doc(workdir / "connections/x.yaml", doc)
    _, findings = findings_of(run)
    messages = {f["path"]: f["message"] for f in findings}
    assert "'default_region' is a required property" in str(messages["$.spec"])
    assert "3 is not of type 'string'" in str(messages["$.metadata.labels.env"])


def test_unquoted_account_id_gets_a_hint(run: Run, workdir: Path) -> None:
    (workdir / "connections/x.yaml").write_text(
        "apiVersion: connsync/v1\nprovider: aws\nmetadata:\n  name: A\nspec:\n"
        "  account_id: 123456789012\n  default_region: us-east-1\n"
        "  access_key_id: AKIAIOSFODNN7EXAMPLE\n"
        f"  secret_access_key: {FAKE_ENC}\nsops:\n  mac: {FAKE_ENC}\n"
    )
    _, findings = findings_of(run)
    assert [(f["path"], f["line"], f["column"]) for f in findings] == [("$.spec.account_id", 6, 15)]
    assert "quoted" in str(findings[0]["message"])


@pytest.mark.parametrize(
    ("spec", "rule", "fragment"),
    [
        ({"account_id": "12345"}, "schema", "12 digits"),
        ({"default_region": "us-east-99"}, "aws-region", "not an AWS region"),
        ({"access_key_id": "AKIA123"}, "schema", "AKIA followed by 16"),
        ({"access_key_id": "ASIAQNZGKIQY56JQ7WML"}, "schema", "temporary key"),
    ],
)
def test_aws_offline_rules(run: Run, workdir: Path, spec: dict[str, str], rule: str, fragment: str) -> None:
    write_doc(workdir / "connections/x.yaml", aws_doc(**spec))
    code, findings = findings_of(run)
    assert code == 1
    assert [f["rule"] for f in findings] == [rule]
    assert fragment in str(findings[0]["message"])


@pytest.mark.parametrize("region", ["us-gov-west-1", "cn-north-1", "eu-central-1", "ap-southeast-2"])
def test_regions_of_every_partition(run: Run, workdir: Path, region: str) -> None:
    write_doc(workdir / "connections/x.yaml", aws_doc(default_region=region))
    assert run("validate").code == 0


def test_key_account_must_match(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/ok.yaml", aws_doc("A", access_key_id=key_id_for("123456789012")))
    write_doc(workdir / "connections/bad.yaml", aws_doc("B", access_key_id=key_id_for("000000000042")))
    code, findings = findings_of(run)
    assert code == 1
    assert [(f["file"], f["rule"], f["path"]) for f in findings] == [
        ("connections/bad.yaml", "aws-key-account", "$.spec.access_key_id")
    ]
    assert "000000000042" in str(findings[0]["message"])


def test_known_key_decodes_to_its_account() -> None:
    from connsync.providers.aws import account_from_key_id

    assert account_from_key_id("ASIAQNZGKIQY56JQ7WML") == "029608264753"
    assert account_from_key_id("AKIAIOSFODNN7EXAMPLE") is None  # old format encodes nothing


def test_duplicate_names_across_files_ignoring_case(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/a.yaml", aws_doc("AWS Prod"))
    write_doc(workdir / "connections/team/b.yml", aws_doc("aws prod"))
    code, findings = findings_of(run)
    assert code == 1
    (finding,) = findings
    assert finding["rule"] == "duplicate-name"
    assert finding["file"] == "connections/team/b.yml"
    assert "connections/a.yaml" in str(finding["message"])
    assert finding["path"] == "$.metadata.name"


def test_plaintext_secret_is_an_error_and_never_echoed(run: Run, workdir: Path) -> None:
    doc = aws_doc(secret_access_key=CANARY)
    del doc["sops"]
    write_doc(workdir / "connections/x.yaml", doc)
    for fmt in ("text", "json", "github"):
        result = run("validate", "--format", fmt)
        assert result.code == 1
        assert "plaintext-secret" in result.out
        assert CANARY not in result.out + result.err


@pytest.mark.parametrize("value", [[CANARY], {"k": CANARY}, 12345678901234567890, ""])
def test_schema_messages_about_secrets_drop_the_value(run: Run, workdir: Path, value: object) -> None:
    write_doc(workdir / "connections/x.yaml", aws_doc(secret_access_key=value))
    result = run("validate", "--format", "json")
    assert result.code == 1
    assert CANARY not in result.out and "12345678901234567890" not in result.out
    assert "secret_access_key" in result.out


def test_spec_that_is_a_list_does_not_echo_secrets(run: Run, workdir: Path) -> None:
    doc = aws_doc()
    doc["spec"] = [CANARY]
    write_doc(workdir / "connections/x.yaml", doc)
    result = run("validate")
    assert result.code == 1 and CANARY not in result.out


def test_fully_encrypted_file_is_one_clear_finding(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/x.yaml", aws_doc(account_id=FAKE_ENC, default_region=FAKE_ENC))
    code, findings = findings_of(run)
    assert code == 1
    assert [f["rule"] for f in findings] == ["encrypted-clear-field"]
    assert "encrypted_regex" in str(findings[0]["message"])


def test_azure_and_gcp_shapes(run: Run, workdir: Path) -> None:
    base = {"apiVersion": "connsync/v1", "sops": {"mac": FAKE_ENC}}
    write_doc(workdir / "connections/az.yaml", {
        **base, "provider": "azure", "metadata": {"name": "Azure"},
        "spec": {"tenant_id": "not-a-guid", "subscription_id": "00000000-0000-0000-0000-000000000000",
                 "client_id": "11111111-2222-3333-4444-555555555555", "client_secret": FAKE_ENC},
    })
    write_doc(workdir / "connections/gcp.yaml", {
        **base, "provider": "gcp", "metadata": {"name": "GCP"},
        "spec": {"project_id": "billing-prod-123", "client_email": "someone@gmail.com",
                 "private_key_id": "0123456789abcdef0123456789abcdef01234567", "private_key": FAKE_ENC},
    })
    _, findings = findings_of(run)
    assert [(f["file"], f["path"]) for f in findings] == [
        ("connections/az.yaml", "$.spec.tenant_id"),
        ("connections/gcp.yaml", "$.spec.client_email"),
    ]
    assert "GUID" in str(findings[0]["message"])
    assert "service account email" in str(findings[1]["message"])


def test_secret_shape_checks() -> None:
    from connsync import providers

    assert providers.get("aws").check_secret("secret_access_key", "short") is not None
    assert providers.get("aws").check_secret("secret_access_key", CANARY) is None
    gcp = providers.get("gcp")
    assert gcp.check_secret("private_key", "not a pem") is not None
    pem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    assert gcp.check_secret("private_key", pem) is None
    message = gcp.check_secret("private_key", CANARY)
    assert message is not None and CANARY not in message


def test_github_annotations(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/x.yaml", aws_doc(account_id="1"))
    result = run("validate", "--format", "github")
    assert result.code == 1
    first = result.out.splitlines()[0]
    assert first.startswith("::error file=connections/x.yaml,line=6,col=")
    assert "title=connsync schema::$.spec.account_id: " in first


def test_library_returns_findings_as_values(workdir: Path) -> None:
    (workdir / "connections/bad.yaml").write_text("a: [\n")
    write_doc(workdir / "connections/good.yaml", aws_doc())
    result = rules.validate_files([], workdir / "connections")
    assert result.files == 2 and not result.ok
    assert [d.file for d in result.valid_declarations()] == ["connections/good.yaml"]


def test_missing_path_is_a_usage_error(run: Run, workdir: Path) -> None:
    result = run("validate", "nope.yaml")
    assert result.code == 64
    assert "nope.yaml: no such file or directory" in result.err


def test_examples_in_the_repository_are_valid(run: Run) -> None:
    result = run("validate", str(REPO / "connections"))
    assert result.code == 0, result.out
    assert "3 files checked" in result.out


def test_examples_start_with_the_schema_modeline() -> None:
    for path in sorted((REPO / "connections").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schemas/connection.schema.json", path


def test_no_traceback_from_the_real_entry_point(workdir: Path) -> None:
    (workdir / "connections/x.yaml").write_bytes(b"\x00\x01")
    result = run_process("validate", cwd=workdir)
    assert result.code == 1
    assert "Traceback" not in result.err and "binary" in result.out


@pytest.mark.parametrize("value",
                         ["!!timestamp 2020-01-01\n  - 1", "!!int many", "!!float x", "!!bool maybe"])
def test_explicit_tags_that_do_not_parse(value: str) -> None:
    """Found by tests/test_fuzz.py: PyYAML's constructors raise plain exceptions for these."""
    from connsync.sops.native import NeedsBinary, decrypt_text
    from connsync.validate.loader import load_bytes

    finding = load_bytes(f"k: {value}\n".encode(), "x.yaml")
    assert isinstance(finding, Finding) and finding.rule == "yaml"
    with pytest.raises(NeedsBinary):
        decrypt_text(f"k: {value}\nsops: {{mac: x, lastmodified: x}}\n")


def test_a_merge_key_is_refused_where_it_stands(repo: Path, run: Run) -> None:
    """PyYAML merges ``<<``, sops keeps it as a key: a secret put there would be validated as a
    spec field yet stored, decrypted, inside the clear spec. Encrypted by the real sops here."""
    import subprocess

    from connsync import sops

    plain = ("apiVersion: connsync/v1\nprovider: aws\nmetadata:\n  name: AWS Prod\nspec:\n"
             "  account_id: '123456789012'\n  default_region: us-east-1\n"
             "  access_key_id: AKIAIOSFODNN7EXAMPLE\n"
             f"  !!merge <<: {{secret_access_key: {CANARY}}}\n")
    encrypted = subprocess.run([sops.binary(), "encrypt", "--filename-override", "connections/aws-prod.yaml",
                                "--input-type", "yaml", "--output-type", "yaml", "/dev/stdin"],
                               input=plain.encode(), capture_output=True, cwd=repo, check=True).stdout
    assert b"ENC[" in encrypted and CANARY.encode() not in encrypted
    (repo / "connections/aws-prod.yaml").write_bytes(encrypted)
    code, findings = findings_of(run)
    assert code == 1
    assert [(f["rule"], f["line"], f["column"], f["path"]) for f in findings] == [("yaml", 9, 5, "$.spec.<<")]
    assert "merge keys (<<) are not allowed" in str(findings[0]["message"])
    applied = run("apply", "--auto-approve", "--skip-verify")
    assert applied.code == 1 and "connections/aws-prod.yaml:9:5" in applied.err
    listed = run("list", "--format", "json")
    assert CANARY not in listed.out + listed.err + applied.out + applied.err
    # Plain or quoted, in any mapping (connsync.yaml too): the same finding.
    (repo / "connections/aws-prod.yaml").write_text(plain.replace("!!merge <<", "'<<'").replace(CANARY, "x"))
    assert [(f["rule"], f["line"]) for f in findings_of(run)[1]] == [("yaml", 9)]
    (repo / "connections/aws-prod.yaml").unlink()
    (repo / "connsync.yaml").write_text("<<: {workspace: other}\n")
    refused = run("validate")
    assert refused.code == 1 and "connsync.yaml:1:1: merge keys (<<) are not allowed" in refused.err
