"""The SIGKILL during enrollments: what the gallery holds after a server dies mid-write.

A fresh server on the session's gallery gets simultaneous enrollments (unique names, two photos
each) and is SIGKILLed once a third are acknowledged. The gallery file is checked read-only
(SQLite integrity, schema, unit vectors, the model's fingerprint), then a new server lists the
people: every acknowledged enrollment must be there, no enrollment may be partial, the people
enrolled before must be unchanged.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from toolchain.bench.loadtest.inputs import LoadConfig, variant
from toolchain.bench.loadtest.server import REQUEST_TIMEOUT_S, Outcome, serving
from toolchain.core.contracts import ONNX_FILE
from toolchain.core.integrity.fingerprint import model_fingerprint
from toolchain.core.integrity.galleries import check_gallery_file
from toolchain.core.paths import Layout


@dataclass
class KillPhase:
    """The SIGKILL during enrollments and what the gallery held afterwards.

    ``statuses`` counts the burst's answers by HTTP status (``"0"``: none, the server died).
    """

    sent: int
    acknowledged: int
    statuses: dict[str, int]
    unanswered: int
    present_whole: int
    partial: list[str]
    lost_acknowledged: list[str]
    before_unchanged: bool
    integrity_problems: list[str]

    @property
    def intact(self) -> bool:
        """No problem found, nothing partial, nothing acknowledged lost, the rest unchanged."""
        return (not self.integrity_problems and not self.partial
                and not self.lost_acknowledged and self.before_unchanged)


def run_kill(config: LoadConfig, artifacts: Path, gallery: Path,
             people: dict[str, list[Path]], scratch: Path) -> KillPhase:
    """SIGKILL a server once a third of a burst of enrollments is acknowledged; check.

    Enrollment ``i`` stores two new files (:func:`variant`) of one person's photos as
    ``kill-<i>``: afterwards that name holds two embeddings or is absent.
    """
    sources = [paths[:2] for paths in people.values() if len(paths) >= 2]
    pairs = [[variant(p, f"kill-{i:03d}", scratch) for p in sources[i % len(sources)]]
             for i in range(config.kill_enrollments)]
    options = ("--workers", str(config.workers), "--queue", str(config.kill_enrollments))
    with serving(config.python, artifacts, gallery, *options) as server:
        before = server.people()
        enough = threading.Event()
        acknowledged: list[str] = []
        wanted = max(1, config.kill_enrollments // 3)

        def enroll(i: int) -> Outcome:
            name = f"kill-{i:03d}"
            outcome = server.timed("enroll", f"/v1/people/{name}/faces",
                                   [("image", p) for p in pairs[i]])
            if outcome.status == 201:
                acknowledged.append(name)
                if len(acknowledged) >= wanted:
                    enough.set()
            return outcome

        with ThreadPoolExecutor(config.kill_enrollments) as pool:
            futures = [pool.submit(enroll, i) for i in range(config.kill_enrollments)]
            deadline = time.monotonic() + REQUEST_TIMEOUT_S
            while not enough.wait(0.05) and time.monotonic() < deadline:
                if all(f.done() for f in futures):
                    break
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
            outcomes = [f.result() for f in futures]
    acked = set(acknowledged)
    problems = check_gallery_file(gallery, _model_fingerprint(artifacts))
    with serving(config.python, artifacts, gallery) as server:
        after = server.people()
    partial = sorted(n for n, count in after.items() if n.startswith("kill-") and count != 2)
    return KillPhase(
        sent=len(outcomes), acknowledged=len(acked),
        statuses=dict(Counter(str(o.status) for o in outcomes)),
        unanswered=sum(o.status == 0 for o in outcomes),
        present_whole=sum(n.startswith("kill-") and c == 2 for n, c in after.items()),
        partial=partial, lost_acknowledged=sorted(n for n in acked if after.get(n) != 2),
        before_unchanged=all(after.get(n) == c for n, c in before.items()),
        integrity_problems=problems)


def _model_fingerprint(artifacts: Path) -> str:
    model = Layout(artifacts).models_dir / ONNX_FILE
    return model_fingerprint(model, hashlib.sha256(model.read_bytes()).hexdigest())
