"""The store contract, run against every built-in backend: SQLite and a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connsync.testing.store_contract import StoreContract
from tests.baoserver import BaoServer
from tests.conftest import MotoServer
from tests.pgserver import PgServer


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def new_store_url(self, tmp_path: Path) -> Callable[[], str]:
        return lambda: f"sqlite:{tmp_path / uuid.uuid4().hex[:8] / 'store.db'}"


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def new_store_url(self, pg_server: PgServer) -> Iterator[Callable[[], str]]:
        yield lambda: pg_server.url(schema=f"t_{uuid.uuid4().hex[:12]}")


class TestSecretsManagerStore(StoreContract):
    """The awssm store against a moto server on loopback (a lease of 3 s keeps the lock tests short)."""

    @pytest.fixture
    def new_store_url(self, aws_endpoint: MotoServer) -> Callable[[], str]:
        return lambda: (f"awssm://us-east-1/t{uuid.uuid4().hex[:10]}/connections"
                        f"?endpoint_url={aws_endpoint.url}&lock_lease_seconds=3")


class TestVaultStore(StoreContract):
    """The Vault store against a real OpenBao dev server over HTTPS (a lease of 8 s keeps the lock
    tests short)."""

    @pytest.fixture
    def new_store_url(self, vault: BaoServer) -> Callable[[], str]:
        return lambda: vault.url(f"secret/t{uuid.uuid4().hex[:10]}", lock_lease_seconds="8")
