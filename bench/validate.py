"""validate at scale, next to check-jsonschema on the same files and schema.

    python bench/validate.py [-n 1000] [--runs 5]

Both tools run as a user runs them: a fresh process over the whole directory.
check-jsonschema gets the same envelope schema (its $refs resolve to the
provider schemas beside it) and does schema validation only, while connsync
also runs its rules, so the comparison flatters the peer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, connection_text, connsync_argv, median_of


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="number of connection files")
    parser.add_argument("--runs", type=int, default=5, help="runs per tool; the median is reported")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="connsync-bench-") as temp:
        work = Path(temp)
        folder = work / "connections"
        folder.mkdir()
        for index in range(options.n):
            (folder / f"aws-{index:05d}.yaml").write_text(connection_text(index))
        files = sorted(str(p) for p in folder.iterdir())

        ours = median_of(options.runs, connsync_argv("validate", str(folder)), cwd=work)
        peer_bin = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
        peer = median_of(options.runs, [peer_bin, "--schemafile",
                                        str(REPO / "schemas/connection.schema.json"), *files], cwd=work)

    print(f"validate, {options.n} files, median of {options.runs} runs (wall time, fresh process)")
    print(f"{'tool':<18}{'seconds':>10}{'files/s':>12}")
    for name, seconds in (("connsync", ours), ("check-jsonschema", peer)):
        print(f"{name:<18}{seconds:>10.3f}{options.n / seconds:>12.0f}")
    print(f"connsync is {peer / ours:.1f}x faster than check-jsonschema "
          f"(target: under 1.5 s for 1,000 files, and at least 3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
