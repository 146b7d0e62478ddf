"""Benchmark the service against the floor: in process, and over HTTP on the production server.

    scripts/bench            # full run (a few minutes)
    scripts/bench --quick    # smoke run, under a minute
    scripts/bench --layers   # only table 2b: where a served call's CPU goes, layer by layer

Prints one table per part and exits 0. Ratios to the floor are what count: the floor is the bare
endpoint an integrator would write (`benchmarks/floor.py`: Flask's own `request.get_json()`, then
{"cards": []}) on gunicorn sync workers; ours is the service on granian as `cds-service serve` runs
it. Both run at once and are loaded in turn (ours, floor, ours, floor, ...) so that the noise of a
shared machine falls on both. CPU per request is read from the server processes (psutil).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil
import uuid_utils
from sqlalchemy.engine import make_url

from benchmarks.charts import hook_request
from cds_service.core import fhir_validation
from cds_service.core.cards import CardContext, answer_json, render_cards
from cds_service.core.envelope import parse_envelope
from cds_service.core.fhir_validation import check_cards
from cds_service.core.findings import extract_findings
from cds_service.core.pipeline import decide
from cds_service.core.rules import evaluate
from cds_service.data_access.gather import gather_patient_data
from cds_service.knowledge_files import load_knowledge
from cds_service.server import GC_YOUNG_THRESHOLD
from cds_service.settings import PROJECT_ROOT, Settings
from cds_service.web.body import json_depth, parse_json

SERVICE_PATH = "/cds-services/back-spasm-patient-view"
SERVICE_COMMAND = ["-m", "benchmarks.service_server"]
FLOOR_COMMAND = ["-m", "gunicorn", "-k", "sync", "--log-level", "warning", "benchmarks.floor:app"]
FLOOR_PATH = "/floor"
#: The goals of the lean request path (throughput ratios at 100 / 1,000 resources, p99 at 100).
GOAL_RATIO = {100: 0.8, 1000: 1.2}
GOAL_P99_MS = 50.0
GOAL_INPROCESS_MS = {100: 0.5, 1000: 5.0}


# --- statistics and tables -----------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}\n{line}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    print(line)
    for row in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


# --- part 1: in process ----------------------------------------------------------------------


def pipeline(kb, settings: Settings, today: dt.date) -> Callable[[bytes], bytes]:
    """Request JSON in, response JSON out: what the service route does, without HTTP."""
    service = kb.services[SERVICE_PATH.rpartition("/")[2]]

    def run(body: bytes) -> bytes:
        if json_depth(body) > settings.max_json_depth:
            raise ValueError("too deep")
        request = parse_envelope(parse_json(body), kb.hooks[service.hook])
        data = gather_patient_data(service, request, max_resources=settings.max_resources)
        decision = decide(
            kb,
            data.resources,
            request.patient_id,
            today,
            settings.max_cards,
            lambda: str(uuid_utils.uuid7()),
            service=service,
        )
        return orjson.dumps(answer_json(decision.cards))

    return run


def _new_patients_p50(run: Callable[[bytes], bytes], size: int, today: dt.date) -> float:
    """Median ms of a call for a patient not seen before, after other patients' calls: what
    the service remembers by content (validated records) does not help it."""
    count = 100 if size <= 100 else (20 if size <= 1000 else 3)
    bodies = [
        json.dumps(hook_request(size, today, f"bench-new-{size}-{i}")).encode()
        for i in range(count)
    ]
    times = []
    for body in bodies:
        start = time.perf_counter()
        run(body)
        times.append((time.perf_counter() - start) * 1000)
    return percentile(times, 50)


def bench_inprocess(sizes: list[int], budget_s: float) -> list[list[str]]:
    settings = Settings()
    kb = load_knowledge(settings.knowledge_dir)
    # as a worker does once its application is built (cds_service.server.worker_app)
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *older)
    today = dt.datetime.now(dt.UTC).date()
    run = pipeline(kb, settings, today)
    floor = json.loads
    rows = []
    for size in sizes:
        body = json.dumps(hook_request(size, today)).encode()
        cards = json.loads(run(body))["cards"]
        times, floor_times = [], []
        deadline = time.perf_counter() + budget_s
        while time.perf_counter() < deadline or len(times) < (20 if size <= 1000 else 3):
            start = time.perf_counter()
            run(body)
            times.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            floor(body)
            floor_times.append((time.perf_counter() - start) * 1000)
        p50 = percentile(times, 50)
        rows.append(
            [
                f"{size:,}",
                f"{len(body) / 1024:,.0f}",
                str(len(cards)),
                str(len(times)),
                f"{p50:.2f}",
                f"{percentile(times, 95):.2f}",
                f"{percentile(times, 99):.2f}",
                f"{p50 / size * 1000:.1f}",
                f"{_new_patients_p50(run, size, today):.2f}",
                f"{percentile(floor_times, 50):.2f}",
            ]
        )
    gc.set_threshold(young, *older)
    return rows


def _cpu_ms(step: Callable[[], object], runs: int) -> float:
    """The median CPU time of a step in ms (CPU time: on a shared machine, waits do not count)."""
    times = []
    for _ in range(runs):
        start = time.thread_time()
        step()
        times.append((time.thread_time() - start) * 1000)
    return percentile(times, 50)


def bench_stages(sizes: list[int]) -> list[list[str]]:
    """Where the in-process time goes: each step of `pipeline`, timed on its own."""
    settings = Settings()
    kb = load_knowledge(settings.knowledge_dir)
    today = dt.datetime.now(dt.UTC).date()
    return [_stage_row(kb, settings, size, today) for size in sizes]


@dataclass
class Call:
    """One call on a chart, step by step: each step's input and output."""

    body: bytes
    service: Any
    hook: Any
    parsed: Any
    request: Any
    data: Any
    found: Any
    rules: Any
    evaluation: Any
    context: CardContext
    cards: list


