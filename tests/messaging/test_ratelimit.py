import threading
import time
from bisect import bisect_right
from collections import deque
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from django.conf import settings
from django.db import connection, transaction

from core import pacing
from core.models import Pace
from core.pacing import PaceClock, pace_clock_now, pace_wait
from messaging.models import PhoneNumber, RecipientPace
from messaging.ratelimit import (
    SLOT_LEAD,
    rate_paces_sweep,
    rate_slots_delay,
    rate_slots_take,
    sender_pace_key,
)
from messaging.tasks import rate_paces_sweep_task
from tests.factories import PhoneNumberFactory
from tests.waiting import lock_waiter, wait_until

US = timedelta(microseconds=1)


def db_now() -> datetime:
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


def busiest_second(slots: list[datetime]) -> int:
    """The most slots in any window [t, t + 1 s) (the busiest starts at a slot)."""
    ordered = sorted(slots)
    return max(
        bisect_right(ordered, start + timedelta(seconds=1) - US) - i for i, start in enumerate(ordered)
    )


def gaps(slots: list[datetime]) -> list[timedelta]:
    ordered = sorted(slots)
    return [later - earlier for earlier, later in pairwise(ordered)]


@pytest.fixture(autouse=True)
def exact_rate(settings):
    """The schedule's arithmetic at the limit itself; the headroom has its own test."""
    settings.WHATSAPP_RATE_HEADROOM_PCT = 0


@pytest.fixture
def no_spacing(settings):
    settings.WHATSAPP_RECIPIENT_SPACING_S = 0


@pytest.fixture
def spacing(settings):
    settings.WHATSAPP_RECIPIENT_SPACING_S = 1.0
    return timedelta(seconds=1)


def distinct(n: int, prefix: str = "3161") -> list[str]:
    return [f"{prefix}{i:08d}" for i in range(n)]


