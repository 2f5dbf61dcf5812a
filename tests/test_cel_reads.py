"""What a CEL expression reads, and the evaluator that leans on it: remembering outcomes by the
values read and handing the engine map fields one by one must never change an outcome."""

from __future__ import annotations

import datetime
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connsync.validate import cel
from connsync.validate.cel_reads import flatten, reads

VARIABLES = cel.VARIABLES


def read_by(source: str) -> tuple[tuple[str, str | None], ...]:
    program = cel.compile_expression(source)
    assert isinstance(program, cel.Program), program
    return program.reads


@pytest.mark.parametrize(("source", "expected"), [
    ('spec.default_region.startsWith("us-")', [("spec", "default_region")]),
    ("size(name) < 64", [("name", None)]),
    ('labels.team in ["a"] && has(labels.owner)', [("labels", "owner"), ("labels", "team")]),
    ('!has(spec.secret_access_key) && has(spec.access_key_id)',
     [("spec", "access_key_id"), ("spec", "secret_access_key")]),
    ("has(spec.a.b) || spec.c.exists(x, x == 1)", [("spec", "a"), ("spec", "c")]),
    # any other use of the map reads it whole
    ("size(spec) > 1", [("spec", None)]),
    ('"a" in spec', [("spec", None)]),
    ('spec["a"] == 1', [("spec", None)]),
    ('spec.exists(k, k == "a")', [("spec", None)]),
    ('labels.all(k, labels[k] != "")', [("labels", None)]),
    ("spec == {}", [("spec", None)]),
    # a comprehension's variable named like one: read whole
    ('labels.all(spec, spec != "") && spec.a == 1', [("labels", None), ("spec", None)]),
    # a field named like a variable, of something else, is not the variable
    ('spec.labels == "x" && [{"spec": 1}][0].spec == 1', [("spec", "labels")]),
    # text in strings and comments is not code
    ('spec.a == "size(spec) spec[0]" // spec.b and size(labels)\n && labels.x == \'labels\'',
     [("labels", "x"), ("spec", "a")]),
    (r'spec.a == r"\" && size(spec) > 0 || spec.b == "\"" ', [("spec", None)]),
    ("spec.a == '''x ' size(spec) ''' && b\"\"\"spec\"\"\" != b''", [("spec", "a")]),
    (r"spec.a == R'\' || spec.b == bR'\'", [("spec", "a"), ("spec", "b")]),
])
def test_what_an_expression_reads(source: str, expected: list[tuple[str, str | None]]) -> None:
    assert list(read_by(source)) == expected


def test_tokens_not_covered_read_everything_named_whole() -> None:
    # a letter outside ASCII (in a string it is fine)
    assert read_by('spec.a == "zürich"') == (("spec", "a"),)
    assert reads("spec.a == 1 && é", VARIABLES, ["spec"]) == tuple((v, None) for v in VARIABLES)
    assert reads("spec.`a-b` == 1", VARIABLES, ["spec"]) == tuple((v, None) for v in VARIABLES)


def test_flatten_hands_fields_over_as_variables_of_their_own() -> None:
    flat = flatten(('has(spec.a) && spec.a == 1', 'labels.team == "x" || x.has(spec.b)'), ("labels", "spec"))
    assert flat is not None
    assert flat.sources == (" _f0  &&  _f1  == 1", ' _f2  == "x" || x.has( _f3 )')
    assert flat.inputs == (("_f0", "spec", "a", True), ("_f1", "spec", "a", False),
                           ("_f2", "labels", "team", False), ("_f3", "spec", "b", False))
    # the names are ones no expression uses
    flat = flatten(('labels.all(_f0, _f0 != "") || spec.a == 1',), ("spec",))
    assert flat is not None and flat.sources == ('labels.all(_f0, _f0 != "") ||  _f_0  == 1',)
    # never glued to the next token
    flat = flatten(("has(spec.a)in [true]",), ("spec",))
    assert flat is not None and flat.sources == (" _f0 in [true]",)
    # a map read whole is not flattened
    assert flatten(("size(spec) > 0 && spec.a == 1",), ("spec",)) is None


def test_the_engine_loads_once_and_the_package_import_shares_it() -> None:
    engine = cel._engine()
    import cel as package  # its __init__ imports the extension as cel.cel: the same one

    assert sys.modules["cel.cel"] is engine
    assert package.compile("1 + 1").execute({}) == 2


# --- never a different outcome ---------------------------------------------------------------

