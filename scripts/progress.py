"""A run's dev-WER trajectory from its metrics.jsonl, for results notes while it trains.

    python scripts/progress.py WORKDIR [WORKDIR ...]

Prints, per evaluation record: step, wall hours of the run so far (every process, work lost to
a crash included), resumes, mean training loss since the previous record, dev WER in %.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training import metrics  # noqa: E402


def trajectory(workdir: str | pathlib.Path) -> str:
    """The table of `workdir`'s evaluation records (see the module docstring)."""
    lines = [f"# {workdir}", f"{'step':>6} {'wall h':>7} {'resumes':>7} {'loss':>8} {'dev WER %':>9}"]
    for r in metrics.read(workdir):
        if r.get("dev_wer") is not None:
            lines.append(f"{r['step']:>6} {r.get('wall_s', float('nan')) / 3600:>7.2f} {r.get('resumes', 0):>7} "
                         f"{r['loss']:>8.2f} {100 * r['dev_wer']:>9.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("\n".join(trajectory(workdir) for workdir in sys.argv[1:]))