def test_slots_are_one_step_apart_from_now_and_batches_follow_on(db, spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    before = db_now()
    first = rate_slots_take(phone_number=phone_number, recipients=distinct(50))
    second = rate_slots_take(phone_number=phone_number, recipients=distinct(50, prefix="3162"))
    after = db_now()

    assert before + SLOT_LEAD <= first[0] <= after + SLOT_LEAD  # time to hand the first one over
    assert gaps(first + second) == [timedelta(microseconds=12_500)] * 99
    assert first + second == sorted(first + second)
    assert Pace.objects.get(key=sender_pace_key(phone_number)).tat == second[-1] + timedelta(
        microseconds=12_500
    )
    assert busiest_second(first + second) == 80


def test_a_late_send_moves_the_schedule_on_for_the_slots_taken_after_it(db, no_spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    first = rate_slots_take(phone_number=phone_number, recipients=distinct(80))  # a second ahead

    rate_slots_delay(phone_number=phone_number, gap=timedelta(milliseconds=30))
    later = rate_slots_take(phone_number=phone_number, recipients=distinct(8, prefix="3162"))

    assert later[0] - first[-1] == timedelta(microseconds=12_500) + timedelta(milliseconds=30)
    assert gaps(later) == [timedelta(microseconds=12_500)] * 7


def test_a_sender_idle_for_a_while_starts_again_from_now_without_a_burst(db, no_spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=10)
    Pace.objects.create(key=sender_pace_key(phone_number), tat=db_now() - timedelta(hours=1))
    before = db_now()

    slots = rate_slots_take(phone_number=phone_number, recipients=distinct(3))

    assert slots[0] >= before
    assert gaps(slots) == [timedelta(milliseconds=100)] * 2


def test_a_step_that_is_no_whole_microsecond_is_rounded_up(db, no_spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=3)
    slots = rate_slots_take(phone_number=phone_number, recipients=distinct(7))
    assert gaps(slots) == [timedelta(microseconds=333_334)] * 6
    assert busiest_second(slots) == 3


def test_a_rate_changed_on_the_number_applies_to_the_next_batch(db, no_spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    first = rate_slots_take(phone_number=phone_number, recipients=distinct(2))
    PhoneNumber.objects.filter(pk=phone_number.pk).update(rate_limit_per_s=1000)  # the worker's copy is stale

    second = rate_slots_take(phone_number=phone_number, recipients=distinct(3))

    assert gaps(first) == [timedelta(microseconds=12_500)]
    assert second[0] == first[-1] + timedelta(microseconds=12_500)  # the old rate's step was taken
    assert gaps(second) == [timedelta(microseconds=1_000)] * 2


def test_a_rate_of_zero_is_read_as_one_per_second(db, no_spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=0)
    assert gaps(rate_slots_take(phone_number=phone_number, recipients=distinct(2))) == [timedelta(seconds=1)]


def test_senders_are_paced_independently(db, no_spacing):
    slow, fast = PhoneNumberFactory(rate_limit_per_s=1), PhoneNumberFactory(rate_limit_per_s=1000)
    before = db_now()
    rate_slots_take(phone_number=slow, recipients=distinct(10))

    slots = rate_slots_take(phone_number=fast, recipients=distinct(10))

    assert before + SLOT_LEAD <= slots[0] <= db_now() + SLOT_LEAD
    assert gaps(slots) == [timedelta(milliseconds=1)] * 9


def test_a_recipient_written_to_again_within_the_spacing_is_held_until_its_turn(db, spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    first = rate_slots_take(phone_number=phone_number, recipients=["31612345678"])
    assert first.held == {}

    again = rate_slots_take(phone_number=phone_number, recipients=["31612345678", "31687654321"])

    step = timedelta(microseconds=12_500)
    assert list(again) == [first[0] + step, first[0] + 2 * step]  # the sender's schedule, unchanged
    assert again.held == {0: first[0] + spacing}  # not to be sent at its slot; the other one is
    pace = RecipientPace.objects.get(phone_number=phone_number, recipient="31612345678")
    assert pace.next_at == first[0] + spacing  # the held entry took no turn


def test_a_recipient_repeated_in_one_batch_takes_one_turn_and_the_rest_are_held(db, spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)

    slots = rate_slots_take(phone_number=phone_number, recipients=["a", "b", "a", "a"])
    later = rate_slots_take(phone_number=phone_number, recipients=["a"])

    a1, b = slots[0], slots[1]
    assert b == a1 + timedelta(microseconds=12_500)
    assert slots.held == {2: a1 + spacing, 3: a1 + spacing}
    assert later.held == {0: a1 + spacing}


def test_a_recipient_whose_turn_comes_later_holds_all_its_entries_until_then(db, spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    turn = db_now() + timedelta(seconds=5)
    RecipientPace.objects.create(phone_number=phone_number, recipient="a", next_at=turn)

    slots = rate_slots_take(phone_number=phone_number, recipients=["a", "a", "b"])

    assert slots.held == {0: turn, 1: turn}
    assert RecipientPace.objects.get(phone_number=phone_number, recipient="a").next_at == turn


def test_a_held_entry_taken_again_at_its_recipient_s_turn_gets_a_sender_slot_from_then(db, spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    turn = db_now() + timedelta(milliseconds=300)
    RecipientPace.objects.create(phone_number=phone_number, recipient="a", next_at=turn)
    assert rate_slots_take(phone_number=phone_number, recipients=["a"]).held == {0: turn}

    wait_until(lambda: db_now() >= turn, message="the database's clock at the recipient's turn")
    again = rate_slots_take(phone_number=phone_number, recipients=["a"])

    assert again.held == {} and again[0] >= turn
    assert RecipientPace.objects.get(phone_number=phone_number, recipient="a").next_at == again[0] + spacing


def test_recipients_are_paced_per_sender(db, spacing):
    one, two = PhoneNumberFactory(), PhoneNumberFactory()
    [first] = rate_slots_take(phone_number=one, recipients=["a"])
    [second] = rate_slots_take(phone_number=two, recipients=["a"])
    assert second - first < spacing


def test_a_recipient_turn_long_past_counts_as_none(db, spacing):
    phone_number = PhoneNumberFactory()
    RecipientPace.objects.create(
        phone_number=phone_number, recipient="a", next_at=db_now() - timedelta(days=1)
    )
    before = db_now()
    slots = rate_slots_take(phone_number=phone_number, recipients=["a", "a"])
    assert before + SLOT_LEAD <= slots[0] <= db_now() + SLOT_LEAD and slots.held == {1: slots[0] + spacing}


def test_an_empty_batch_takes_nothing(db):
    phone_number = PhoneNumberFactory()
    assert rate_slots_take(phone_number=phone_number, recipients=[]) == []
    assert not Pace.objects.exists()


def take_concurrently(
    phone_number: PhoneNumber, batches: list[list[str]], threads: int
) -> list[list[datetime]]:
    """Each thread, on its own database connection, takes its share of the batches, all at once."""
    barrier = threading.Barrier(threads)
    results: list[list[datetime]] = [[] for _ in batches]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            barrier.wait(timeout=30)
            for index in range(offset, len(batches), threads):
                results[index] = rate_slots_take(phone_number=phone_number, recipients=batches[index])
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    workers = [threading.Thread(target=work, args=(offset,)) for offset in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors
    return results


@pytest.mark.parametrize("threads", [2, 4])
def test_concurrent_workers_never_take_slots_closer_than_one_step(transactional_db, no_spacing, threads):
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    batches = [distinct(10, prefix=f"31{i:03d}") for i in range(40)]

    results = take_concurrently(phone_number, batches, threads)

    slots = [slot for batch in results for slot in batch]
    assert len(slots) == len(set(slots)) == 400
    assert min(gaps(slots)) == timedelta(microseconds=12_500)
    assert busiest_second(slots) == 80
    for batch in results:  # each batch is one contiguous run of the schedule
        assert gaps(batch) == [timedelta(microseconds=12_500)] * 9


def test_concurrent_workers_writing_to_the_same_recipients_keep_each_one_spaced(transactional_db, spacing):
    phone_number = PhoneNumberFactory(rate_limit_per_s=1000)
    recipients = distinct(5)
    # The same recipients in different orders, and repeated, in every batch: no deadlock, all spaced.
    batches = [recipients[i % 5 :] + recipients[: i % 5] + recipients[:2] for i in range(12)]

    results = take_concurrently(phone_number, batches, 4)

    for recipient in recipients:
        turns = [
            slot
            for batch, slots in zip(batches, results, strict=True)
            for i, (r, slot) in enumerate(zip(batch, slots, strict=True))
            if r == recipient and i not in slots.held
        ]
        assert turns and min(gaps(turns), default=spacing) >= spacing
    sender_slots = [slot for slots in results for slot in slots]
    assert len(sender_slots) == 12 * 7


class HostClockBehind:
    """This host's clock, ten seconds behind the database's; sleeps are real and recorded."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def time(self) -> float:
        return time.time() - 10

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        time.sleep(seconds)  # the wait under test, done for real: the test reads the clock after it


def test_pace_wait_sleeps_until_the_slot_on_the_database_clock(db, no_spacing, monkeypatch):
    # An earlier batch measured the host's clock right, over a round trip shorter than any since.
    monkeypatch.setattr(PaceClock, "samples", deque([(0.0, 0.0)], maxlen=32))
    clock = HostClockBehind()  # then it was set ten seconds back
    monkeypatch.setattr(pacing, "time", clock)
    phone_number = PhoneNumberFactory(rate_limit_per_s=20)
    first, _, third = rate_slots_take(phone_number=phone_number, recipients=distinct(3))

    assert pace_wait(first - timedelta(seconds=1)) == 0.0
    pace_wait(third)

    # The offset to the database's clock is estimated to within half a round trip to it.
    assert db_now() >= third - timedelta(milliseconds=5)
    assert len(clock.slept) == 1 and clock.slept[0] < 1  # not the ten seconds the host is behind
    assert abs((pace_clock_now() - db_now()).total_seconds()) < 1


def test_the_sweep_deletes_only_turns_long_past(db, spacing):
    phone_number = PhoneNumberFactory()
    now = db_now()
    RecipientPace.objects.create(phone_number=phone_number, recipient="old", next_at=now - timedelta(hours=1))
    RecipientPace.objects.create(
        phone_number=phone_number, recipient="recent", next_at=now - timedelta(seconds=5)
    )
    rate_slots_take(phone_number=phone_number, recipients=["coming"])

    assert rate_paces_sweep_task() == 1
    assert rate_paces_sweep() == 0
    assert set(RecipientPace.objects.values_list("recipient", flat=True)) == {"recent", "coming"}


def test_the_sweep_runs_on_beat_in_the_outgoing_queue():
    assert {"task": "messaging.ratelimit_sweep", "schedule": 600.0} in settings.CELERY_BEAT_SCHEDULE.values()
    from config.celery import app

    assert app.amqp.router.route({}, "messaging.ratelimit_sweep")["queue"].name == "outgoing"


def test_slots_of_a_number_that_is_gone_are_refused(db):
    phone_number = PhoneNumberFactory()
    PhoneNumber.objects.filter(pk=phone_number.pk).delete()
    with pytest.raises(PhoneNumber.DoesNotExist):
        rate_slots_take(phone_number=phone_number, recipients=["a"])


def test_a_worker_kept_waiting_for_the_row_gets_slots_from_when_it_got_it(transactional_db, no_spacing):
    """The clock is read once the row is locked: slots from when the statement began would be in
    the past by the time the worker has them, and it would send them all at once."""
    phone_number = PhoneNumberFactory(rate_limit_per_s=80)
    locked, released_at, taken = threading.Event(), [], []

    def hold() -> None:
        with transaction.atomic():
            rate_slots_take(phone_number=phone_number, recipients=["a"])
            locked.set()
            waiter = lock_waiter()
            # Held past the waiter's start by more than a slot's lead: a slot from then would be early.
            wait_until(
                lambda: db_now() > waiter.query_start + 4 * SLOT_LEAD,
                message="the database's clock past the waiter's start",
            )
            released_at.append(db_now())
        connection.close()

    def wait() -> None:
        locked.wait(timeout=10)
        taken.extend(rate_slots_take(phone_number=phone_number, recipients=["b", "c"]))
        connection.close()

    threads = [threading.Thread(target=hold), threading.Thread(target=wait)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert taken[0] >= released_at[0]
    assert taken[1] - taken[0] == timedelta(microseconds=12_500)


@pytest.mark.django_db
def test_the_headroom_paces_a_sender_that_many_percent_under_its_limit(settings, no_spacing):
    settings.WHATSAPP_RATE_HEADROOM_PCT = 2
    number = PhoneNumberFactory(rate_limit_per_s=80)

    slots = rate_slots_take(phone_number=number, recipients=[f"4477009{i:05d}" for i in range(50)])

    assert set(gaps(slots)) == {timedelta(microseconds=12756)}  # 1 / (80 * 0.98), rounded up
    assert busiest_second(slots) <= 79
