"""Limiter: how fast workers take send slots from the shared limiter, batches of 50.

One sender number allowed 1,000/s; 1 then 4 threads, each on its own connection, take
BENCH_SLOT_BATCHES batches of 50 distinct recipients between them, recipient spacing on. The
schedule they get is checked too: no two slots closer than one step, no second above the rate.
"""

import os
import threading
import time
from bisect import bisect_right
from datetime import timedelta
from itertools import pairwise

from bench._setup import django_on_fresh_database, peak_rss_mb, percentile, report

BATCHES = int(os.environ.get("BENCH_SLOT_BATCHES", "2000"))
BATCH_SIZE = 50
RATE = 1000


def run(phone_number, threads: int, prefix: str) -> dict:
    from django.db import connection

    from messaging.ratelimit import rate_slots_take

    slots: list = []
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def work(worker: int) -> None:
        mine, timings = [], []
        barrier.wait()
        for batch in range(worker, BATCHES, threads):
            recipients = [f"{prefix}{batch:06d}{i:02d}" for i in range(BATCH_SIZE)]
            started = time.perf_counter()
            mine += rate_slots_take(phone_number=phone_number, recipients=recipients)
            timings.append(time.perf_counter() - started)
        with lock:
            slots.extend(mine)
            latencies.extend(timings)
        connection.close()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started

    ordered = sorted(slots)
    one_second = timedelta(seconds=1) - timedelta(microseconds=1)
    busiest = max(bisect_right(ordered, start + one_second) - i for i, start in enumerate(ordered))
    return {
        "slots_per_s": round(len(slots) / elapsed),
        "batch_ms_p50": round(percentile(latencies, 50) * 1000, 2),
        "batch_ms_p99": round(percentile(latencies, 99) * 1000, 2),
        "min_gap_us": min(later - earlier for earlier, later in pairwise(ordered))
        // timedelta(microseconds=1),
        "busiest_second": busiest,
    }


def main() -> int:
    django_on_fresh_database("wharf_bench_ratelimit")
    from messaging.models import PhoneNumber

    figures: dict = {"rate_limit_per_s": RATE, "batch_size": BATCH_SIZE, "batches": BATCHES}
    for threads in (1, 4):
        phone_number = PhoneNumber.objects.create(phone_number_id=f"bench-{threads}", rate_limit_per_s=RATE)
        for key, value in run(phone_number, threads, prefix=f"31{threads}").items():
            figures[f"{key}_{threads}t"] = value
    figures["peak_rss_mb"] = peak_rss_mb()
    ok = all(
        figures[f"min_gap_us_{t}t"] >= 1_000_000 // RATE and figures[f"busiest_second_{t}t"] <= RATE
        for t in (1, 4)
    )
    figures["schedule_ok"] = ok
    report(figures)
    return 0 if ok else 1
