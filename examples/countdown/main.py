"""Counts down from `seconds`, one line a second; exits cleanly on SIGTERM."""

import json
import os
import signal
import sys
import time


def on_term(signum, frame):
    print("Interrupted: stopping the countdown.", flush=True)
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, on_term)

params = json.loads(os.environ.get("MINITOWER_INPUT") or "{}")
try:
    seconds = int(params.get("seconds", 10))
except (TypeError, ValueError):
    print(f"seconds must be a whole number, got {params.get('seconds')!r}", file=sys.stderr)
    sys.exit(2)

for left in range(seconds, 0, -1):
    print(f"{left}...", flush=True)
    time.sleep(1)
print("Liftoff!", flush=True)
