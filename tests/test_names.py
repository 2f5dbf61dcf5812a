"""Names, labels and descriptions: no hidden characters, no look-alikes, one normal form."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from connsync.model import Declaration
from connsync.store import Write
from connsync.store.sqlite import SqliteStore
from connsync.validate import rules
from tests.conftest import Run
from tests.helpers import aws_doc, write_doc


def validate_json(run: Run) -> tuple[int, list[dict[str, Any]]]:
    result = run("validate", "--format", "json")
    assert "Traceback" not in result.out + result.err
    return result.code, json.loads(result.out)["findings"]


# The six records, all displayed as "AWS Prod", that were applied side by side.
LOOK_ALIKES = {
    "cyrillic": ("\u0410WS Prod", "confusable-name"),
    "zwsp": ("AWS Prod\u200b", "hidden-character"),
    "bom": ("\ufeffAWS Prod", "hidden-character"),
    "nbsp": ("AWS\u00a0Prod", "hidden-character"),  # blank-looking: refused alone, too
    "nul": ("AWS\x00Prod", "hidden-character"),
    "nfd": ("Cafe\u0301", "duplicate-name"),  # beside "Caf\u00e9" (NFC)
}


@pytest.mark.parametrize("case", list(LOOK_ALIKES))
def test_each_look_alike_is_refused(run: Run, workdir: Path, case: str) -> None:
    name, rule = LOOK_ALIKES[case]
    original = unicodedata.normalize("NFC", name) if case == "nfd" else "AWS Prod"
    write_doc(workdir / "connections/a.yaml", aws_doc(original))
    write_doc(workdir / "connections/b.yaml", aws_doc(name))
    code, findings = validate_json(run)
    assert code == 1
    assert [(f["rule"], f["file"], f["path"], f["line"]) for f in findings] == [
        (rule, "connections/b.yaml", "$.metadata.name", 4)], findings


def test_the_six_records_cannot_be_applied_side_by_side(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/0.yaml", aws_doc("AWS Prod"))
    write_doc(workdir / "connections/00.yaml", aws_doc("Caf\u00e9"))
    for i, (name, _) in enumerate(LOOK_ALIKES.values(), start=1):
        write_doc(workdir / f"connections/{i}.yaml", aws_doc(name))
    code, findings = validate_json(run)
    assert code == 1
    flagged = {f["file"] for f in findings}
    assert flagged == {f"connections/{i}.yaml" for i in range(1, 7)}, findings
    assert run("plan").code == 1


def test_confusable_message_names_the_odd_character(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/a.yaml", aws_doc("AWS Prod"))
    write_doc(workdir / "connections/b.yaml", aws_doc("\u0410WS Prod"))
    _, (finding,) = validate_json(run)
    assert "U+0410 CYRILLIC CAPITAL LETTER A" in finding["message"]
    assert "connections/a.yaml" in finding["message"]


def test_names_that_only_look_different_to_a_machine_are_not_confusable(run: Run, workdir: Path) -> None:
    for i, name in enumerate(["AWS Prod", "AWS Dev", "AWS Prod EU", "Café", "Cafe", "GCP Prod"]):
        write_doc(workdir / f"connections/{i}.yaml", aws_doc(name))
    code, findings = validate_json(run)
    assert (code, findings) == (0, [])


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("A\r<!--", "U+000D"),
        ("Z\r-->", "U+000D"),
        ("A\r::add-mask::x\rB", "U+000D"),
        ("\x1b[2K\x1b[1AAWS Prod", "U+001B"),
        ("AWS\u202eProd", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("AWS\u2028Prod", "U+2028 (LINE SEPARATOR)"),
        ("AWS\tProd", "U+0009"),
    ],
)
def test_control_and_format_characters_in_names(run: Run, workdir: Path, name: str, shown: str) -> None:
    write_doc(workdir / "connections/a.yaml", aws_doc(name))
    result = run("validate")
    assert result.code == 1
    assert "[hidden-character] $.metadata.name: the name contains " + shown in result.out
    assert result.out.count("error") == 2  # one finding (the schema's pattern error is folded in) + summary


def test_labels_and_descriptions(run: Run, workdir: Path) -> None:
    doc = aws_doc()
    doc["metadata"]["description"] = "Line one\nline two\twith a tab"  # prose may break lines
    doc["metadata"]["labels"] = {"env": "prod", "te\u200bam": "billing", "owner": "a\x1b]8;;http://x\x07b"}
    write_doc(workdir / "connections/a.yaml", doc)
    code, findings = validate_json(run)
    assert code == 1
    assert [(f["path"], f["message"][:24]) for f in findings] == [
        ("$.metadata.labels.te\u200bam", "a label key contains U+2"),
        ("$.metadata.labels.owner", "a label value contains U"),
    ]
    doc["metadata"]["labels"] = {}
    doc["metadata"]["description"] = "bidi \u2066trick\u2069"
    write_doc(workdir / "connections/a.yaml", doc)
    _, findings = validate_json(run)
    assert [f["path"] for f in findings] == ["$.metadata.description"]


def test_a_10000_character_name_is_not_echoed(run: Run, workdir: Path) -> None:
    write_doc(workdir / "connections/a.yaml", aws_doc("N" * 10_000))
    result = run("validate")
    assert result.code == 1
    assert "name is too long" in result.out and "N" * 200 not in result.out
    _, findings = validate_json(run)
    assert "N" * 200 not in json.dumps(findings)


def test_names_are_used_in_nfc() -> None:
    decl = Declaration("a.yaml", aws_doc("Cafe\u0301"), "")
    assert decl.name == "Café" and rules.name_key("CAFE\u0301") == rules.name_key("café")
    assert rules.skeleton("\u0410WS Prod") == rules.skeleton("AWS Prod")


def test_a_new_name_that_looks_like_a_store_record_is_refused_by_plan(repo: Path, run: Run) -> None:
    store = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")
    try:  # made in the platform's UI: validate (offline) cannot know it
        store.put(Write(name="AWS Prod", provider="aws", spec={}, secrets={}, managed=False, actor="ui",
                        action="ui-create"), expected_version=None)
    finally:
        store.close()
    write_doc(repo / "connections/prod.yaml", aws_doc("\u0410WS Prod"))
    assert run("validate").code == 0
    for command in (("plan",), ("apply", "--auto-approve", "--skip-verify")):
        result = run(*command)
        assert result.code == 1, result.out + result.err
        assert "[confusable-name]" in result.err and "which the store already holds" in result.err


def test_workspace_from_a_flag_or_the_environment_is_checked(workdir: Path, run: Run) -> None:
    result = run("--workspace", "a\n::error::b", "list")
    assert result.code == 1 and "does not match" in result.err
    assert all(line.isprintable() and not line.startswith("::") for line in result.err.splitlines())


# Characters that show as a blank (or as nothing) and that ICU's confusable skeleton keeps apart
# from a space: each made "AWS<it>Prod" pass beside "AWS Prod".
BLANK_LOOKING = {"\u3164": "HANGUL FILLER", "\u2800": "BRAILLE PATTERN BLANK",
                 "\uffa0": "HALFWIDTH HANGUL FILLER", "\u115f": "HANGUL CHOSEONG FILLER",
                 "\u1160": "HANGUL JUNGSEONG FILLER", "\u3000": "IDEOGRAPHIC SPACE",
                 "\u2007": "FIGURE SPACE", "\u034f": "COMBINING GRAPHEME JOINER",
                 "\ufe0f": "VARIATION SELECTOR-16", "\U000e0041": "TAG LATIN CAPITAL LETTER A"}


@pytest.mark.parametrize("char", list(BLANK_LOOKING))
def test_blank_looking_characters_are_refused_in_names_and_labels(run: Run, workdir: Path, char: str) -> None:
    write_doc(workdir / "connections/a.yaml", aws_doc("AWS Prod"))
    doc = aws_doc(f"AWS{char}Prod")
    doc["metadata"]["labels"] = {f"te{char}am": "billing", "owner": f"bob{char}"}
    doc["metadata"]["description"] = "prose\u00a0is prose"  # not a name: a no-break space is fine there
    write_doc(workdir / "connections/b.yaml", doc)
    code, findings = validate_json(run)
    assert code == 1
    assert [(f["rule"], f["file"], f["path"], f["line"]) for f in findings] == [
        ("hidden-character", "connections/b.yaml", "$.metadata.name", 4),
        ("hidden-character", "connections/b.yaml", f"$.metadata.labels.te{char}am", 6),
        ("hidden-character", "connections/b.yaml", "$.metadata.labels.owner", 7),
    ], findings
    code_point = f"U+{ord(char):04X} ({BLANK_LOOKING[char]}) at position 4"
    if unicodedata.category(char) == "Cf":  # a format character (the tags): reported as one, as before
        assert findings[0]["message"].startswith(f"the name contains {code_point}; control and format")
        return
    code_point += ", a blank-looking character"
    assert findings[0]["message"] == (
        f"the name contains {code_point}; it looks like a space, or like nothing, so two different names "
        "or labels would read the same; use a plain space (U+0020) or remove it")
    assert run("plan").code == 1


@pytest.mark.parametrize("char", ["\u2800", "\u3164", "\u00a0", "\u200b"])
def test_a_store_name_with_a_blank_looking_character_is_a_look_alike(repo: Path, run: Run, char: str) -> None:
    """Made in the platform's UI, the store's name never met validate: the look-alike check folds it."""
    store = SqliteStore.open(f"sqlite:{repo / '.connsync/store.db'}", "default")
    try:
        store.put(Write(name=f"AWS{char}Prod", provider="aws", spec={}, secrets={}, managed=False, actor="ui",
                        action="ui-create"), expected_version=None)
    finally:
        store.close()
    write_doc(repo / "connections/prod.yaml", aws_doc("AWS Prod" if char != "\u200b" else "AWSProd"))
    result = run("plan")
    assert result.code == 1, result.out + result.err
    assert "[confusable-name]" in result.err and "which the store already holds" in result.err
