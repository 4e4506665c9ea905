"""The bucket's lifecycle rules for the archive (DESIGN.md): message archives to infrequent access at
90 days, Glacier at 365, Deep Archive at 7 years; media to infrequent access at 30 days, Glacier at
180. Media are moved to `<ARCHIVE_PREFIX>media/` at ARCHIVE_MEDIA_AFTER_DAYS, already in infrequent
access, so that prefix reaches Glacier when the media are 180 days old; the live media prefixes
carry the same rule for media not moved yet. Incomplete multipart uploads under the archive prefix
(an interrupted run's) are aborted after 7 days.

Applying is idempotent: Wharf's rules (IDs starting with `wharf-`) are replaced, any other rule on
the bucket is kept, and nothing is written when the bucket already has them.
"""

from __future__ import annotations

from django.conf import settings

from core.aws import bucket_lifecycle_put, bucket_lifecycle_rules

RULE_PREFIX = "wharf-"
YEAR = 365


def _rule(
    rule_id: str, prefix: str, transitions: list[tuple[int, str]], *, abort_days: int | None = None
) -> dict:
    rule = {
        "ID": f"{RULE_PREFIX}{rule_id}",
        "Filter": {"Prefix": prefix},
        "Status": "Enabled",
        "Transitions": [{"Days": days, "StorageClass": storage_class} for days, storage_class in transitions],
    }
    if abort_days is not None:
        rule["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": abort_days}
    return rule


def lifecycle_rules() -> list[dict]:
    """Wharf's rules for the configured prefixes."""
    archive, media_after = settings.ARCHIVE_PREFIX, settings.ARCHIVE_MEDIA_AFTER_DAYS
    media = [(30, "STANDARD_IA"), (180, "GLACIER")]
    return [
        _rule(
            "archive-messages",
            f"{archive}messages/",
            [(90, "STANDARD_IA"), (YEAR, "GLACIER"), (7 * YEAR, "DEEP_ARCHIVE")],
            abort_days=7,
        ),
        _rule("archive-media", f"{archive}media/", [(max(1, 180 - media_after), "GLACIER")], abort_days=7),
        _rule("media-incoming", settings.MEDIA_INCOMING_PREFIX, media),
        _rule("media-outgoing", settings.MEDIA_OUTGOING_PREFIX, media),
    ]


def lifecycle_current() -> list[dict]:
    return bucket_lifecycle_rules()


def _comparable(rule: dict) -> tuple:
    transitions = tuple(sorted((t.get("Days"), t.get("StorageClass")) for t in rule.get("Transitions", [])))
    prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
    abort = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
    return rule.get("ID"), prefix, rule.get("Status"), transitions, abort


def lifecycle_apply() -> tuple[bool, list[dict]]:
    """Put Wharf's rules on the bucket, keeping the others; (changed, the bucket's rules now)."""
    current = lifecycle_current()
    others = [rule for rule in current if not str(rule.get("ID", "")).startswith(RULE_PREFIX)]
    wanted = others + lifecycle_rules()
    if sorted(map(_comparable, current)) == sorted(map(_comparable, wanted)):
        return False, current
    bucket_lifecycle_put(wanted)
    return True, lifecycle_current()


def lifecycle_describe(rule: dict) -> str:
    prefix = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", ""))
    steps = ", ".join(f"{t.get('StorageClass')} at {t.get('Days')} days" for t in rule.get("Transitions", []))
    abort = (rule.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
    text = (
        f"{rule.get('ID')} [{rule.get('Status')}] {prefix or '(whole bucket)'}: {steps or 'no transitions'}"
    )
    if rule.get("Expiration"):
        text += f"; expires {rule['Expiration']}"
    if abort:
        text += f"; incomplete uploads aborted after {abort} days"
    return text
