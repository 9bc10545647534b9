"""T/CEC 102.4 crypto: ``Data`` encrypted and ``Sig`` computed exactly as the standard's appendices B and C.

* ``Data = Base64(AES-128-CBC(key=DataSecret, iv=DataSecretIV, PKCS#7(utf8(json))))``: the **UTF-8
  bytes** are padded (a character count breaks on CJK text), the IV is the fixed ``DataSecretIV``
  (the protocol's, not ours: it cannot be random per message), standard Base64 with ``=``.
* On input, Base64 with MIME line breaks (some Java peers wrap at 76 characters) is accepted:
  whitespace is stripped before decoding, while the MAC is always computed over ``Data`` exactly as
  it was received (:func:`request_sig` is given the received text, never a re-encoding).
* ``Sig = upper(hex(HMAC-MD5(SigSecret, ...)))``: a request's over ``OperatorID + Data + TimeStamp +
  Seq``, a response's over ``str(Ret) + Msg + Data``; compared with :func:`hmac.compare_digest`.

Secrets are used as their UTF-8 bytes (16 ASCII characters for the AES key and IV), as every
verified peer does; nothing is hex- or Base64-decoded (``tcec-vectors.json`` round-trips through here).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_WHITESPACE = re.compile(r"[\s]+")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


class CodecError(ValueError):
    """``Data`` that does not decode, decrypt or unpad under this key set."""


@dataclass(frozen=True)
class KeySet:
    """The three secrets of one direction of a link (``OperatorSecret`` only buys a token: not here)."""

    data_secret: str = field(repr=False)
    data_iv: str = field(repr=False)
    sig_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("data_secret", "data_iv"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value.encode("utf-8")) != 16:
                raise ValueError(f"{name} must be 16 bytes as UTF-8 (16 ASCII characters), as AES-128 needs")
        if not isinstance(self.sig_secret, str) or not self.sig_secret:
            raise ValueError("sig_secret must be a non-empty string")

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.data_secret.encode("utf-8")), modes.CBC(self.data_iv.encode("utf-8")))

    def encrypt(self, plaintext: bytes) -> str:
        """Base64 (standard, one line) of the AES-128-CBC/PKCS#7 ciphertext of ``plaintext``."""
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plaintext) + padder.finalize()
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode("ascii")

    def decrypt(self, data: str) -> bytes:
        """The plaintext bytes of ``data`` (whitespace, such as MIME line breaks, ignored)."""
        compact = _WHITESPACE.sub("", data)
        if not compact or not _B64.match(compact):
            raise CodecError("Data is not Base64")
        try:
            raw = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError("Data is not Base64") from None
        if not raw or len(raw) % 16:
            raise CodecError(f"Data is {len(raw)} bytes, not a whole number of AES blocks")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(raw) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError:
            raise CodecError("Data does not decrypt under this link's DataSecret (bad padding)") from None

    def sign(self, *parts: str) -> str:
        """``upper(hex(HMAC-MD5(SigSecret, "".join(parts))))``."""
        message = "".join(parts).encode("utf-8")
        return hmac.new(self.sig_secret.encode("utf-8"), message, hashlib.md5).hexdigest().upper()

    def request_sig(self, operator_id: str, data: str, timestamp: str, seq: str) -> str:
        return self.sign(operator_id, data, timestamp, seq)

    def response_sig(self, ret: int, msg: str, data: str) -> str:
        return self.sign(str(ret), msg, data)

    def verify_request(self, operator_id: str, data: str, timestamp: str, seq: str, sig: str) -> bool:
        return _same(self.request_sig(operator_id, data, timestamp, seq), sig)

    def verify_response(self, ret: int, msg: str, data: str, sig: str) -> bool:
        return _same(self.response_sig(ret, msg, data), sig)


def _same(expected: str, given: str) -> bool:
    """Constant time; a lower-case hex Sig from a peer is accepted (the digest is the same)."""
    return hmac.compare_digest(expected.encode("ascii"), given.upper().encode("ascii", "replace"))
