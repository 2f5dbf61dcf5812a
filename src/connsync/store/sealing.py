"""What every store seals with its key: secret values, and the salt of the fingerprints.

The salt is sealed too: with only a copy of the database, a guessed secret
cannot be confirmed against its fingerprint offline. Opening the salt is also
the check that the key is the store's own.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connsync.errors import StoreError
from connsync.model import Secret

KEY_VARIABLE = "CONNSYNC_STORE_KEY"
_SALT_AAD = b"connsync store salt"
NEW_KEY_HINT = ("make one with: python -c "
                "'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'")


def decode_key(encoded: str, source: str) -> bytes:
    """32 bytes from their base64 text, or one clear error naming where the text came from."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise StoreError(f"the store key from {source} is not 32 bytes of base64", hint=NEW_KEY_HINT)
    return key


def key_from_environment(where: str) -> bytes:
    """CONNSYNC_STORE_KEY, required for stores that have no place for a key file (``where``)."""
    encoded = os.environ.get(KEY_VARIABLE)
    if not encoded:
        raise StoreError(
            f"{KEY_VARIABLE} is not set; {where} needs it to seal and open secrets",
            hint=f"every runner and laptop that uses this store needs the same key; {NEW_KEY_HINT}",
        )
    return decode_key(encoded, KEY_VARIABLE)


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


class Sealer:
    """AES-256-GCM under the store key; each blob is bound to its record by associated data."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plain: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """The plaintext; InvalidTag when the key or the associated data is not the blob's."""
        return self._aead.decrypt(blob[:12], blob[12:], aad)

    def seal_secrets(self, values: Mapping[str, Secret], aad: bytes) -> bytes:
        return self.seal(json.dumps({k: v.reveal() for k, v in values.items()}).encode(), aad)

    def open_secrets(self, blob: bytes, aad: bytes, name: str) -> dict[str, Secret]:
        try:
            plain = self.open(blob, aad)
        except InvalidTag:
            raise StoreError(f"the secrets of {name!r} do not open under this store key") from None
        return {k: Secret(v) for k, v in json.loads(plain).items()}

    def new_sealed_salt(self) -> bytes:
        return self.seal_salt(secrets.token_bytes(32))

    def seal_salt(self, salt: bytes) -> bytes:
        return self.seal(salt, _SALT_AAD)

    def open_salt(self, sealed: bytes, store: str, key_source: str) -> bytes:
        """The fingerprint salt; a key that does not open it is the wrong key for this store."""
        try:
            return self.open(sealed, _SALT_AAD)
        except InvalidTag:
            raise StoreError(
                f"the store key does not open {store}",
                hint=f"set {key_source} to the key this store was created with",
            ) from None
