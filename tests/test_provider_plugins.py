"""Providers registered by other distributions under the ``connsync.providers`` entry points."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connsync import providers
from connsync.providers.aws import AwsProvider


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed distribution (a .dist-info on sys.path) registering ``custom`` and ``aws``."""
    (tmp_path / "connsync_custom.py").write_text(
        "from connsync.providers import Provider\n\n"
        "class Custom(Provider):\n"
        "    def __init__(self) -> None:\n"
        "        super().__init__('custom')\n")
    info = tmp_path / "connsync_custom-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: connsync-custom\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[connsync.providers]\ncustom = connsync_custom:Custom\naws = connsync_custom:Custom\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    providers._registered.cache_clear()
    yield
    providers._registered.cache_clear()


@pytest.mark.usefixtures("plugin")
def test_a_plugin_provider_is_found_and_a_built_in_name_stays_built_in() -> None:
    assert isinstance(providers.get("aws"), AwsProvider)
    assert not providers._registered().scanned, "a built-in name needs no entry-point scan"  # type: ignore[attr-defined]
    custom = providers.get("custom")
    assert type(custom).__name__ == "Custom" and custom.name == "custom"
    assert isinstance(providers.get("aws"), AwsProvider)  # the plugin's "aws" does not replace it
    unknown = providers.get("nobody")
    assert type(unknown) is providers.Provider and unknown.name == "nobody"
