"""Prints a greeting for the `name` input parameter."""

import json
import os

params = json.loads(os.environ.get("MINITOWER_INPUT") or "{}")
name = params.get("name") or "World"
print(f"Hello, {name}!")
