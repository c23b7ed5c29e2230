"""STAND-IN engine report (lab only): prints what the stand-in server sees.

Workers serve no HTTP, so the verification suite runs
`docker exec spark-serving python3 /standin/report.py` there. The server
(PID 1 of the container) writes its state every few seconds; this prints it,
with its age, so a check sees the engine process's own env, limits and mounts
rather than those of this exec'd process.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import STATE_FILE  # noqa: E402


def main() -> int:
    try:
        with open(STATE_FILE) as state_file:
            state = json.load(state_file)
    except (OSError, ValueError) as error:
        print(f"stand-in report: no state from the server yet ({error})", file=sys.stderr)
        return 1
    state["state_age_s"] = round(time.time() - state.get("written_at", 0), 1)
    json.dump(state, sys.stdout, indent=2, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