EXPRESSIONS = [
    'spec.default_region.startsWith("us-")',
    "size(name) < 12",
    'labels.team in ["a", "b"]',
    "has(spec.a) && spec.a == 1",
    "!has(spec.secret) && has(spec.access_key_id)",
    "spec.a == 1 || true",
    'has(spec.a) ? spec.a == "1" : labels.env == "prod"',
    "size(spec) > 2",
    '"a" in spec',
    'spec.exists(k, k == "n")',
    'labels.all(k, labels[k] != "")',
    'spec["n"] == 1',
    'string(spec.n) == "1"',
    "spec.n == 1.0",
    "type(spec.n) == bool",
    "spec.n == true",
    "spec.n > 0",
    "has(spec.a.b)",
    "spec.a.exists(x, x == 1)",
    "description == null",
    'provider == "aws" && spec.default_region == "eu-west-1"',
    'labels.env.matches("^p")',
    "1 / (size(labels) - 2) == 1",
    "size(name)",
    'labels.all(spec, spec != "") && spec.n == 1',
    'r"spec.n" == "spec.n" && spec.n != 2',
    "spec.n != 3 // a comment to the end of the line",
    # ways to read a map other than by its fields, each of which must read it whole
    "!has(spec.n)",
    '!("n" in spec) && !has(spec.a)',
    'spec.exists(k, k == "n") || !has(spec.a)',
    "size(spec) == 0",
    "[spec][0].n == 1",
    '{"k": spec}.k.n == 1',
    'spec.n == spec["n"]',
    '!has(labels.env) || labels.env != "prod"',
    'labels.exists_one(k, k == "env")',
    "has(spec.n) == false",
    "type(spec) == map",
    "has(spec.access_key_id)",
    'string(spec.n) == "-0"',
    "has(spec.a)in [true]",
    "spec\n  // a comment between\n  .n == 1",
    "spec.filter(k, k != \"a\").size() == 1",
]
PROGRAMS = [p for p in map(cel.compile_expression, EXPRESSIONS) if isinstance(p, cel.Program)]


def test_every_expression_of_the_corpus_compiles() -> None:
    refused = [(e, cel.compile_expression(e)) for e in EXPRESSIONS]
    assert len(PROGRAMS) == len(EXPRESSIONS), [(e, r) for e, r in refused if isinstance(r, str)]

scalars = st.one_of(st.sampled_from(["1", "a", "prod", "us-east-1", "eu-west-1", ""]), st.integers(-1, 2),
                    st.sampled_from([True, False, 1.0, -0.0, 0.0, None]))


def spec_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["a", "b", "n"]), inner, max_size=2)),
        max_leaves=4)


def connections(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({
        "provider": st.sampled_from(["aws", "azure"]),
        "name": st.sampled_from(["a", "prod-1", "a very long name indeed"]),
        "description": st.sampled_from([None, "x"]),
        "labels": st.dictionaries(st.sampled_from(["team", "env", "owner"]),
                                  st.sampled_from(["a", "b", "prod", "", "p"]), max_size=3),
        "spec": st.dictionaries(st.sampled_from(["a", "n", "default_region", "access_key_id"]),
                                spec_values(leaves), max_size=4),
    })


def whole(program: cel.Program) -> cel.Program:
    """The same expression given the whole connection, as before any of this."""
    return program._replace(reads=tuple((name, None) for name in VARIABLES))


plan_indexes = st.lists(st.sampled_from(range(len(PROGRAMS))), min_size=1, max_size=6, unique=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(connections(scalars), min_size=1, max_size=12), plan_indexes, plan_indexes)
def test_outcomes_are_each_expression_evaluated_on_the_whole_connection(
        conns: list[dict[str, Any]], first: list[int], second: list[int]) -> None:
    """Two plans sharing an evaluator (as plans of one check do), over connections that often
    agree on what an expression reads, and values CEL tells apart where Python does not."""
    evaluator = cel.Evaluator()
    plans = [evaluator.together(tuple(PROGRAMS[i] for i in chosen)) for chosen in (first, second)]
    for conn in conns:
        for plan in plans:
            expected = [whole(program).evaluate(conn) for program in plan.programs]
            assert plan.outcomes(conn) == expected, (conn, [p.source for p in plan.programs])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(connections(st.one_of(scalars, st.just(datetime.date(2026, 1, 1)))), min_size=1,
                max_size=8), plan_indexes)
