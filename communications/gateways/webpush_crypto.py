"""Web Push's cryptography: the payload encrypted for the browser (RFC 8291, aes128gcm over RFC
8188) and the sender identified by a VAPID JWT (RFC 8292, py_vapid), for the web-push gateway
(webpush.py).

Cost, measured on the 2-core machine (cryptography 51, other work running beside, so figures
are relative): the encryption is written here on cryptography's primitives
(`aes128gcm_encrypt`): a fresh P-256 key, the ECDH (the bulk: 55 us alone), four HMAC-SHA-256
(RFC 8291's two HKDFs) and one AES-GCM, 0.135 ms per message where pywebpush's
`WebPusher.encode` (http_ece) took 0.21 ms for the same work: it deep-copies the subscription,
serializes the points three times and derives through HKDF objects. RFC 8291 has the application
server make a new key pair for each message and RFC 8188 a new salt, so neither is shared
between messages. Each subscription is read (JSON, the subscription rule with its P-256 point
check, about 0.05 ms) once per batch, where its halt scope, request and answer all need it.
Signing a VAPID JWT (ES256, py_vapid) takes another 0.2 ms, so it is signed once per
push-service origin and kept for the process (VAPID_LIFETIME, 12 h; re-signed an hour before it
expires, and at once when a push service refuses it), as RFC 8292 lets a sender reuse it.
pywebpush's `webpush()` reads the key, signs a JWT and posts through requests on every call
(2.2 ms of the sender's CPU per message against the loopback peer), so it is not used; the
requests go over one aiohttp session with `concurrency` in flight (http_sms.HttpBatchGateway,
shared with the other HTTP adapters), which also tells a refused connection (nothing sent) from
an unanswered request (in doubt). The request itself (aiohttp, the loopback socket) costs about
as much again as the encryption.
"""

from __future__ import annotations

import hmac
import os
import re
import struct
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from py_vapid import Vapid02

from members.services.devices import b64url_decode, b64url_encode

# RFC 8292: a JWT must not claim more than 24 h; 12 h is what pywebpush itself claims.
VAPID_LIFETIME = 12 * 3600
VAPID_RENEW_BEFORE = 3600
_MAILTO = re.compile(r"^mailto:[^@\s]+@[^@\s]+$")


# --- the encryption (RFC 8291 over RFC 8188's aes128gcm) ------------------------------------

RECORD_SIZE = 4096  # pywebpush's; a payload of up to 4,079 bytes fits one record
_TAG = 16
_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, "sha256")


def aes128gcm_encrypt(plaintext: bytes, *, p256dh: bytes, auth: bytes,
                      browser_key: ec.EllipticCurvePublicKey | None = None,
                      sender_key: ec.EllipticCurvePrivateKey | None = None,
                      salt: bytes | None = None) -> bytes:
    """The body of a push of `plaintext` to the browser holding `p256dh` and `auth`: the
    aes128gcm header (salt, record size, the sender's public key) and the records.

    The HKDFs of RFC 8291 section 3.4 are written as their HMACs: each expands to at most one
    hash, so HKDF-Expand is one HMAC of `info || 0x01`. A new key pair and salt are made per
    call; `sender_key` and `salt` are given only to reproduce RFC 8291's example (section 5).
    `browser_key` is `p256dh` loaded, when the caller has it already (the subscription rule
    loads it to check the point).
    """
    sender_key = sender_key or ec.generate_private_key(ec.SECP256R1())
    salt = salt or os.urandom(16)
    browser_key = browser_key or ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), p256dh)
    sender_public = sender_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    shared = sender_key.exchange(ec.ECDH(), browser_key)
    ikm = _hmac_sha256(_hmac_sha256(auth, shared),
                       _KEY_INFO + p256dh + sender_public + b"\x01")
    prk = _hmac_sha256(salt, ikm)
    aesgcm = AESGCM(_hmac_sha256(prk, _CEK_INFO)[:16])
    nonce = int.from_bytes(_hmac_sha256(prk, _NONCE_INFO)[:12], "big")
    # A record carries RECORD_SIZE - 17 bytes of the payload at most: its delimiter (0x02 on
    # the last record, 0x01 before) and the tag take the rest. RFC 8188 XORs the record's
    # sequence number into the nonce.
    chunk = RECORD_SIZE - _TAG - 1
    pieces = [plaintext[i:i + chunk] for i in range(0, len(plaintext), chunk)] or [b""]
    records = [aesgcm.encrypt((nonce ^ seq).to_bytes(12, "big"),
                              piece + (b"\x02" if seq == len(pieces) - 1 else b"\x01"), None)
               for seq, piece in enumerate(pieces)]
    header = salt + struct.pack("!IB", RECORD_SIZE, len(sender_public)) + sender_public
    return header + b"".join(records)


