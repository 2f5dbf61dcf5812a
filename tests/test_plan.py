"""The pure diff: every action of DESIGN §5, without I/O."""

from __future__ import annotations

from dataclasses import replace

from connsync.model import StoredConnection
from connsync.reconcile.plan import Intent, Plan, diff, needs_fingerprints

FP = {"secret_access_key": "f1"}


def intent(name: str = "AWS Prod", digest: str = "d1", fingerprints: dict[str, str] | None = FP,
           **spec: str) -> Intent:
    return Intent(name, "aws", f"connections/{name}.yaml", digest,
                  {"account_id": "123456789012", "default_region": "us-east-1", **spec}, None, {},
                  fingerprints)


def record(name: str = "AWS Prod", *, managed: bool = True, version: int = 1, synced: int | None = 1,
           digest: str | None = "d0", **spec: str) -> StoredConnection:
    return StoredConnection(name, "aws", {"account_id": "123456789012", "default_region": "us-east-1",
                                          **spec}, FP, version, managed, "f", digest, synced)


def actions(plan: Plan) -> list[tuple[str, str]]:
    return [(c.action, c.name) for c in plan.changes]


def test_create_lists_every_field_and_hides_secrets() -> None:
    (change,) = diff("w", [intent()], []).changes
    assert change.action == "create"
    assert change.fields["default_region"] == {"before": None, "after": "us-east-1"}
    assert change.fields["secret_access_key"] == {"sensitive": True, "changed": True}


def test_noop_by_digest_needs_no_decryption() -> None:
    unchanged = intent(digest="d0", fingerprints=None)
    assert not needs_fingerprints(unchanged, record(), adopt=False)
    assert actions(diff("w", [unchanged], [record()])) == [("noop", "AWS Prod")]


def test_same_values_other_bytes_is_noop() -> None:
    assert needs_fingerprints(intent(), record(), adopt=False)
    assert actions(diff("w", [intent()], [record()])) == [("noop", "AWS Prod")]


def test_update_shows_before_and_after() -> None:
    (change,) = diff("w", [intent(default_region="eu-west-1", fingerprints={"secret_access_key": "f2"})],
                     [record()]).changes
    assert change.action == "update" and not change.drift
    assert change.fields == {
        "default_region": {"before": "us-east-1", "after": "eu-west-1"},
        "secret_access_key": {"sensitive": True, "changed": True},
    }


def test_drift_is_flagged() -> None:
    drifted = record(version=3, synced=2, default_region="eu-west-1")
    (change,) = diff("w", [intent()], [drifted]).changes
    assert (change.action, change.drift) == ("update", True)
    # Even the same bytes are compared again once the store moved.
    assert needs_fingerprints(intent(digest="d0"), drifted, adopt=False)


def test_conflict_unless_adopt() -> None:
    ui_made = record(managed=False, synced=None)
    assert actions(diff("w", [intent()], [ui_made])) == [("conflict", "AWS Prod")]
    assert not needs_fingerprints(intent(), ui_made, adopt=False)
    (change,) = diff("w", [intent()], [ui_made], adopt=True).changes
    assert (change.action, change.adopt) == ("update", True)


def test_orphans_prune_and_ignored() -> None:
    records = [record("Gone"), record("UI only", managed=False)]
    plan = diff("w", [], records)
    assert actions(plan) == [("orphan", "Gone")] and plan.ignored == 1
    assert actions(diff("w", [], records, prune=True)) == [("delete", "Gone")]
    assert actions(diff("w", [], records, partial=True)) == []


def test_names_match_ignoring_case() -> None:
    assert actions(diff("w", [intent("aws prod")], [record("AWS Prod")])) == [("noop", "aws prod")]


def test_plan_round_trips_through_json() -> None:
    plan = diff("w", [intent(), intent("New")], [record(), record("Gone")], prune=True)
    assert Plan.from_json(plan.as_json()) == plan
    assert plan.summary == {"create": 1, "update": 0, "delete": 1, "noop": 1, "conflict": 0, "orphan": 0}
    assert replace(plan, changes=()).has_changes is False


def test_a_saved_plan_goes_stale_when_its_inputs_move() -> None:
    import pytest

    from connsync.errors import StalePlan
    from connsync.reconcile.plan import check_stale

    edited, new = intent(default_region="eu-west-1"), intent("New")
    saved = diff("w", [edited, new], [record()])
    check_stale(saved, saved)  # the same inputs: still good
    moved = [
        diff("w", [replace(edited, digest="d2"), new], [record()]),  # the file changed again
        diff("w", [edited, new], [record(version=2, synced=2)]),  # the store moved
        diff("w", [edited, new, intent("Newer")], [record()]),  # a file appeared
        replace(saved, workspace="other"),
    ]
    for fresh in moved:
        with pytest.raises(StalePlan):
            check_stale(saved, fresh)
