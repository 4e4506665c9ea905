"""S3 kept across restarts of the embedded stack: moto's objects saved to a folder and put back.

moto's server holds everything in memory and has no persistence of its own (its recorder replays
every request, SQS's included, from an ever-growing log). So the supervisor saves S3 through the
S3 API: when it stops, after the platform's processes and before moto, and every minute while it
runs (a supervisor killed outright loses at most that minute); and it puts S3 back when moto has
started, before anything else runs. SQS is not kept: PostgreSQL is the queue of record, and the
sweepers re-wake what was pending.

The folder holds `manifest.json` (per bucket: its region, and its objects' keys, ETags, headers
and metadata) and `objects/<sha256 of the content>`. A save writes the new objects first, then
replaces the manifest in one rename, then deletes the files no manifest names any more: a save
cut short at any line leaves the previous manifest and every file it names. An object whose ETag
and size are those already saved is not downloaded again; one deleted between the listing and
its download is left out. Objects in a cold storage class that S3 will not read back (GLACIER,
DEEP_ARCHIVE, not restored) keep their previous copy, if any.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

MANIFEST = "manifest.json"
# The object headers a save keeps, as get_object answers them and put_object takes them.
HEADERS = ("ContentType", "ContentDisposition", "ContentEncoding", "ContentLanguage", "CacheControl")


class ObjectGone(Exception):
    """The object was deleted after the listing named it."""


@dataclass(frozen=True)
class S3Saved:
    objects: int
    bytes: int
    downloaded: int
    unreadable: int


def moto_client(endpoint: str, service: str = "s3"):
    """A client of moto's server at `endpoint` (moto takes any credentials)."""
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's, not a secret
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )


def manifest_read(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        return {"buckets": {}}
    return json.loads(path.read_text())


def s3_save(*, endpoint: str, folder: Path) -> S3Saved:
    """Save every bucket of the S3 at `endpoint` into `folder`, replacing what was saved before."""
    client = moto_client(endpoint)
    objects_dir = folder / "objects"
    objects_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # customers' media: the owner's only
    folder.chmod(0o700)
    previous = manifest_read(folder)["buckets"]
    buckets: dict[str, dict] = {}
    count = total = downloaded = unreadable = 0
    for bucket in client.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        region = client.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
        before = previous.get(name, {}).get("objects", {})
        saved: dict[str, dict] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for listed in page.get("Contents", []):
                key = listed["Key"]
                old = before.get(key)
                if (
                    old
                    and old["etag"] == listed["ETag"]
                    and old["size"] == listed["Size"]
                    and (objects_dir / old["file"]).exists()
                ):
                    saved[key] = old
                else:
                    try:
                        entry = _object_download(client, bucket=name, key=key, objects_dir=objects_dir)
                    except ObjectGone:
                        continue
                    if entry is not None:
                        downloaded += 1
                        saved[key] = entry
                    else:
                        unreadable += 1
                        if old and (objects_dir / old["file"]).exists():
                            saved[key] = old
                if key in saved:
                    count += 1
                    total += saved[key]["size"]
        buckets[name] = {"region": region, "objects": saved}

    manifest = folder / MANIFEST
    partial = folder / f"{MANIFEST}.partial"
    partial.write_text(json.dumps({"buckets": buckets}, indent=1, sort_keys=True))
    os.replace(partial, manifest)
    named = {entry["file"] for bucket in buckets.values() for entry in bucket["objects"].values()}
    for path in objects_dir.iterdir():
        if path.name not in named:
            path.unlink()
    return S3Saved(objects=count, bytes=total, downloaded=downloaded, unreadable=unreadable)


def _object_download(client, *, bucket: str, key: str, objects_dir: Path) -> dict | None:
    """The manifest entry of one object, its content written under its hash; None if S3 will not
    give it (a cold storage class)."""
    try:
        answer = client.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "InvalidObjectState":
            return None
        if code == "NoSuchKey":
            raise ObjectGone(key) from error
        raise
    content = answer["Body"].read()
    digest = hashlib.sha256(content).hexdigest()
    path = objects_dir / digest
    if not path.exists():
        partial = objects_dir / f"{digest}.partial"
        partial.write_bytes(content)
        os.replace(partial, path)
    return {
        "file": digest,
        "etag": answer["ETag"],
        "size": len(content),
        "headers": {name: answer[name] for name in HEADERS if answer.get(name)},
        "metadata": answer.get("Metadata") or {},
        "storage_class": answer.get("StorageClass") or "STANDARD",
    }


def s3_restore(*, endpoint: str, folder: Path) -> int:
    """Put what `folder` holds into the S3 at `endpoint`, creating its buckets; the objects put."""
    client = moto_client(endpoint)
    count = 0
    for name, bucket in manifest_read(folder)["buckets"].items():
        try:
            client.head_bucket(Bucket=name)
        except ClientError:
            options = {}
            if bucket["region"] != "us-east-1":
                options["CreateBucketConfiguration"] = {"LocationConstraint": bucket["region"]}
            client.create_bucket(Bucket=name, **options)
        for key, entry in bucket["objects"].items():
            with open(folder / "objects" / entry["file"], "rb") as body:
                client.put_object(
                    Bucket=name,
                    Key=key,
                    Body=body,
                    Metadata=entry["metadata"],
                    StorageClass=entry["storage_class"],
                    **entry["headers"],
                )
            count += 1
    return count