def _decided(kb, settings: Settings, size: int, today: dt.date, pid: str = "bench-1") -> Call:
    """One call on a chart of `size` resources, run step by step."""
    body = json.dumps(hook_request(size, today, pid)).encode()
    service = kb.services[SERVICE_PATH.rpartition("/")[2]]
    hook = kb.hooks[service.hook]
    parsed = parse_json(body)
    request = parse_envelope(parsed, hook)
    data = gather_patient_data(service, request, max_resources=settings.max_resources)
    found = extract_findings(kb, data.resources, request.patient_id, today)
    rules = kb.service_rules(service)
    evaluation = evaluate(kb, found, today, rules)
    context = CardContext(request.patient_id, None, None)
    cards = render_cards(kb, evaluation, settings.max_cards, lambda: "u", context)
    return Call(
        body, service, hook, parsed, request, data, found, rules, evaluation, context, cards
    )


def _validate_new_patients(kb, settings: Settings, size: int, today: dt.date, runs: int) -> float:
    """Median CPU ms of the FHIR models' check for a patient not seen before, when other
    patients' calls came first (as in a worker that has been serving for a while)."""
    calls = [_decided(kb, settings, size, today, f"bench-stage-{size}-{i}") for i in range(runs)]
    pending = iter(calls)

    def validate_next() -> object:
        call = next(pending)
        return check_cards(call.cards, call.data.resources)

    gc.freeze()  # the prepared charts are not the collector's work in a worker
    try:
        return _cpu_ms(validate_next, runs)
    finally:
        gc.unfreeze()


