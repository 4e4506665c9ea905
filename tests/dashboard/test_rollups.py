from datetime import UTC, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from config.celery import app
from contacts.models import Contact
from dashboard.models import MessageDay, OptOutDay
from dashboard.rollups import stats_day_rollup, stats_range_rollup
from dashboard.tasks import stats_recent_rollup_task
from messaging.models import Message
from tests.dashboard.seed import RE_ENGAGEMENT, at, business_sends, customer_writes, status
from tests.factories import PhoneNumberFactory

pytestmark = pytest.mark.django_db


def counts(day) -> dict[tuple, int]:
    return {
        (row.phone_number_id, row.direction, row.status, row.error_code): row.count
        for row in MessageDay.objects.filter(day=day)
    }


@pytest.fixture
def today():
    return timezone.now().astimezone(UTC).date()


@pytest.fixture
def numbers():
    return PhoneNumberFactory(at_meta=False), PhoneNumberFactory(at_meta=False)


def test_a_day_counts_what_its_events_say(numbers, today):
    sales, support = numbers
    day = today - timedelta(days=3)
    for n in range(3):
        customer_writes(number=sales, wa_id=f"44770090{n:04d}", when=at(day, 9, n), wamid=f"wamid.IN{n}")
    customer_writes(number=support, wa_id="447700901000", when=at(day, 10), wamid="wamid.IN9")
    business_sends(number=sales, when=at(day, 11), reached="read")
    business_sends(number=sales, when=at(day, 11), reached="delivered")
    business_sends(number=support, when=at(day, 12), error=RE_ENGAGEMENT)
    customer_writes(
        number=sales, wa_id="447700902000", when=at(day + timedelta(days=1), 0, 1), wamid="wamid.NEXT"
    )

    stats_day_rollup(day=day)

    assert counts(day) == {
        (sales.pk, "inbound", "received", None): 3,
        (support.pk, "inbound", "received", None): 1,
        (sales.pk, "outbound", "sent", None): 2,
        (sales.pk, "outbound", "delivered", None): 2,
        (sales.pk, "outbound", "read", None): 1,
        (support.pk, "outbound", "sent", None): 1,
        (support.pk, "outbound", "failed", 131047): 1,
    }
    failed = MessageDay.objects.get(day=day, status="failed")
    assert failed.error_title == "Re-engagement message"
    # the same as counting the messages themselves
    start, end = at(day, 0), at(day + timedelta(days=1), 0)
    inbound = Message.objects.filter(direction="inbound", timestamp__gte=start, timestamp__lt=end)
    assert (
        sum(row.count for row in MessageDay.objects.filter(day=day, direction="inbound")) == inbound.count()
    )
    for name, field in (
        ("sent", "sent_at"),
        ("delivered", "delivered_at"),
        ("read", "read_at"),
        ("failed", "failed_at"),
    ):
        direct = Message.objects.filter(**{f"{field}__gte": start, f"{field}__lt": end}).count()
        assert sum(row.count for row in MessageDay.objects.filter(day=day, status=name)) == direct, name


def test_running_twice_changes_nothing(numbers, today):
    sales, _support = numbers
    customer_writes(number=sales, wa_id="447700900001", when=at(today, 0, 5), wamid="wamid.A")
    business_sends(number=sales, when=at(today, 0, 6), reached="delivered")

    stats_recent_rollup_task()
    first = counts(today)
    stats_recent_rollup_task()
    stats_range_rollup(since=today, until=today)

    assert counts(today) == first
    assert first[(sales.pk, "inbound", "received", None)] == 1
    assert MessageDay.objects.count() == 3


def test_a_late_status_moves_the_count_on_the_next_run(numbers, today):
    sales, _support = numbers
    day = today - timedelta(days=1)
    message = business_sends(number=sales, when=at(day, 10), reached="delivered")
    stats_day_rollup(day=day)
    assert (sales.pk, "outbound", "read", None) not in counts(day)

    status(message, "read", at(day, 23, 30))  # arrives after the run, dated that day
    stats_day_rollup(day=day)

    assert counts(day)[(sales.pk, "outbound", "read", None)] == 1
    assert counts(day)[(sales.pk, "outbound", "delivered", None)] == 1


def test_a_day_with_nothing_left_loses_its_rows(numbers, today):
    sales, _support = numbers
    day = today - timedelta(days=2)
    MessageDay.objects.create(
        day=day, phone_number_id=sales.pk, direction="inbound", status="received", count=7
    )
    stats_day_rollup(day=day)
    assert not MessageDay.objects.filter(day=day).exists()


def test_opt_outs_are_counted_per_channel_on_their_day(today):
    day = today - timedelta(days=1)
    Contact.objects.create(phone="+447400000001", opted_out_at=at(day, 9))
    Contact.objects.create(phone="+447400000002", opted_out_at=at(day, 10), sms_opted_out_at=at(day, 10))
    Contact.objects.create(phone="+447400000003", email_opted_out_at=at(today, 8))

    stats_range_rollup(since=day, until=today)

    assert {(row.day, row.channel, row.count) for row in OptOutDay.objects.all()} == {
        (day, "whatsapp", 2),
        (day, "sms", 1),
        (today, "email", 1),
    }


def test_the_command_rebuilds_a_range(numbers, today, capsys):
    sales, _support = numbers
    for back in (5, 6):
        customer_writes(
            number=sales,
            wa_id=f"4477009{back:05d}",
            when=at(today - timedelta(days=back), 12),
            wamid=f"wamid.{back}",
        )
    call_command("stats_rollup", "--days", "7")
    assert "recomputed 7 day(s)" in capsys.readouterr().out
    assert sorted(MessageDay.objects.values_list("day", flat=True)) == [
        today - timedelta(days=6),
        today - timedelta(days=5),
    ]


def test_the_task_goes_to_the_analytics_queue():
    route = app.amqp.router.route({}, "dashboard.stats_recent_rollup")
    assert route["queue"].name == "analytics"
    assert any(entry["task"] == "dashboard.stats_recent_rollup" for entry in app.conf.beat_schedule.values())
