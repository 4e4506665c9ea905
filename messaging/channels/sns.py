"""Amazon SNS message signatures (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA).

SNS signs a canonical string of the message's fields with the key of a certificate it serves at
`SigningCertURL`. A certificate is trusted only from an https URL on an `sns.<region>.amazonaws.com`
host, or under one of SMS_SNS_CERT_URL_PREFIXES (the sandbox's, locally), and is kept in memory by
URL once fetched, so a worker fetches each of AWS's few certificates once; at most
CERTIFICATES_KEPT of them, the least recently used leaving first, since a sender chooses the URL
(one certificate under many URLs must not fill a worker's memory).
"""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings

AWS_CERT_HOST = re.compile(r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?")
CERT_FETCH_TIMEOUT_S = 5.0
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
CERTIFICATES_KEPT = 16


class SnsSignatureError(ValueError):
    pass


def sns_string_to_sign(message: dict) -> bytes:
    fields = NOTIFICATION_FIELDS if message.get("Type") == "Notification" else CONFIRMATION_FIELDS
    parts = []
    for name in fields:
        if name == "Subject" and message.get(name) is None:
            continue  # a notification without a subject leaves it out
        value = message.get(name)
        if not isinstance(value, str):
            raise SnsSignatureError(f"{name}: missing from the signed message.")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode()


def sns_cert_url_trusted(url: str) -> bool:
    parts = urlsplit(url)
    if (
        parts.scheme == "https"
        and AWS_CERT_HOST.fullmatch(parts.hostname or "")
        and parts.path.endswith(".pem")
    ):
        return True
    return any(prefix and url.startswith(prefix) for prefix in settings.SMS_SNS_CERT_URL_PREFIXES)


@lru_cache(maxsize=CERTIFICATES_KEPT)
def sns_certificate(url: str) -> x509.Certificate:
    """The certificate at a trusted URL, fetched once while it stays among the CERTIFICATES_KEPT
    used last (a failed fetch is not kept)."""
    try:
        response = httpx.get(url, timeout=CERT_FETCH_TIMEOUT_S)
        response.raise_for_status()
        return x509.load_pem_x509_certificate(response.content)
    except (httpx.HTTPError, ValueError) as error:
        raise SnsSignatureError(f"SigningCertURL: the certificate could not be fetched ({error}).") from None


def sns_signature_verify(message: dict) -> None:
    """Raises SnsSignatureError unless SNS signed this message."""
    version = str(message.get("SignatureVersion", ""))
    if version not in HASHES:
        raise SnsSignatureError(f"SignatureVersion: {version!r} is not 1 or 2.")
    url = str(message.get("SigningCertURL", ""))
    if not sns_cert_url_trusted(url):
        raise SnsSignatureError("SigningCertURL: not an SNS certificate URL.")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except ValueError:
        raise SnsSignatureError("Signature: not base64.") from None
    public_key = sns_certificate(url).public_key()
    try:
        public_key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), HASHES[version]())
    except (InvalidSignature, TypeError, ValueError):
        raise SnsSignatureError("Signature: does not match the message.") from None