def test_a_value_the_engine_cannot_take_fails_only_what_reads_it(conns: list[dict[str, Any]],
                                                                 chosen: list[int]) -> None:
    """A date (an unquoted YAML date, which the schema refuses anyway) cannot be a key: those
    connections are evaluated every time, each expression given only what it reads."""
    plan = cel.Evaluator().together(tuple(PROGRAMS[i] for i in chosen))
    for conn in conns:
        assert plan.outcomes(conn) == [program.evaluate(conn) for program in plan.programs]


def test_a_date_in_a_field_not_read_changes_nothing() -> None:
    reads_a, reads_spec = (cel.compile_expression(s) for s in ("spec.a == 1", "size(spec) == 2"))
    assert isinstance(reads_a, cel.Program) and isinstance(reads_spec, cel.Program)
    conn = {"spec": {"a": 1, "when": datetime.date(2026, 1, 1)}}
    plan = cel.Evaluator().together((reads_a, reads_spec))
    outcome_a, outcome_spec = plan.outcomes(conn)
    assert outcome_a is True
    assert isinstance(outcome_spec, str) and "date" in outcome_spec  # never a pass


def test_an_input_seen_before_is_not_evaluated_again(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluated = []
    real = cel._Unknown.evaluate

    def counted(self: Any, variables: Any) -> list[cel.Outcome]:
        evaluated.append(tuple(p.source for p in self.programs))
        return real(self, variables)

    monkeypatch.setattr(cel._Unknown, "evaluate", counted)
    region, name = (p for p in PROGRAMS if p.source in (EXPRESSIONS[0], EXPRESSIONS[1]))
    plan = cel.Evaluator().together((region, name))
    for index in range(50):
        conn = {"name": f"n{index % 20}", "spec": {"default_region": "us-east-1"}, "labels": {}}
        assert plan.outcomes(conn) == [True, True]
    # the region once; each of the 20 names once
    assert evaluated == [(region.source, name.source)] + [(name.source,)] * 19


def test_expressions_together_are_one_program_even_with_a_comment_to_the_end_of_a_line() -> None:
    commented, other = (cel.compile_expression(s) for s in ("spec.n != 3 // the last line", "size(name) > 0"))
    assert isinstance(commented, cel.Program) and isinstance(other, cel.Program)
    together = cel._Unknown((commented, other))
    assert together._together is not None  # the quick path, not each on its own
    assert together.evaluate({"name": "x", "spec": {"n": 1}}) == [True, True]
    assert together.evaluate({"name": "", "spec": {"n": 3}}) == [False, False]


@pytest.mark.parametrize(("source", "values"), [
    # equal in Python (so a careless key would share an outcome), told apart by CEL
    ("spec.n == true", [True, 1, 1.0, False, 0]),
    ('string(spec.n) == "-0"', [0.0, -0.0, 0]),
    ("spec.n == 1", [1, True, 1.0]),
    ('spec.n == ["a", 1]', [["a", 1], ["a", True], ["a", 1.0]]),
    ('spec.n.exists(k, k == "a") && spec.n.a == 1', [{"a": 1}, {"a": True}, {"a": 1.0}]),
])
def test_values_python_holds_equal_are_remembered_apart(source: str, values: list[Any]) -> None:
    program = cel.compile_expression(source)
    assert isinstance(program, cel.Program)
    plan = cel.Evaluator().together((program,))
    for value in values:
        conn = {"name": "x", "spec": {"n": value}, "labels": {}}
        assert plan.outcomes(conn) == [whole(program).evaluate(conn)], value


def test_presence_is_whether_the_field_is_there() -> None:
    program = cel.compile_expression("has(spec.access_key_id)")
    assert isinstance(program, cel.Program)
    plan = cel.Evaluator().together((program,))
    assert plan.outcomes({"spec": {"access_key_id": None}}) == [True]
    assert plan.outcomes({"spec": {"other": "x"}}) == [False]
    assert plan.outcomes({"spec": {}}) == [False]


def test_an_evaluation_over_the_time_bound_is_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    program = cel.compile_expression('spec.default_region.startsWith("eu-")')
    assert isinstance(program, cel.Program)
    plan = cel.Evaluator().together((program,))
    conn = {"spec": {"default_region": "eu-west-1"}}
    monkeypatch.setattr(cel, "MAX_SECONDS", -1.0)  # every evaluation is over it
    (slow,) = plan.outcomes(conn)
    assert isinstance(slow, cel.Overtime) and "over the bound" in slow
    monkeypatch.setattr(cel, "MAX_SECONDS", 0.25)
    assert plan.outcomes(conn) == [True]  # evaluated again, not the remembered error
