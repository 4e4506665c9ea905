"""boto3 for what django-storages does not do, and the one cache of boto3 clients.

Files are saved, opened, deleted and linked through the storages (core/storage.py). What is left
is here: the bucket itself (creation with public access blocked, its lifecycle rules, the health
check), the archive's objects (a checked multipart upload, a streamed read, a copy into another
storage class, Glacier restores), deletes by the thousand and CloudWatch metrics. Every boto3 client
of the process, S3, SQS, SMS or CloudWatch, comes from `aws_client`; nothing else in Wharf makes one.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings

logger = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's parts are at least 5 MiB, the last excepted
DELETE_BATCH = 1000  # DeleteObjects' limit
_MISSING = ("404", "NoSuchKey", "NotFound")
_AWS_ENDPOINT = object()  # aws_client's default: AWS_ENDPOINT_URL, read at each call


# -- clients ------------------------------------------------------------------------------------


@cache
def _client(service: str, endpoint_url: str | None, region: str, timeout: float, attempts: int):
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        max_pool_connections=20,
        # The endpoint is the one given, never boto3's own reading of AWS_ENDPOINT_URL et al.
        ignore_configured_endpoint_urls=True,
        # Presigned URLs signed with SigV4, as AWS requires, whatever the endpoint and region.
        signature_version="s3v4" if service == "s3" else None,
    )
    return boto3.session.Session().client(
        service, endpoint_url=endpoint_url, region_name=region, config=config
    )


def aws_client(
    service: str,
    *,
    endpoint_url: Any = _AWS_ENDPOINT,
    timeout_s: float | None = None,
    total_attempts: int = 3,
):
    """A cached, thread-safe client, one per service and configuration (boto3 sessions are not
    thread-safe, clients are). The key includes the settings, so tests can override them.

    `endpoint_url` defaults to AWS_ENDPOINT_URL (moto's server locally); None means AWS itself.
    `timeout_s` defaults to AWS_CLIENT_TIMEOUT_S; `total_attempts` counts the first one."""
    endpoint = settings.AWS_ENDPOINT_URL if endpoint_url is _AWS_ENDPOINT else endpoint_url
    timeout = settings.AWS_CLIENT_TIMEOUT_S if timeout_s is None else timeout_s
    return _client(service, endpoint, settings.AWS_REGION, timeout, total_attempts)


def _s3_client():
    """For this module's helpers; elsewhere files go through the storages (core/storage.py)."""
    return aws_client("s3")


def sqs_client():
    return aws_client("sqs")


def _bucket() -> str:
    return settings.AWS_STORAGE_BUCKET_NAME


METRICS_PER_REQUEST = 1000  # PutMetricData's limit


def metric_data_put(*, namespace: str, metrics: list[dict]) -> None:
    """Publish CloudWatch metrics (PutMetricData's MetricData entries) under `namespace`."""
    client = aws_client("cloudwatch")
    for start in range(0, len(metrics), METRICS_PER_REQUEST):
        client.put_metric_data(Namespace=namespace, MetricData=metrics[start : start + METRICS_PER_REQUEST])


# -- the bucket ---------------------------------------------------------------------------------


def storage_ensure_bucket() -> None:
    """Create the bucket if it does not exist, with public access blocked (idempotent)."""
    client = _s3_client()
    try:
        client.head_bucket(Bucket=_bucket())
    except ClientError:
        kwargs: dict[str, Any] = {"Bucket": _bucket()}
        if settings.AWS_REGION != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.AWS_REGION}
        client.create_bucket(**kwargs)
    client.put_public_access_block(
        Bucket=_bucket(),
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )


def bucket_check() -> None:
    """Raises unless the bucket answers (the health check)."""
    _s3_client().head_bucket(Bucket=_bucket())


def bucket_public_access_block() -> dict[str, bool]:
    return _s3_client().get_public_access_block(Bucket=_bucket())["PublicAccessBlockConfiguration"]


def bucket_lifecycle_rules() -> list[dict]:
    """The bucket's lifecycle rules; none when it has no configuration."""
    try:
        answer = _s3_client().get_bucket_lifecycle_configuration(Bucket=_bucket())
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NoSuchLifecycleConfiguration":
            return []
        raise
    return answer.get("Rules", [])


def bucket_lifecycle_put(rules: list[dict]) -> None:
    """Replace the bucket's lifecycle rules with `rules`; none removes its configuration."""
    if not rules:
        _s3_client().delete_bucket_lifecycle(Bucket=_bucket())
        return
    _s3_client().put_bucket_lifecycle_configuration(Bucket=_bucket(), LifecycleConfiguration={"Rules": rules})


# -- objects ------------------------------------------------------------------------------------


def object_head(key: str) -> dict[str, Any] | None:
    """S3's HEAD of an object (ContentLength, ContentType, ETag, StorageClass, Restore...); None
    when there is no such object."""
    try:
        return _s3_client().head_object(Bucket=_bucket(), Key=key)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in _MISSING:
            return None
        raise


def object_chunks(key: str, *, chunk_size: int) -> Iterator[bytes]:
    """An object's bytes as they arrive, `chunk_size` at a time: memory stays flat at any size."""
    body = _s3_client().get_object(Bucket=_bucket(), Key=key)["Body"]
    try:
        yield from body.iter_chunks(chunk_size=chunk_size)
    finally:
        body.close()


