"""A tiny library installed through requirements.txt."""

__version__ = "0.1.0"


def greet(name: str) -> str:
    return f"Hello, {name}! (from greeting {__version__})"
