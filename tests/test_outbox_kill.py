"""Acceptance 3: real ``siyu worker`` processes drain 10,000 outbox rows while one is killed.

Each worker is a separate OS process (``siyu worker --only channels.outbox``) on the same
database, delivering through the webhook adapter configured in the brand's channel settings
(secret encrypted at rest) to a loopback HTTP receiver in this process. The receiver checks
every request's signature and logs every delivery with its idempotency key, and, like any
receiver of an at-least-once sender, applies each key once.

One worker is SIGKILLed while it holds claimed rows. Asserted afterwards:

- every row ends ``sent``; every key reached the receiver (nothing lost);
- the receiver applied each key exactly once (effectively-once);
- raw duplicate deliveries (a key received twice) are at most the number of rows the killed
  worker held claimed when it died, and every duplicated key is one of those rows;
- the surviving workers stop on SIGTERM after finishing their batch (exit code 0).

PostgreSQL runs three workers (``FOR UPDATE SKIP LOCKED``); SQLite one worker, killed and
restarted. The claim lease is shortened through ``SIYU_OUTBOX_LEASE_SECONDS``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from siyu.channels import actions, webhook
from siyu.core.clock import utcnow
from siyu.core.ids import new_id
from siyu.core.tenancy import SYSTEM
from siyu.org.queries import access_brand
from siyu.sop.models import Outbox

ROWS = 10_000
SECRET = "kill-test-webhook-secret"
SIYU = Path(sys.executable).with_name("siyu")
WAIT = 300  # seconds; a quiet machine needs well under a minute (see the printed report)


class Receiver:
    """The brand's system: verifies signatures, logs every delivery, applies each key once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deliveries: Counter[str] = Counter()  # raw: every request
        self.applied: set[str] = set()  # deduplicated on the idempotency key
        self.bad_signatures = 0

    def receive(self, headers: Any, body: bytes) -> int:
        ok = webhook.verify(
            SECRET.encode(),
            headers.get("X-Siyu-Timestamp", ""),
            body,
            headers.get("X-Siyu-Signature", ""),
        )
        key = headers.get("X-Siyu-Idempotency-Key", "")
        with self.lock:
            if not ok or json.loads(body)["id"] != key:
                self.bad_signatures += 1
                return 401
            self.deliveries[key] += 1
            self.applied.add(key)  # a set: the second delivery of a key changes nothing
        return 200

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.deliveries.values())


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.receive(self.headers, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.request_queue_size = 128
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", state
    finally:
        server.shutdown()
        server.server_close()


def _seed(db: Session, url: str) -> tuple[str, set[str]]:
    brand = access_brand(db, SYSTEM, "a-coffee")
    actions.save_settings(db, SYSTEM, brand, "webhook", {"url": url, "secret": SECRET})
    now = utcnow() - timedelta(seconds=1)
    keys = [f"kill-{i:05d}" for i in range(ROWS)]
    rows = [
        {
            "id": new_id(),
            "brand_id": brand.id,
            "idem_key": key,
            "channel": "webhook",
            "customer_id": None,
            "payload": {"content": {"n": key}},
            "status": "pending",
            "attempts": 0,
            "available_at": now,
            "created_at": now,
        }
        for key in keys
    ]
    for i in range(0, ROWS, 2000):
        db.execute(insert(Outbox), rows[i : i + 2000])
    db.commit()
    return brand.id, set(keys)


def _start(db_url: str, lease: float, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": db_url,
        "SIYU_OUTBOX_LEASE_SECONDS": str(lease),
        "SIYU_OUTBOX_BATCH": "50",
        "SIYU_CHANNEL_TIMEOUT": "5",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(SIYU), "worker", "--only", "channels.outbox", "--interval", "0.2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _worker_id(proc: subprocess.Popen[bytes]) -> str:
    return f"{socket.gethostname()[:48]}:{proc.pid}"


def _count(db: Session, *where: Any) -> int:
    db.rollback()  # a fresh snapshot (SQLite WAL)
    return int(db.scalar(select(func.count()).select_from(Outbox).where(*where)) or 0)


def _wait(predicate: Any, timeout: float, what: str, db: Session | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            where = ""
            if db is not None:
                db.rollback()
                where = str(Counter(s for (s,) in db.execute(select(Outbox.status))))
            raise AssertionError(f"timed out waiting for {what} {where}")
        time.sleep(0.1)


def _kill_mid_run(
    db: Session, victim: subprocess.Popen[bytes], state: Receiver
) -> tuple[set[str], int]:
    """SIGKILL ``victim`` once deliveries are under way and it holds claimed rows; return
    the keys it held claimed at that moment (frozen: it is dead, and the lease has not
    expired, so nobody else can have taken them yet) and the deliveries seen before."""
    _wait(lambda: state.total >= ROWS // 5, 60, "a fifth of the deliveries")
    me = _worker_id(victim)
    holding = (Outbox.status == "sending", Outbox.claimed_by == me)
    _wait(lambda: _count(db, *holding) > 0, 30, "the victim to hold a claim")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    seen = state.total
    db.rollback()
    held = set(db.scalars(select(Outbox.idem_key).where(*holding)))
    return held, seen


def _check(db: Session, state: Receiver, keys: set[str], held: set[str]) -> dict[str, Any]:
    db.rollback()
    statuses = Counter(s for (s,) in db.execute(select(Outbox.status)))
    assert statuses == Counter({"sent": ROWS}), statuses
    assert state.bad_signatures == 0
    assert set(state.deliveries) == keys  # no loss, nothing foreign
    assert state.applied == keys and len(state.applied) == ROWS  # effectively once
    duplicated = {k: n for k, n in state.deliveries.items() if n > 1}
    raw_duplicates = sum(n - 1 for n in duplicated.values())
    # at-least-once only bites where the killed worker had a send in flight
    assert raw_duplicates <= len(held)
    assert set(duplicated) <= held
    assert all(n == 2 for n in duplicated.values())
    return {"held_at_kill": len(held), "raw_duplicates": raw_duplicates}


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    path = tmp_path / "workers"
    path.mkdir()
    return path


def _stop(procs: list[subprocess.Popen[bytes]]) -> list[int | None]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(30))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(None)
    return codes


def test_three_workers_one_killed_postgres(
    db: Session,
    world: Any,
    engine: Engine,
    db_url: str,
    receiver: tuple[str, Receiver],
    logs: Path,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("three concurrent workers need PostgreSQL (SQLite: see the next test)")
    url, state = receiver
    _, keys = _seed(db, url)
    started = time.monotonic()
    procs = [_start(db_url, 6.0, logs / f"w{i}.log") for i in range(3)]
    try:
        held, seen = _kill_mid_run(db, procs[0], state)
        survivors = procs[1:]
        _wait(lambda: _count(db, Outbox.status == "sent") == ROWS, WAIT, "every row sent", db)
        codes = _stop(survivors)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    report = _check(db, state, keys, held)
    assert codes == [0, 0], (codes, [(logs / f"w{i}.log").read_text()[-2000:] for i in (1, 2)])
    for i in (1, 2):
        assert "stopped" in (logs / f"w{i}.log").read_text()
    # the load was shared: each survivor delivered rows, the victim some before it died
    owners = Counter(o for (o,) in db.execute(select(Outbox.claimed_by)))
    assert all(owners[_worker_id(p)] > 0 for p in survivors), owners
    assert 0 < seen < ROWS
    report |= {"seconds": round(time.monotonic() - started, 1), "owners": sorted(owners.values())}
    print(f"\noutbox kill (postgresql, 3 workers): {report}")


def test_one_worker_killed_and_restarted_sqlite(
    db: Session,
    world: Any,
    engine: Engine,
    db_url: str,
    receiver: tuple[str, Receiver],
    logs: Path,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the single-worker run is the SQLite case")
    url, state = receiver
    _, keys = _seed(db, url)
    started = time.monotonic()
    first = _start(db_url, 3.0, logs / "first.log")
    procs = [first]
    try:
        held, seen = _kill_mid_run(db, first, state)
        assert _count(db, Outbox.status == "sent") < ROWS  # really mid-run
        second = _start(db_url, 3.0, logs / "second.log")
        procs.append(second)
        _wait(lambda: _count(db, Outbox.status == "sent") == ROWS, WAIT, "every row sent", db)
        codes = _stop([second])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    report = _check(db, state, keys, held)
    assert codes == [0], (logs / "second.log").read_text()[-2000:]
    assert 0 < seen < ROWS
    report |= {"seconds": round(time.monotonic() - started, 1)}
    print(f"\noutbox kill (sqlite, 1 worker restarted): {report}")
