"""The installed package carries its type marker and version."""

from __future__ import annotations

from importlib import metadata, resources

import minitower


def test_typed_and_versioned() -> None:
    assert resources.files("minitower").joinpath("py.typed").is_file()
    assert minitower.__version__ == "0.1.0"
    try:
        assert metadata.version("minitower") == "0.1.0"
    except metadata.PackageNotFoundError:  # run from the source tree
        pass
