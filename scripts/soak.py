"""The soak: many orders through a failing CRM sandbox and a daemon killed at random.

The scenario of `tests/test_faults.py` at scale (see `tests/fault_scenario.py`):
a scratch shop database of its own (`ocsync_soak_<hex>`, dropped at the end),
seeded random orders, the KeepinCRM sandbox served in this process with 20%
5xx, 5% timeouts after storing, 429 bursts and dropped connections, and
`ocsync run` killed with SIGKILL at random moments and started again until
every order has a deal. Once half of them have one, a tenth of the orders gain
a line, so that deals are corrected under the same faults. Then the faults
stop, `ocsync run --once` settles the rest, and the CRM is read.

It prints one line (orders, faults injected, restarts, duplicates, lost) and
exits 1 when any order has no deal, more than one, or a wrong one; 2 when a
daemon died on its own, which stops the soak at once. The logs of every daemon
run, the event log and the sandbox's store stay in the work folder when the
soak fails, or always with `--workdir`.

    ./scripts/soak.sh --orders 1000 --seed 7 --restarts 200
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.logs import configure_logging  # noqa: E402
from tests.fault_scenario import (  # noqa: E402
    Outcome,
    Scenario,
    ScenarioError,
    run_scenario,
    scratch_shop,
)


def main() -> int:
    args = _parser().parse_args()
    # The in-process sandbox and checker stay quiet; the daemons log to files.
    configure_logging(level="WARNING")
    scenario = Scenario(
        orders=args.orders,
        seed=args.seed,
        restarts=args.restarts,
        kill_after=(1.0, args.kill_within),
        change_share=args.change_share,
        last_run_seconds=60.0,
        # A thousand orders may be left for the runs with faults off.
        settle_seconds=max(120.0, args.orders * 1.0),
    )
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ocsync-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    try:
        outcome = asyncio.run(_soak(scenario, workdir))
    except ScenarioError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        print(f"soak: logs, event log and CRM store in {workdir}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started

    print(outcome.line())
    if not outcome.ok:
        # The line again on stdout above; the details and stories here.
        print(outcome.report().partition("\n")[2], file=sys.stderr)
    print(
        f"soak: {elapsed:.0f}s; {outcome.changed} orders changed while syncing;"
        f" {outcome.left_to_settle} had no deal when the faults stopped;"
        f" `ocsync run --once` exited {outcome.settle_codes}",
        file=sys.stderr,
    )
    if keep or not outcome.ok:
        print(f"soak: logs, event log and CRM store in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if outcome.ok and outcome.settle_codes[-1:] == [0] else 1


async def _soak(scenario: Scenario, workdir: Path) -> Outcome:
    async with scratch_shop() as shop:
        return await run_scenario(shop, workdir, scenario)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soak",
        description="Orders through a faulty CRM sandbox and a daemon killed at"
        " random; exit 1 on a duplicate, lost or wrong deal.",
    )
    parser.add_argument("--orders", type=int, default=1000, help="default 1000")
    parser.add_argument(
        "--seed", type=int, default=1, help="seeds the orders, faults and kills"
    )
    parser.add_argument(
        "--restarts", type=int, default=200, help="kills of the daemon, at most"
    )
    parser.add_argument(
        "--kill-within",
        type=float,
        default=8.0,
        metavar="SECONDS",
        help="a kill comes 1 to this many seconds after the daemon starts",
    )
    parser.add_argument(
        "--change-share",
        type=float,
        default=0.1,
        metavar="SHARE",
        help="orders that gain a line once half have a deal (default 0.1)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep logs, event log and CRM store here"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
