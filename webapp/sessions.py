"""Flask's signed cookie session, with the signing work done once per secret key.

Flask builds an itsdangerous serializer for every request, and itsdangerous derives the signing key
from the secret anew for every signature, through Python's pure-Python HMAC (Flask names SHA-1 by a
wrapper function, which `hmac` does not recognise as OpenSSL's). A signed-in request opens and saves
its session, so that was four HMACs in Python per request for two that are needed. Here the serializer
is kept per secret key (and fallback keys), the derived keys are kept, and SHA-1 is OpenSSL's: the
cookie's format, salt, key derivation and signature are Flask's, so cookies signed before still work.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import want_bytes


@functools.lru_cache(maxsize=16)
def _derived_key(secret_key: bytes, salt: bytes, digest_method) -> bytes:
    return hmac.new(secret_key, salt, digest_method).digest()


class _Signer(TimestampSigner):
    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if self.key_derivation != "hmac":
            return super().derive_key(secret_key)
        key = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        return _derived_key(key, self.salt, self.digest_method)


class SessionInterface(SecureCookieSessionInterface):
    digest_method = staticmethod(hashlib.sha1)

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        return self._serializer(app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))

    @functools.lru_cache(maxsize=4)  # noqa: B019 - one interface per app, a few keys in its life
    def _serializer(self, secret_key: str | bytes, fallbacks: tuple) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer([*fallbacks, secret_key], salt=self.salt, serializer=self.serializer,
                                      signer=_Signer, signer_kwargs={"key_derivation": self.key_derivation,
                                                                     "digest_method": self.digest_method})
