"""SSH: time from `ssh` connect to the first painted console, and memory per session, with 20
sessions open at once on the embedded server (consoles forked from its warm fork server, and for
comparison started as new interpreters), plus the OpenSSH forced-command path for timing.

Everything is real: the OpenSSH client runs in tmux panes, `dispatch serve` and `sshd` listen on
loopback, each session is its own console process. "Painted" means the console's grid count and
footer are on the client's screen. Prints JSON lines.

    .venv/bin/python benchmarks/ssh.py [--sessions 20] [--orders 40]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "ssh"))

from harness import EmbeddedServer, OpenSshServer, Server, Term, dispatch, keygen  # noqa: E402


def painted(screen: str) -> bool:
    return "· sorted by" in screen and "^p palette" in screen


def summary(name: str, values: list[float], **extra: object) -> dict[str, object]:
    values = sorted(values)
    return {
        "bench": name, **extra, "n": len(values),
        "median_s": round(statistics.median(values), 3),
        "p95_s": round(values[max(0, int(len(values) * 0.95) - 1)], 3),
        "max_s": round(values[-1], 3), "min_s": round(values[0], 3),
    }


def open_sequentially(server: Server, key: Path, workdir: Path, n: int
                      ) -> tuple[list[Term], list[float]]:
    """Open n sessions one after the other, each timed while the earlier ones stay open."""
    terms, times = [], []
    for _ in range(n):
        started = time.monotonic()
        t = Term(server.ssh(key), workdir, 120, 36)
        t.wait_for(painted, timeout=60)
        times.append(time.monotonic() - started)
        terms.append(t)
    return terms, times


def open_at_once(server: Server, key: Path, workdir: Path, n: int) -> list[float]:
    started = time.monotonic()
    terms = [Term(server.ssh(key), workdir, 120, 36) for _ in range(n)]
    done: dict[int, float] = {}
    deadline = started + 120
    while len(done) < n and time.monotonic() < deadline:
        for i, t in enumerate(terms):
            if i not in done and painted(t.screen()):
                done[i] = time.monotonic() - started
        time.sleep(0.02)
    for t in terms:
        t.close()
    if len(done) < n:
        raise SystemExit(f"only {len(done)} of {n} sessions painted within 120 s")
    return list(done.values())


def memory(pid: int) -> dict[str, float]:
    """RSS, PSS and USS (private) of one process, in MiB, from /proc/PID/smaps_rollup."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[-1] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return {"rss": fields["Rss"], "pss": fields["Pss"],
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def bench_embedded(work: Path, db: str, key: Path, n: int, mode: str, extra: list[str]) -> None:
    work.mkdir()
    server = EmbeddedServer(work, db, "--max-sessions", str(n + 5), *extra)
    try:
        terms, times = open_sequentially(server, key, work, n)
        print(json.dumps(summary("ssh_connect_to_paint", times, server="embedded", consoles=mode,
                                 mode=f"one after another, up to {n} open")), flush=True)
        pids = [int(p) for p in re.findall(r"session \d+ for sue started \(pid (\d+)",
                                           server.log())]
        mem = [memory(p) for p in pids[-n:]]
        server_mem = memory(server.proc.pid)
        print(json.dumps({
            "bench": "ssh_memory_per_session", "server": "embedded", "consoles": mode,
            "sessions_open": n,
            "rss_mib_median": round(statistics.median(m["rss"] for m in mem), 1),
            "pss_mib_median": round(statistics.median(m["pss"] for m in mem), 1),
            "uss_mib_median": round(statistics.median(m["uss"] for m in mem), 1),
            "pss_mib_total": round(sum(m["pss"] for m in mem), 1),
            "server_rss_mib": round(server_mem["rss"], 1),
        }), flush=True)
        for t in terms:
            t.close()
        time.sleep(3)  # let the hung-up consoles go
        burst = open_at_once(server, key, work, n)
        print(json.dumps(summary("ssh_connect_to_paint", burst, server="embedded", consoles=mode,
                                 mode=f"{n} started at once")), flush=True)
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--orders", type=int, default=40)
    args = ap.parse_args()
    n = args.sessions
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        db = f"sqlite:///{work / 'bench.db'}"
        dispatch(db, "demo", "--orders", str(args.orders))
        key = keygen(work / "sue", "sue@bench")
        dispatch(db, "users", "add", "sue", "--role", "supervisor", "--key", str(key) + ".pub")

        for mode, extra in (("fork server", []), ("new interpreter", ["--no-fork-server"])):
            bench_embedded(work / mode.replace(" ", "-"), db, key, n, mode, extra)

        sshd = OpenSshServer(work, db)
        try:
            terms, times = open_sequentially(sshd, key, work, min(n, 5))
            print(json.dumps(summary("ssh_connect_to_paint", times, server="openssh",
                                     mode=f"one after another, up to {len(times)} open")),
                  flush=True)
            for t in terms:
                t.close()
        finally:
            sshd.stop()


if __name__ == "__main__":
    main()