# --- VAPID ----------------------------------------------------------------------------------------

def vapid_private_key(value: Any) -> ec.EllipticCurvePrivateKey:
    """The key from the setting: PEM (PKCS#8 or SEC 1), the raw 32 bytes in base64url, or DER
    in base64; ValueError saying what is wrong."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("required: the VAPID private key (PEM, or base64url as "
                         "`web-push generate-vapid-keys` prints it)")
    text = value.strip()
    if "-----BEGIN" in text:
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"does not parse as a PEM private key ({exc})") from exc
    else:
        raw = b64url_decode(re.sub(r"\s+", "", text).replace("+", "-").replace("/", "_"))
        if raw is None:
            raise ValueError("is neither PEM nor base64url")
        try:
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = serialization.load_der_private_key(raw, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"is not a P-256 private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ValueError("must be an EC key on P-256 (prime256v1), as VAPID requires")
    return key


def vapid_subject_problem(subject: Any) -> str:
    if isinstance(subject, str):
        if _MAILTO.match(subject):
            return ""
        parts = urlsplit(subject)
        if parts.scheme == "https" and parts.hostname:
            return ""
    return ("required: a mailto: address or an https: URL where the push service can reach "
            "the sender (RFC 8292), e.g. mailto:push@example.com")


def vapid_signer(settings: Mapping[str, Any]) -> Vapid02:
    # no-strict: py_vapid's own check refuses an https subject with a path, which RFC 8292
    # allows; the subject is checked by vapid_subject_problem instead.
    return Vapid02(vapid_private_key(settings.get("vapid_private_key")),
                   conf={"no-strict": True})


def vapid_application_server_key(settings: Mapping[str, Any]) -> str:
    """The public half of the gateway's VAPID key as the site's `pushManager.subscribe()`
    takes it (`applicationServerKey`: the uncompressed P-256 point in base64url)."""
    key = vapid_private_key(settings.get("vapid_private_key")).public_key()
    return b64url_encode(key.public_bytes(serialization.Encoding.X962,
                                    serialization.PublicFormat.UncompressedPoint))


@dataclass(frozen=True)
class _SignedJwt:
    authorization: str
    expires_at: int


# (public key, subject, origin) -> the Authorization header, for the life of the process and
# shared by every batch a worker sends.
_JWTS: dict[tuple[str, str, str], _SignedJwt] = {}
_JWTS_LOCK = threading.Lock()


def vapid_authorization(vapid: Vapid02, *, public_key: str, subject: str, origin: str) -> str:
    cache_key = (public_key, subject, origin)
    now = int(time.time())
    with _JWTS_LOCK:
        signed = _JWTS.get(cache_key)
        if signed is None or signed.expires_at - VAPID_RENEW_BEFORE <= now:
            expires_at = now + VAPID_LIFETIME
            headers = vapid.sign({"aud": origin, "sub": subject, "exp": expires_at})
            signed = _SignedJwt(headers["Authorization"], expires_at)
            _JWTS[cache_key] = signed
        return signed.authorization


def vapid_forget(*, public_key: str, subject: str, origin: str) -> None:
    with _JWTS_LOCK:
        _JWTS.pop((public_key, subject, origin), None)
