"""T/CEC crypto against the verified vectors (tests/data/tcec-vectors.json, a copy of the reference's),
and the traps of note A.3: CJK text, MIME-wrapped Base64 with the MAC over the received text, PKCS#7
over bytes, Data that does not decrypt."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.interconnect.tcec import wire
from adapters.interconnect.tcec.codec import CodecError, KeySet

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "data" / "tcec-vectors.json").read_text())["vectors"]
KEYS = KeySet("1234567890abcdef", "1234567890abcdef", "1234567890abcdef")


def keys_of(vector: dict[str, Any]) -> KeySet:
    return KeySet(vector["key"], vector["iv"], vector["sig_key"])


def test_the_vector_file_holds_the_standard_appendix_and_a_cjk_vector() -> None:
    assert {v["id"] for v in VECTORS} >= {"tcec-102.4-2016-appendix-request", "self-generated-utf8"}
    assert all(v["verified"] for v in VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_every_vector_encrypts_to_its_ciphertext_and_back(vector: dict[str, Any]) -> None:
    keys = keys_of(vector)
    assert keys.encrypt(vector["plaintext"].encode("utf-8")) == vector["ciphertext_b64"]
    assert keys.decrypt(vector["ciphertext_b64"]).decode("utf-8") == vector["plaintext"]
    assert vector["envelope"]["Data"] == vector["ciphertext_b64"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["id"])
def test_every_vector_signs_to_its_sig(vector: dict[str, Any]) -> None:
    keys, envelope = keys_of(vector), vector["envelope"]
    parts = (envelope["OperatorID"], envelope["Data"], envelope["TimeStamp"], envelope["Seq"])
    assert "".join(parts) == vector["sig_input"]
    assert keys.request_sig(*parts) == vector["sig"]
    assert keys.verify_request(*parts, vector["sig"])
    assert keys.verify_request(*parts, vector["sig"].lower())  # the same digest in lower case
    assert not keys.verify_request(*parts, "0" * 32)
    if "Sig" in envelope:
        assert envelope["Sig"] == vector["sig"]


def test_cjk_text_round_trips_and_pkcs7_pads_the_utf8_bytes_not_the_characters() -> None:
    text = {"StationName": "测试站点（北京）", "Remark": "充电站🚗"}
    raw = wire.dumps(text).encode("utf-8")
    data = KEYS.encrypt(raw)
    ciphertext = base64.b64decode(data)
    assert len(ciphertext) == (len(raw) // 16 + 1) * 16  # padded by byte count
    assert len(wire.dumps(text)) % 16 != len(raw) % 16  # (character and byte counts differ here)
    assert wire.loads(KEYS.decrypt(data)) == text
    decryptor = Cipher(algorithms.AES(b"1234567890abcdef"), modes.CBC(b"1234567890abcdef")).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    pad = padded[-1]
    assert padded[-pad:] == bytes([pad]) * pad and padded[:-pad] == raw


def test_mime_wrapped_base64_is_accepted_and_the_mac_is_over_the_text_as_received() -> None:
    vector = VECTORS[0]
    flat = vector["ciphertext_b64"]
    wrapped = "\r\n".join(flat[i:i + 76] for i in range(0, len(flat), 76))
    assert "\n" in wrapped
    assert KEYS.decrypt(wrapped).decode() == vector["plaintext"]
    envelope = vector["envelope"]
    sig_wrapped = KEYS.request_sig(envelope["OperatorID"], wrapped, envelope["TimeStamp"], envelope["Seq"])
    assert sig_wrapped != vector["sig"]  # the MAC covers the line breaks the peer sent
    assert KEYS.verify_request(envelope["OperatorID"], wrapped, envelope["TimeStamp"], envelope["Seq"], sig_wrapped)
    assert not KEYS.verify_request(envelope["OperatorID"], wrapped, envelope["TimeStamp"], envelope["Seq"],
                                   vector["sig"])


def test_the_response_sig_is_over_ret_msg_data() -> None:
    sig = KEYS.response_sig(0, "", VECTORS[1]["ciphertext_b64"])
    assert sig == KEYS.sign("0", "", VECTORS[1]["ciphertext_b64"])
    assert KEYS.verify_response(0, "", VECTORS[1]["ciphertext_b64"], sig)
    assert not KEYS.verify_response(4004, "", VECTORS[1]["ciphertext_b64"], sig)
    assert KEYS.response_sig(4001, "签名错误", "") != KEYS.response_sig(4001, "", "")


@pytest.mark.parametrize("data, why", [
    ("", "not Base64"),
    ("not base64 at all!", "not Base64"),
    (base64.b64encode(b"short").decode(), "whole number of AES blocks"),
    (base64.b64encode(b"\x00" * 32).decode(), "does not decrypt"),
])
def test_data_that_does_not_decrypt_is_refused_with_a_reason(data: str, why: str) -> None:
    with pytest.raises(CodecError, match=why):
        KEYS.decrypt(data)


def test_data_under_another_key_does_not_decrypt_to_the_plaintext() -> None:
    other = KeySet("fedcba0987654321", "1234567890abcdef", "x")
    data = other.encrypt(b'{"a":1}')
    try:
        assert KEYS.decrypt(data) != b'{"a":1}'
    except CodecError:
        pass  # usually: the padding does not check out


def test_key_sets_need_16_byte_aes_keys_and_a_signing_secret() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        KeySet("short", "1234567890abcdef", "s")
    with pytest.raises(ValueError, match="16 bytes"):
        KeySet("1234567890abcdef", "测试测试测试测试", "s")  # 16 characters, 48 bytes
    with pytest.raises(ValueError, match="sig_secret"):
        KeySet("1234567890abcdef", "1234567890abcdef", "")
    assert "1234567890abcdef" not in repr(KEYS)
