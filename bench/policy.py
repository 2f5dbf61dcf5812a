"""validate with an organisation policy, next to the same run without one.

    python bench/policy.py [-n 1000] [--runs 7]

The policy has 20 rules, 5 of them CEL expressions; most match every connection (so nearly
every rule is evaluated on every file). Runs alternate between the two setups (fresh processes,
as a user runs them) so that a busy machine slows both alike; the median of each is reported,
wall and CPU time (on a shared machine the CPU time is the steady figure). Target: the policy
costs at most 10%.

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
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import connection_text, connsync_argv, timed


def cpu_seconds(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> float:
    """User + system CPU of one run: on a shared machine, far steadier than wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, check=False)
    if result.returncode != 0:
        sys.exit(f"validate exited {result.returncode}:\n{result.stdout.decode()[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

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
    parser.add_argument("--runs", type=int, default=7, help="runs per setup; the median is reported")
    options = parser.parse_args()

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
        wall: dict[str, list[float]] = {"without policy": [], "with policy": []}
        cpu: dict[str, list[float]] = {"without policy": [], "with policy": []}
        for _ in range(options.runs):
            for name, argv in (("without policy", without), ("with policy", with_policy)):
                wall[name].append(timed(argv, cwd=work, env=env)[0])
                cpu[name].append(cpu_seconds(argv, cwd=work, env=env))

    print(f"validate, {options.n} files, 20 rules (5 CEL), median of {options.runs} alternating runs "
          "(fresh processes)")
    print(f"{'setup':<18}{'wall s':>10}{'CPU s':>10}{'files/s':>12}")
    for name in wall:
        seconds = statistics.median(wall[name])
        print(f"{name:<18}{seconds:>10.3f}{statistics.median(cpu[name]):>10.3f}{options.n / seconds:>12.0f}")
    for what, values in (("wall", wall), ("CPU", cpu)):
        overhead = statistics.median(values["with policy"]) / statistics.median(values["without policy"]) - 1
        print(f"the policy costs {overhead:+.1%} {what} time (target: at most +10%)")
    print("no file was decrypted (no key exists, and sops is /bin/false)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
