"""Lifecycle rules written to moto's bucket and read back from it."""

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from archival.lifecycle import lifecycle_current
from core.aws import bucket_lifecycle_put, storage_ensure_bucket


@pytest.fixture
def lifecycle_bucket(settings, bucket):
    settings.AWS_STORAGE_BUCKET_NAME = "wharf-test-lifecycle"
    storage_ensure_bucket()
    yield settings.AWS_STORAGE_BUCKET_NAME
    bucket_lifecycle_put([])


def transitions(rule: dict) -> list[tuple[int, str]]:
    return [(t["Days"], t["StorageClass"]) for t in rule["Transitions"]]


def test_applies_the_rules_keeps_others_and_is_idempotent(lifecycle_bucket):
    bucket_lifecycle_put(
        [{"ID": "reports-expire", "Filter": {"Prefix": "reports/"}, "Status": "Enabled",
          "Expiration": {"Days": 400}}]
    )  # fmt: skip
    out = StringIO()
    call_command("s3_lifecycle", stdout=out)

    rules = {rule["ID"]: rule for rule in lifecycle_current()}
    assert set(rules) == {
        "reports-expire", "wharf-archive-messages", "wharf-archive-media", "wharf-media-incoming",
        "wharf-media-outgoing",
    }  # fmt: skip
    messages = rules["wharf-archive-messages"]
    assert messages["Filter"]["Prefix"] == f"{settings.ARCHIVE_PREFIX}messages/"
    assert transitions(messages) == [(90, "STANDARD_IA"), (365, "GLACIER"), (2555, "DEEP_ARCHIVE")]
    assert messages["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert transitions(rules["wharf-media-incoming"]) == [(30, "STANDARD_IA"), (180, "GLACIER")]
    assert transitions(rules["wharf-archive-media"]) == [(150, "GLACIER")]  # moved at 30 days, in IA
    assert "updated" in out.getvalue()
    assert "wharf-archive-messages [Enabled] archive/messages/: STANDARD_IA at 90 days" in out.getvalue()

    out = StringIO()
    call_command("s3_lifecycle", stdout=out)
    assert out.getvalue().startswith("unchanged")
    assert {rule["ID"] for rule in lifecycle_current()} == set(rules)

    out = StringIO()
    call_command("s3_lifecycle", "--show", stdout=out)
    assert "5 rule(s)" in out.getvalue() and "reports-expire" in out.getvalue()
