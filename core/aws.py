"""boto3 clients for S3 and SQS, aimed at AWS_ENDPOINT_URL when one is set (moto's server locally)."""

from functools import cache

import boto3
from botocore.config import Config
from django.conf import settings


@cache
def _client(service: str, endpoint_url: str | None, region: str, timeout: float):
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=20,
        # Presigned URLs signed with SigV4, as AWS requires, whatever the endpoint and region.
        signature_version="s3v4" if service == "s3" else None,
    )
    return boto3.session.Session().client(
        service, endpoint_url=endpoint_url, region_name=region, config=config
    )


def aws_client(service: str):
    """A cached, thread-safe client; the key includes the settings so tests can override them."""
    return _client(service, settings.AWS_ENDPOINT_URL, settings.AWS_REGION, settings.AWS_CLIENT_TIMEOUT_S)


def s3_client():
    return aws_client("s3")


def sqs_client():
    return aws_client("sqs")


def storage_ensure_bucket() -> None:
    """Create the bucket if it does not exist, with public access blocked (idempotent)."""
    client = s3_client()
    bucket = settings.AWS_STORAGE_BUCKET_NAME
    try:
        client.head_bucket(Bucket=bucket)
    except client.exceptions.ClientError:
        kwargs = {"Bucket": bucket}
        if settings.AWS_REGION != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.AWS_REGION}
        client.create_bucket(**kwargs)
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
