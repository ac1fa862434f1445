"""Greets with a helper that comes from an installed dependency."""

import json
import os

from greeting import greet

params = json.loads(os.environ.get("MINITOWER_INPUT") or "{}")
print(greet(params.get("name") or "World"))