def object_copy(*, source_key: str, key: str, storage_class: str) -> None:
    """A server-side copy of an object, with its type and metadata, in `storage_class`."""
    _s3_client().copy_object(
        Bucket=_bucket(),
        Key=key,
        CopySource={"Bucket": _bucket(), "Key": source_key},
        StorageClass=storage_class,
        MetadataDirective="COPY",
    )


def object_restore(*, key: str, days: int) -> bool:
    """Ask S3 to restore an object from Glacier or Deep Archive for `days`; False when a restore
    is already under way."""
    try:
        _s3_client().restore_object(
            Bucket=_bucket(),
            Key=key,
            RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": "Standard"}},
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "RestoreAlreadyInProgress":
            raise
        return False
    return True


def objects_delete(keys: list[str]) -> list[str]:
    """Delete objects a thousand per request; returns the keys that could not be deleted (each
    failure is logged). A key that does not exist counts as deleted."""
    failed = []
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        try:
            answer = _s3_client().delete_objects(
                Bucket=_bucket(), Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
        except Exception:
            logger.exception("Could not delete %d object(s) from S3: %s", len(batch), batch)
            failed += batch
            continue
        for error in answer.get("Errors", []):
            logger.error("Could not delete object %s from S3: %s", error.get("Key"), error.get("Code"))
            failed.append(error.get("Key"))
    return failed


# -- checked multipart upload -------------------------------------------------------------------


def multipart_uploads_pending(key: str) -> list[str]:
    """The ids of the multipart uploads to `key` begun and neither completed nor aborted."""
    answer = _s3_client().list_multipart_uploads(Bucket=_bucket(), Prefix=key)
    return [upload["UploadId"] for upload in answer.get("Uploads", []) if upload["Key"] == key]


def multipart_uploads_abort(key: str) -> None:
    """Abort what an earlier, interrupted writer left of an upload to `key`."""
    for upload_id in multipart_uploads_pending(key):
        _s3_client().abort_multipart_upload(Bucket=_bucket(), Key=key, UploadId=upload_id)


def _md5(data: bytes) -> bytes:
    """S3's ETag is an MD5: an integrity check of what it received, not a security measure."""
    return hashlib.md5(data, usedforsecurity=False).digest()


class ObjectUpload:
    """Bytes to one object, checked: one PUT when they stay under a part, else a multipart upload
    with one part in flight beside the one being filled, so memory stays at about two parts. Every
    request carries the MD5 of its body, which S3 checks on receipt; `close` returns the ETag S3
    will then report for the object, and `size` and `sha256` describe what was sent. Nothing is
    visible under `key` until `close` returns; `abort` (or a rerun's `multipart_uploads_abort`)
    drops an unfinished upload."""

    def __init__(
        self,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
        part_size: int = PART_SIZE,
    ):
        self.key = key
        self.content_type = content_type
        self.metadata = metadata or {}
        self.part_size = part_size
        self.client = _s3_client()
        self.buffer = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.md5s: list[bytes] = []
        self.parts: list[Future] = []
        self.pool: ThreadPoolExecutor | None = None
        self.upload_id: str | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffer += data
        if len(self.buffer) >= self.part_size:
            self._part()

    def _part(self) -> None:
        if self.upload_id is None:
            self.pool = ThreadPoolExecutor(max_workers=1)
            self.upload_id = self.client.create_multipart_upload(
                Bucket=_bucket(), Key=self.key, ContentType=self.content_type, Metadata=self.metadata
            )["UploadId"]
        body = bytes(self.buffer)
        self.buffer.clear()
        self._sent(body)
        if self.parts:
            self.parts[-1].result()  # at most one part uploading while the next is filled
        self.parts.append(self.pool.submit(self._upload_part, len(self.md5s), body))

    def _sent(self, body: bytes) -> bytes:
        digest = _md5(body)
        self.sha256.update(body)
        self.md5s.append(digest)
        self.size += len(body)
        return digest

    def _upload_part(self, number: int, body: bytes) -> dict:
        answer = self.client.upload_part(
            Bucket=_bucket(),
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ContentMD5=base64.b64encode(self.md5s[number - 1]).decode(),
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def close(self) -> str:
        """Completes the object; returns the ETag S3 will report for it."""
        if self.upload_id is None:
            body = bytes(self.buffer)
            self.buffer.clear()
            digest = self._sent(body)
            self.client.put_object(
                Bucket=_bucket(),
                Key=self.key,
                Body=body,
                ContentType=self.content_type,
                ContentMD5=base64.b64encode(digest).decode(),
                Metadata=self.metadata,
            )
            return digest.hex()
        if self.buffer:
            self._part()
        parts = [future.result() for future in self.parts]
        self.pool.shutdown()
        self.client.complete_multipart_upload(
            Bucket=_bucket(), Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
        )
        return f"{_md5(b''.join(self.md5s)).hex()}-{len(self.md5s)}"

    def abort(self) -> None:
        if self.upload_id is None:
            return
        self.pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.client.abort_multipart_upload(Bucket=_bucket(), Key=self.key, UploadId=self.upload_id)
        except Exception:
            logger.warning("could not abort the upload of %s; a rerun aborts it", self.key)