def _stage_row(kb, settings: Settings, size: int, today: dt.date) -> list[str]:
    runs = 200 if size <= 100 else (30 if size <= 1000 else 3)
    c = _decided(kb, settings, size, today)

    def validate_cold() -> object:
        fhir_validation.forget_outcomes()
        return check_cards(c.cards, c.data.resources)

    steps: list[Callable[[], object]] = [
        lambda: json_depth(c.body),
        lambda: parse_json(c.body),
        lambda: parse_envelope(c.parsed, c.hook),
        lambda: gather_patient_data(c.service, c.request, max_resources=settings.max_resources),
        lambda: extract_findings(kb, c.data.resources, c.request.patient_id, today),
        lambda: evaluate(kb, c.found, today, c.rules),
        lambda: render_cards(kb, c.evaluation, settings.max_cards, lambda: "u", c.context),
        lambda: check_cards(c.cards, c.data.resources),
    ]
    timed = [f"{_cpu_ms(step, runs):.3f}" for step in steps]
    new_patient = _validate_new_patients(kb, settings, size, today, min(runs, 20))
    return [
        f"{size:,}",
        *timed,
        f"{new_patient:.3f}",
        f"{_cpu_ms(validate_cold, runs):.3f}",
    ]


def relevant_chart(size: int, today: dt.date) -> list[dict]:
    """`size` Conditions whose codes the rules read (back problems and red flags), all active."""
    codes = ["M62.830", "M54.50", "M51.26", "M48.061", "R32", "M54.31", "M43.16", "R33.9"]
    return [
        {
            "resourceType": "Condition",
            "id": f"relevant-{i}",
            "subject": {"reference": "Patient/bench-relevant"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {
                "coding": [
                    {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": codes[i % len(codes)]}
                ]
            },
            "onsetDateTime": (today - dt.timedelta(days=i % 900)).isoformat(),
        }
        for i in range(size)
    ]


def bench_relevant(sizes: list[int]) -> list[list[str]]:
    """The core (extract, evaluate, render) on charts where every Condition is read by a rule."""
    settings = Settings()
    kb = load_knowledge(settings.knowledge_dir)
    today = dt.datetime.now(dt.UTC).date()
    service = kb.services[SERVICE_PATH.rpartition("/")[2]]
    rows = []
    for size in sizes:
        resources = relevant_chart(size, today)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            decision = decide(
                kb, resources, "bench-relevant", today, 10, lambda: "u", service=service
            )
            times.append((time.perf_counter() - start) * 1000)
        best = min(times)
        rows.append(
            [f"{size:,}", str(len(decision.cards)), f"{best:.0f}", f"{best / size * 1000:.1f}"]
        )
    return rows


# --- part 2: over HTTP ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *command],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def layer_command(layer: str) -> list[str]:
    return ["-m", "benchmarks.layer_server", "--layer", layer]


@contextlib.contextmanager
def running_servers(
    workers: int, layers: tuple[str, ...] = ()
) -> Iterator[dict[str, tuple[int, psutil.Process]]]:
    """Ours (granian) and the floor (gunicorn sync), and any `layers` of ours alone
    (`layer_server`), each with `workers` workers, at once."""
    ports = {name: free_port() for name in ("ours", "floor", *layers)}
    with tempfile.TemporaryDirectory() as instance:
        env = {**os.environ, "CDS_INSTANCE_PATH": instance, "CDS_LOG_LEVEL": "WARNING"}
        subprocess.run(
            [sys.executable, "-m", "cds_service", "db", "upgrade"],
            env=env,
            check=True,
            capture_output=True,
        )
        commands = {
            "ours": [*SERVICE_COMMAND, "--port", str(ports["ours"]), "--workers", str(workers)],
            "floor": [*FLOOR_COMMAND, "-w", str(workers), "-b", f"127.0.0.1:{ports['floor']}"],
        }
        for layer in layers:
            port = ["--port", str(ports[layer]), "--workers", str(workers)]
            commands[layer] = [*layer_command(layer), *port]
        processes = {name: _start(command, env) for name, command in commands.items()}
        try:
            for name, process in processes.items():
                wait_ready(ports[name], process)
            yield {name: (ports[name], psutil.Process(p.pid)) for name, p in processes.items()}
        finally:
            for process in processes.values():
                process.terminate()
            for process in processes.values():
                process.wait(timeout=20)


@contextlib.contextmanager
def running_server(workers: int) -> Iterator[tuple[int, psutil.Process]]:
    """Our service alone (for the memory part)."""
    with running_servers(workers) as servers:
        yield servers["ours"]


def cpu_seconds(master: psutil.Process) -> float:
    """User and system CPU of a server: its main process and every worker."""
    total = 0.0
    for process in [master, *master.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def wait_ready(port: int, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"benchmark server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("benchmark server did not start")


@dataclass
class LoadResult:
    p50: float
    p95: float
    p99: float
    rps: float
    errors: int
    calls: int


def _summary(latencies_ms: list[float], errors: int, seconds: float) -> LoadResult:
    return LoadResult(
        percentile(latencies_ms, 50),
        percentile(latencies_ms, 95),
        percentile(latencies_ms, 99),
        len(latencies_ms) / seconds if seconds else 0.0,
        errors,
        len(latencies_ms),
    )


WRK_SCRIPT = """
wrk.method = "POST"
local f = io.open("%s", "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %%d, "seconds": %%f, "p50": %%f, "p95": %%f, "p99": %%f, '
    .. '"errors": %%d}\\n', summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def wrk_available() -> bool:
    return os.environ.get("CDS_BENCH_CLIENT", "wrk") == "wrk" and shutil.which("wrk") is not None


def wrk_load(port: int, path: str, body: bytes, clients: int, seconds: float) -> LoadResult:
    """The load from wrk (C, keep-alive): far less client CPU than Python threads."""
    with tempfile.TemporaryDirectory() as folder:
        body_file = Path(folder) / "body.json"
        body_file.write_bytes(body)
        script = Path(folder) / "post.lua"
        script.write_text(WRK_SCRIPT % body_file)
        command = [
            "wrk",
            f"-t{min(2, clients)}",
            f"-c{clients}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    return LoadResult(
        figures["p50"],
        figures["p95"],
        figures["p99"],
        figures["requests"] / figures["seconds"],
        figures["errors"],
        figures["requests"],
    )


def measure(port: int, path: str, body: bytes, clients: int, seconds: float) -> LoadResult:
    if wrk_available():
        return wrk_load(port, path, body, clients, seconds)
    return load(port, path, body, clients, seconds=seconds)


def load(
    port: int, path: str, body: bytes, clients: int, *, seconds: float = 0, calls: int = 0
) -> LoadResult:
    """`clients` keep-alive connections posting `body` for `seconds` (or `calls` in total)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    remaining = [calls]
    deadline = time.perf_counter() + seconds if seconds else float("inf")
    headers = {"Content-Type": "application/json"}

    def next_call() -> bool:
        if calls:
            with lock:
                if remaining[0] <= 0:
                    return False
                remaining[0] -= 1
                return True
        return time.perf_counter() < deadline

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        while next_call():
            start = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                mine.append((time.perf_counter() - start) * 1000)
            else:
                with lock:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return _summary(latencies, errors[0], time.perf_counter() - started)


def worker_rss_mb(master: psutil.Process) -> list[float]:
    return [child.memory_info().rss / 2**20 for child in master.children()]


@dataclass
class Side:
    """One server's figures over the rounds of one chart size."""

    rps: list[float]
    p99: list[float]
    cpu_us: list[float]
    errors: int = 0

    def add(self, result: LoadResult, cpu_s: float) -> None:
        self.rps.append(result.rps)
        self.p99.append(result.p99)
        self.cpu_us.append(cpu_s / result.calls * 1e6 if result.calls else float("nan"))
        self.errors += result.errors


def median(values: list[float]) -> float:
    return percentile(values, 50)


def _path(server: str) -> str:
    return FLOOR_PATH if server == "floor" else SERVICE_PATH


def interleaved(
    servers: dict[str, tuple[int, psutil.Process]],
    body: bytes,
    clients: int,
    seconds: float,
    rounds: int,
) -> dict[str, Side]:
    """Each server loaded in turn, `rounds` times over, with the same body: its figures."""
    sides = {name: Side([], [], []) for name in servers}
    for name, (port, _) in servers.items():
        load(port, _path(name), body, 4, calls=100)  # warm every worker
    for _ in range(rounds):
        for name, (port, master) in servers.items():
            before = cpu_seconds(master)
            result = measure(port, _path(name), body, clients, seconds)
            sides[name].add(result, cpu_seconds(master) - before)
    return sides


def bench_http(
    sizes: list[int], workers: int, clients: int, seconds: float, rounds: int
) -> list[list[str]]:
    """Ours against the floor, interleaved, on each chart size: req/s, p99, CPU per request."""
    today = dt.datetime.now(dt.UTC).date()
    rows: list[list[str]] = []
    with running_servers(workers) as servers:
        for size in sizes:
            body = json.dumps(hook_request(size, today)).encode()
            sides = interleaved(servers, body, clients, seconds, rounds)
            ours, floor = sides["ours"], sides["floor"]
            ratios = [o / f for o, f in zip(ours.rps, floor.rps, strict=True) if f]
            goal = GOAL_RATIO.get(size)
            rows.append(
                [
                    f"{size:,}",
                    f"{len(body) / 1024:,.0f}",
                    f"{median(ours.rps):,.0f}",
                    f"{median(floor.rps):,.0f}",
                    " ".join(f"{r:.2f}" for r in ratios),
                    f">= {goal}" if goal else "",
                    f"{median(ours.p99):.1f}",
                    f"{median(floor.p99):.1f}",
                    f"{median(ours.cpu_us):,.0f}",
                    f"{median(floor.cpu_us):,.0f}",
                    f"{ours.errors}/{floor.errors}",
                ]
            )
    return rows


#: The layers of a served call, each on top of the one before (`layer_server`), then ours.
LAYER_ROWS = (
    ("stack", 'serving stack alone: granian, buffered body, Flask, {"cards": []}'),
    ("parse", "+ reading the body: depth scan, JSON parse"),
    ("core", "+ the core: envelope, gather, findings, rules, cards, FHIR check, answer"),
    ("no-audit-writes", "+ the service's hooks, security, metrics, audit records built"),
    ("ours", "+ audit records written ({database}): the service as served"),
)
#: The layers `layer_server` runs alone (every row but ours).
LAYERS = tuple(name for name, _ in LAYER_ROWS if name != "ours")


def database_name() -> str:
    """The audit database the benchmark's servers write to (CDS_DATABASE_URL, else SQLite)."""
    return make_url(Settings().resolved_database_url()).get_backend_name()


def bench_layers(
    size: int, workers: int, clients: int, seconds: float, rounds: int
) -> list[list[str]]:
    """CPU per request of each layer of a served call, alone on the same stack, and what each
    adds to the one before; the floor last, for scale."""
    body = json.dumps(hook_request(size, dt.datetime.now(dt.UTC).date())).encode()
    with running_servers(workers, LAYERS) as servers:
        sides = interleaved(servers, body, clients, seconds, rounds)
    return layer_table(sides, database_name())


def layer_table(sides: dict[str, Side], database: str) -> list[list[str]]:
    """Table 2b's rows: each layer's figures and its CPU over the layer before, then the floor."""
    rows: list[list[str]] = []
    below = 0.0
    for name, label in LAYER_ROWS:
        cpu = median(sides[name].cpu_us)
        label = label.replace("{database}", database)
        rows.append(_layer_row(name, label, sides[name], f"{cpu - below:+,.0f}"))
        below = cpu
    floor = "the floor: Flask get_json() on gunicorn sync"
    rows.append(_layer_row("floor", floor, sides["floor"], ""))
    return rows


def _layer_row(name: str, label: str, side: Side, added: str) -> list[str]:
    cpu = median(side.cpu_us)
    return [name, label, f"{median(side.rps):,.0f}", f"{cpu:,.0f}", added, f"{side.errors}"]


def bench_memory(size: int, calls: int, workers: int = 2) -> list[list[str]]:
    """Resident memory per worker after the first and the last thousand of `calls` calls."""
    body = json.dumps(hook_request(size, dt.datetime.now(dt.UTC).date())).encode()
    step = min(1000, calls)
    with running_server(workers) as (port, master):
        load(port, SERVICE_PATH, body, 8, calls=step)
        first = worker_rss_mb(master)
        load(port, SERVICE_PATH, body, 8, calls=calls - 2 * step)
        before_last = worker_rss_mb(master)
        load(port, SERVICE_PATH, body, 8, calls=step)
        last = worker_rss_mb(master)
    rows = []
    for index, (a, b, c) in enumerate(zip(first, before_last, last, strict=False)):
        rows.append(
            [str(index + 1), f"{calls:,}", f"{a:.1f}", f"{b:.1f}", f"{c:.1f}", f"{c - b:+.1f}"]
        )
    return rows


# --- main -----------------------------------------------------------------------------------


def print_layers(seconds: float, rounds: int) -> None:
    print_table(
        "2b. Where a served call's CPU goes, 100 resources: each layer alone on the same stack"
        f" (2 workers, 32 connections, {rounds} interleaved rounds of {seconds:.0f} s; CPU µs"
        " per request read from the server processes; added: over the layer before)",
        ["layer", "what runs", "req/s", "CPU µs/req", "added", "errors"],
        bench_layers(100, 2, 32, seconds, rounds),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    parser.add_argument(
        "--layers", action="store_true", help="only table 2b: where a served call's CPU goes"
    )
    args = parser.parse_args(argv)
    if args.layers:
        print_layers(3.0 if args.quick else 8.0, 2 if args.quick else 3)
        return 0
    if args.quick:
        sizes, budget, seconds, rounds, memory_calls = [100, 1000, 19_999], 1.0, 3.0, 2, 0
    else:
        sizes, budget, seconds, rounds, memory_calls = [100, 1000, 19_999], 4.0, 8.0, 3, 10_000

    print(
        f"cds-service benchmark ({'quick' if args.quick else 'full'}), {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}; HTTP load from "
        f"{'wrk' if wrk_available() else 'Python threads (install wrk for a lighter client)'}"
    )
    rows = bench_inprocess(sizes, budget)
    print_table(
        "1. In process: request JSON -> cards (ms; goals: <= 0.5 at 100, <= 5 at 1,000, linear;"
        " new patient: each call a chart not seen before)",
        [
            "resources",
            "KiB",
            "cards",
            "runs",
            "p50",
            "p95",
            "p99",
            "µs/resource",
            "new patient p50",
            "json p50",
        ],
        rows,
    )
    print_table(
        "1c. In process, step by step (CPU ms, median; validate: the FHIR models' check of what"
        " the cards cite and offer, remembered by content: for a chart seen before, for a new"
        " patient after others, and cold, with nothing remembered)",
        [
            "resources",
            "depth",
            "parse",
            "envelope",
            "gather",
            "findings",
            "rules",
            "cards",
            "validate",
            "new patient",
            "cold",
        ],
        bench_stages(sizes),
    )
    if not args.quick:
        print_table(
            "1b. In process: every Condition read by the rules (ms, best of 3; linear cost)",
            ["conditions", "cards", "ms", "µs/condition"],
            bench_relevant([1000, 4000, 19_990]),
        )
    http_rows = bench_http([100, 1000], 2, 32, seconds, rounds)
    print_table(
        f"2. Over HTTP, 2 workers, 32 connections, {rounds} interleaved round(s) "
        f"of {seconds:.0f} s:"
        " ours (granian) against the floor (Flask get_json() on gunicorn sync)"
        f" (ratio = our req/s / floor req/s per round; p99 goal <= {GOAL_P99_MS:.0f} ms at 100)",
        [
            "resources",
            "KiB",
            "req/s",
            "floor req/s",
            "ratio",
            "goal",
            "p99 ms",
            "floor p99",
            "CPU µs/req",
            "floor CPU",
            "errors",
        ],
        http_rows,
    )
    if args.quick:
        return 0
    print_layers(seconds, rounds)
    memory_rows = bench_memory(100, memory_calls)
    print_table(
        f"3. Memory per worker over {memory_calls:,} calls (MB resident)",
        ["worker", "calls", "after 1st 1000", "before last 1000", "after last 1000", "growth"],
        memory_rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
