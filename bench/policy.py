"""validate with an organisation policy, next to the same run without one.

    python bench/policy.py [-n 1000] [--runs 21]

The policy has 20 rules, 5 of them CEL expressions; most match every connection (so nearly
every rule is evaluated on every file). The two setups run in pairs, fresh processes as a user
runs them, the order swapped from one pair to the next; each run gives its wall and CPU time.
Other work on a shared machine only ever adds time, in bursts, so two figures are given: the
median of each pair's ratio (both runs of a pair see about the same machine) and the ratio of the
two setups' 20th percentiles (runs that no burst hit). Target: the policy costs at most 10%.
connsync is byte-compiled first, as an installed wheel is.

Policy checks never decrypt: the files' secrets are not decryptable (no key exists anywhere), sops
is pointed at a program that fails, and validate must still pass.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import byte_compile, connection_text, connsync_argv


def measured(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"validate exited {result.returncode}:\n{result.stdout.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

# Regexes belong in match.names / require.name (RE2, compiled once per run): the cel crate compiles
# the pattern of a CEL matches() at every evaluation (~35 us each), so the CEL rules here test
# prefixes, sizes, membership and presence, as policies usually do.
CEL = [
    'spec.default_region.startsWith("us-")',
    "size(name) < 64",
    'labels.team in ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]',
    'size(spec.account_id) == 12 && spec.account_id != "000000000000"',
    '!has(spec.secret_access_key) && has(spec.access_key_id)',
]


def policy_text() -> str:
    accounts = ", ".join(f'"{100000000000 + i}"' for i in range(10))
    rules = [f"  - id: cel-{i}\n    match: {{providers: [aws]}}\n    require: {{expression: '{e}'}}\n"
             for i, e in enumerate(CEL)]
    plain = [
        "  - id: accounts\n    match: {names: '^AWS Account 0000[0-9]$'}\n"
        f"    require: {{accounts: [{accounts}]}}\n",
        "  - id: regions\n    require: {regions: [us-east-1, eu-west-1]}\n",
        "  - id: team-label\n    require: {labels: [team]}\n",
        "  - id: name-style\n    require: {name: '^AWS Account [0-9]+$'}\n",
        "  - id: owner\n    severity: warning\n    match: {names: '^AWS Account 0000[0-4]$'}\n"
        "    require: {labels: [owner]}\n",
    ]
    plain += [f"  - id: region-{i}\n    match: {{providers: [aws], names: '^AWS'}}\n"
              f"    require: {{regions: [us-east-1, us-west-{i % 2 + 1}]}}\n" for i in range(5)]
    plain += [f"  - id: label-{i}\n    match: {{labels: {{team: t{i}}}}}\n    require: {{labels: [team]}}\n"
              for i in range(5)]
    assert len(rules) + len(plain) == 20
    return "apiVersion: connsync/v1\nkind: Policy\nmetadata: {name: bench}\nrules:\n" + "".join(rules + plain)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="number of connection files")
    parser.add_argument("--runs", type=int, default=21, help="pairs of runs")
    options = parser.parse_args()
    if options.runs < 2:
        parser.error("--runs: at least 2 pairs (the figures are medians and percentiles)")

    with tempfile.TemporaryDirectory(prefix="connsync-bench-") as temp:
        work = Path(temp)
        (work / "connections").mkdir()
        for index in range(options.n):
            (work / "connections" / f"aws-{index:05d}.yaml").write_text(connection_text(index))
        (work / "policies").mkdir()
        (work / "policies/bench.yaml").write_text(policy_text())
        (work / "none").mkdir()
        # Any attempt to decrypt would fail the run: no key, and a sops that exits 1.
        env = {"CONNSYNC_SOPS": "/bin/false", "SOPS_AGE_KEY_FILE": str(work / "no-such-key"),
               "SOPS_AGE_KEY": ""}
        with_policy = connsync_argv("validate", "--policy", "policies")
        without = connsync_argv("validate", "--policy", "none")
        byte_compile()
        setups = {"without policy": without, "with policy": with_policy}
        for argv in setups.values():  # one of each first, not measured: files and libraries read in
            measured(argv, cwd=work, env=env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in setups}
        for run in range(options.runs):
            for name in sorted(setups, reverse=run % 2 == 1):
                times[name].append(measured(setups[name], cwd=work, env=env))

    print(f"validate, {options.n} files, 20 rules (5 CEL), {options.runs} pairs of runs "
          "(fresh processes, order swapped each pair)")
    print(f"{'setup':<18}{'wall s':>10}{'CPU s':>10}{'files/s':>10}{'p20 wall':>10}{'p20 CPU':>10}")
    for name, pairs in times.items():
        wall, cpu = [w for w, _ in pairs], [c for _, c in pairs]
        print(f"{name:<18}{statistics.median(wall):>10.3f}{statistics.median(cpu):>10.3f}"
              f"{options.n / statistics.median(wall):>10.0f}{_p20(wall):>10.3f}{_p20(cpu):>10.3f}")
    for index, what in enumerate(("wall", "CPU")):
        with_, without_ = ([run[index] for run in times[name]] for name in ("with policy", "without policy"))
        ratios = [w / o for w, o in zip(with_, without_, strict=True)]
        low, _, high = statistics.quantiles(ratios, n=4)
        print(f"the policy costs {statistics.median(ratios) - 1:+.1%} {what} time: median of the pairs "
              f"(quartiles {low - 1:+.1%} .. {high - 1:+.1%}); {_p20(with_) / _p20(without_) - 1:+.1%} "
              "between the p20s; target: at most +10%")
    print("no file was decrypted (no key exists, and sops is /bin/false)")
    return 0


def _p20(values: list[float]) -> float:
    """The 20th percentile: the work itself, less the bursts of other work on a shared machine."""
    return statistics.quantiles(values, n=5)[0]


if __name__ == "__main__":
    raise SystemExit(main())
