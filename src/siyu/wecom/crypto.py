"""WeCom callback security (WXBizMsgCrypt, developer doc 91144), written from the spec.

- ``AESKey = base64decode(EncodingAESKey + "=")`` (32 bytes); AES-256-CBC with
  IV = AESKey[:16]; PKCS#7 padding to a multiple of **32** bytes.
- Plaintext = 16 random bytes + 4-byte big-endian length of the message in bytes + message
  + receiveid (the corpid for a self-built app, the suiteid for third-party callbacks).
- ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt])))`` in hex.

Errors carry WeCom's library codes (-40001 bad signature … -40008 illegal buffer) so logs
read like WeCom's own.

    crypt = WeComCrypt(token, encoding_aes_key, corp_id)
    echo = crypt.verify_url(msg_signature, timestamp, nonce, echostr)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from siyu.core.errors import Invalid

BLOCK = 32
_KEY_RE = re.compile(r"^[A-Za-z0-9]{43}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9]{1,32}$")

WECOM_ERRORS = {
    "wecom.bad_signature": -40001,
    "wecom.parse_failed": -40002,
    "wecom.bad_aes_key": -40004,
    "wecom.receiveid_mismatch": -40005,
    "wecom.decrypt_failed": -40007,
    "wecom.bad_buffer": -40008,
}


class CallbackError(Invalid):
    """A callback that fails WeCom's checks; ``wecom_code`` is the library's number."""

    @property
    def wecom_code(self) -> int:
        return WECOM_ERRORS.get(self.code, -40002)


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    parts = sorted([token, timestamp, nonce, encrypted])
    return hashlib.sha1("".join(parts).encode(), usedforsecurity=False).hexdigest()


def pkcs7_pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK
    return data + bytes([n]) * n


def pkcs7_unpad(data: bytes) -> bytes:
    if not data:
        raise CallbackError("wecom.bad_buffer")
    n = data[-1]
    if not 1 <= n <= BLOCK or data[-n:] != bytes([n]) * n:
        raise CallbackError("wecom.bad_buffer")
    return data[:-n]


def parse_xml(text: str | bytes) -> dict[str, str]:
    """Flat ``<xml>`` into a dict; refuses DTDs and entities (no XXE, no billion laughs)."""
    raw = text.encode() if isinstance(text, str) else text
    if b"<!DOCTYPE" in raw.upper() or b"<!ENTITY" in raw.upper():
        raise CallbackError("wecom.parse_failed")
    try:
        root = ET.fromstring(raw)  # noqa: S314 - DTD/entities refused above
    except ET.ParseError as exc:
        raise CallbackError("wecom.parse_failed") from exc
    return {child.tag: (child.text or "") for child in root}


@dataclass(frozen=True)
class WeComCrypt:
    token: str
    encoding_aes_key: str
    receive_id: str

    def __post_init__(self) -> None:
        if not _TOKEN_RE.match(self.token):
            raise CallbackError("wecom.bad_token")
        if not _KEY_RE.match(self.encoding_aes_key):
            raise CallbackError("wecom.bad_aes_key")

    @property
    def key(self) -> bytes:
        return base64.b64decode(self.encoding_aes_key + "=")

    # ------------------------------------------------------------------ decrypt

    def check_signature(
        self, msg_signature: str, timestamp: str, nonce: str, encrypted: str
    ) -> None:
        expected = signature(self.token, timestamp, nonce, encrypted)
        if not hmac.compare_digest(expected, (msg_signature or "").lower()):
            raise CallbackError("wecom.bad_signature")

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CallbackError("wecom.decrypt_failed") from exc
        if not data or len(data) % 16:
            raise CallbackError("wecom.decrypt_failed")
        key = self.key
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        plain = pkcs7_unpad(decryptor.update(data) + decryptor.finalize())
        if len(plain) < 20:
            raise CallbackError("wecom.bad_buffer")
        (length,) = struct.unpack(">I", plain[16:20])
        if 20 + length > len(plain):
            raise CallbackError("wecom.bad_buffer")
        message = plain[20 : 20 + length]
        receive_id = plain[20 + length :].decode("utf-8", errors="replace")
        if receive_id != self.receive_id:
            raise CallbackError("wecom.receiveid_mismatch")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CallbackError("wecom.bad_buffer") from exc

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """URL verification (GET): check, decrypt, answer the plaintext as is."""
        self.check_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(
        self, msg_signature: str, timestamp: str, nonce: str, body: bytes | str
    ) -> dict[str, str]:
        """A POSTed callback: the outer ``<xml><Encrypt/>…`` checked and opened, the inner
        XML parsed into a dict."""
        outer = parse_xml(body)
        encrypted = outer.get("Encrypt", "")
        if not encrypted:
            raise CallbackError("wecom.parse_failed")
        self.check_signature(msg_signature, timestamp, nonce, encrypted)
        return parse_xml(self.decrypt(encrypted))

    # ------------------------------------------------------------------ encrypt

    def encrypt(self, message: str, random16: bytes | None = None) -> str:
        raw = message.encode()
        plain = (random16 or os.urandom(16)) + struct.pack(">I", len(raw)) + raw
        plain += self.receive_id.encode()
        key = self.key
        encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
        return base64.b64encode(encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()).decode()

    def encrypt_reply(
        self, message: str, timestamp: str | None = None, nonce: str | None = None
    ) -> str:
        """A passive reply: ``<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>``."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or str(int.from_bytes(os.urandom(4), "big"))
        encrypted = self.encrypt(message)
        sig = signature(self.token, timestamp, nonce, encrypted)
        return (
            f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>"
            f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
        )
