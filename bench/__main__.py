"""`make bench` / `python -m bench`: load, list scaling and isolation, with an echo baseline.

The bench starts its own servers as separate processes: the service (`python -m
mailaccounts_server serve` on a free loopback port, a fresh SQLite file unless --database-url is
given, a generated credential key) and a bare grpc.aio echo server (`python -m bench.echo_server`,
no interceptors). A separate load generator process drives them over loopback with a closed loop
of N in-flight grpc.aio calls. Server CPU time per call comes from /proc/<pid>/stat sampled at
the edges of each measured window. Results print as tables and go to bench/results/<time>.json.

--security plaintext,mtls+jwt adds, in the same run, a second service (--auth mtls+jwt, its own
throw-away CA, certificates, token key and policy) and a second echo over mutual TLS; the load
workloads run against both pairs and a "security" section compares them.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import postgres as bench_postgres
from bench import profiling, report, seed_db, servers
from bench.loadgen import LoadGenerator
from bench.procstat import machine_info
from bench.security import PLAINTEXT, SECURITY_MODES, ClientTls, create_mtls_jwt
from bench.stats import PointResult
from bench.workloads import WORKLOADS, Fixture, Identity

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EXTRA_WORKLOADS = ("list-scaling", "isolation")
# Issue target: GetAccount server CPU per call with mTLS+JWT over plaintext, TLS costs aside.
AUTH_OVERHEAD_TARGET = 1.15


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per point [5]")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per point [1]")
    p.add_argument("--concurrency", default="1,50", help="in-flight calls, comma-separated [1,50]")
    p.add_argument(
        "--workloads",
        default=",".join((*WORKLOADS, *EXTRA_WORKLOADS)),
        help=f"subset of {','.join((*WORKLOADS, *EXTRA_WORKLOADS))} [all]",
    )
    p.add_argument(
        "--database",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="sqlite: a fresh file; postgres: a throw-away PostgreSQL started for the run "
        "(Debian's postgresql package) [sqlite]",
    )
    p.add_argument(
        "--database-url",
        help="service database [a fresh SQLite file in a temp dir]; "
        "e.g. postgresql+psycopg://user:pw@127.0.0.1/db (rows are namespaced by run)",
    )
    p.add_argument(
        "--security",
        default=PLAINTEXT,
        help=f"transport/auth modes measured in the same run, from {','.join(SECURITY_MODES)}; "
        "must include plaintext, the baseline of the security ratios [plaintext]",
    )
    p.add_argument("--quick", action="store_true", help="very short run (smoke test)")
    p.add_argument("--json", type=Path, help="results file [bench/results/<timestamp>.json]")
    p.add_argument("--seed-accounts", type=int, default=200, help="accounts of the caller [200]")
    p.add_argument("--list-sizes", default="1000,10000,100000", help="list scaling sizes")
    p.add_argument("--list-calls", type=int, default=200, help="sequential calls per size [200]")
    p.add_argument("--isolation-concurrency", type=int, default=10)
    p.add_argument("--isolation-tests", type=int, default=100, help="TestConnection in flight")
    p.add_argument("--isolation-tenants", type=int, default=10, help="tenants sharing the tests")
    p.add_argument("--channels", type=int, default=1, help="client channels (TCP connections) [1]")
    p.add_argument(
        "--server-workers",
        type=int,
        default=1,
        help="service processes (serve --workers N; use --channels >= N so all get traffic) [1]",
    )
    p.add_argument("--call-timeout", type=float, default=10.0, help="deadline of each call (s)")
    p.add_argument("--server-log-level", default="WARNING", help="service log level [WARNING]")
    p.add_argument(
        "--py-spy",
        default="",
        metavar="WORKLOADS",
        help="after the run, profile the service with py-spy under these workloads "
        "(e.g. get,create) at the highest concurrency",
    )
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument(
        "--py-spy-mode",
        choices=profiling.MODES,
        default="gil",
        help="gil: GIL holder only [default]; all: every active thread; "
        "native: GIL holder with C frames (pauses the server)",
    )
    p.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (db, logs)")
    args = p.parse_args(argv)
    if args.quick:
        args.duration, args.warmup = min(args.duration, 0.5), min(args.warmup, 0.2)
        args.seed_accounts = min(args.seed_accounts, 60)
        args.list_sizes, args.list_calls = "100,1000", min(args.list_calls, 20)
        args.profile_seconds = min(args.profile_seconds, 2.0)
    args.concurrency = _ints(args.concurrency)
    args.list_sizes = _ints(args.list_sizes)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = set(args.workloads) - set(WORKLOADS) - set(EXTRA_WORKLOADS)
    if unknown:
        p.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    modes = {m.strip() for m in args.security.split(",") if m.strip()}
    if modes - set(SECURITY_MODES) or PLAINTEXT not in modes:
        p.error(f"--security takes plaintext plus any of {','.join(SECURITY_MODES[1:])}")
    args.security = [m for m in SECURITY_MODES if m in modes]  # plaintext first
    args.py_spy = [w.strip() for w in args.py_spy.split(",") if w.strip()]
    if set(args.py_spy) - set(WORKLOADS):
        p.error(f"--py-spy takes load workloads ({','.join(WORKLOADS)})")
    if not args.concurrency or min(args.concurrency) < 1 or args.duration <= 0:
        p.error("--concurrency needs positive integers and --duration a positive number")
    return args


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass
class Stack:
    """The servers and callers of one security mode: a service, its echo and their clients."""

    security: str
    service: servers.ServerProcess
    echo: servers.ServerProcess
    reader: Identity
    writer: Identity
    tls: ClientTls | None = None  # client side of mutual TLS; None for plaintext
    fixture: Fixture | None = None

    @property
    def tag(self) -> str:
        return "" if self.security == PLAINTEXT else f" [{self.security}]"


class Bench:
    """One run: owns the server processes, the load generator and the collected results."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.workdir = Path(tempfile.mkdtemp(prefix="mailaccounts-bench-"))
        self.postgres: Any = None
        if args.database == "postgres" and not args.database_url:
            self.postgres, args.database_url = bench_postgres.start(self.workdir / "pg")
            print(f"throw-away PostgreSQL on port {self.postgres.port}")
        self.database_url = args.database_url or f"sqlite:///{self.workdir / 'bench.db'}"
        tenant = f"bench-{self.run_id}-{uuid.uuid4().hex[:6]}"
        self.reader = Identity(tenant, "reader")
        self.writer = Identity(tenant, "writer")
        self.stacks: dict[str, Stack] = {}
        self.loadgen: LoadGenerator | None = None
        self.doc: dict[str, Any] = {"errors": []}

    @property
    def service(self) -> servers.ServerProcess | None:
        """The plaintext service: list scaling and isolation measure it alone."""
        stack = self.stacks.get(PLAINTEXT)
        return stack.service if stack is not None else None

    def _processes(self) -> list[servers.ServerProcess]:
        return [proc for stack in self.stacks.values() for proc in (stack.service, stack.echo)]

    # -- lifecycle ------------------------------------------------------------------------------

    def _spawn_stack(self, security: str) -> Stack:
        a = self.args
        svc_args: list[str] = []
        echo_args: list[str] = []
        tls: ClientTls | None = None
        reader, writer, database_url = self.reader, self.writer, self.database_url
        slug = security.replace("+", "-")
        if security != PLAINTEXT:
            material = create_mtls_jwt(self.workdir / slug)
            svc_args, echo_args, tls = material.service_args, material.tls_args, material.client
            # Own SQLite file; in a shared --database-url its own tenant keeps the rows apart.
            database_url = a.database_url or f"sqlite:///{self.workdir / f'bench-{slug}.db'}"
            tenant = f"{self.reader.tenant_id}-{slug}"
            reader = Identity(tenant, "reader", material.token(tenant, "reader"))
            writer = Identity(tenant, "writer", material.token(tenant, "writer"))
        suffix = "" if security == PLAINTEXT else f"-{slug}"
        service = servers.start_service(
            self.workdir,
            database_url,
            log_level=a.server_log_level,
            allow_network="127.0.0.0/8",
            max_tests_per_tenant=200,
            workers=a.server_workers,
            name=f"service{suffix}",
            extra_args=svc_args,
        )
        echo = servers.start_echo(self.workdir, name=f"echo{suffix}", extra_args=echo_args)
        return Stack(security, service, echo, reader, writer, tls)

    def start(self) -> None:
        for security in self.args.security:
            # One mode at a time: services sharing a --database-url must not migrate it at once.
            stack = self._spawn_stack(security)
            self.stacks[security] = stack
            creds = stack.tls.credentials() if stack.tls is not None else None
            t_echo = servers.wait_serving(stack.echo, credentials=creds)
            t_svc = servers.wait_serving(stack.service, servers.SERVICE_NAME, credentials=creds)
            print(
                f"servers SERVING ({security}): service pid {stack.service.pid} on "
                f"{stack.service.target} ({t_svc:.1f}s), echo pid {stack.echo.pid} on "
                f"{stack.echo.target} ({t_echo:.1f}s)"
            )
        self.loadgen = LoadGenerator()
        print(f"load generator: pid {self.loadgen.pid}")

    def close(self) -> None:
        if self.loadgen is not None:
            self.loadgen.close()
        for proc in self._processes():
            proc.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.args.keep_workdir:
            print(f"workdir kept: {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self, command: str, timeout: float, **kwargs: Any) -> Any:
        assert self.loadgen is not None
        try:
            return self.loadgen.run(command, timeout=timeout, **kwargs)
        except TimeoutError:
            # The child is still busy with the old command: replace it to stay in step.
            self.loadgen.close()
            self.loadgen = LoadGenerator()
            raise

    def _section_failed(self, name: str, exc: BaseException) -> None:
        message = f"{name}: {type(exc).__name__}: {exc}"
        print(f"!! {message}", file=sys.stderr)
        self.doc["errors"].append(message)
        for proc in self._processes():
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{proc.name} server died:\n{proc.log_tail()}") from exc

    # -- sections -------------------------------------------------------------------------------

    def seed(self) -> Fixture:
        """Seeds every mode's service through CreateAccount; returns the plaintext fixture."""
        for stack in self.stacks.values():
            start = time.perf_counter()
            stack.fixture = self._run(
                "seed",
                timeout=300,
                target=stack.service.target,
                reader=stack.reader,
                writer=stack.writer,
                count=self.args.seed_accounts,
                tls=stack.tls,
            )
            print(
                f"seeded {len(stack.fixture.account_ids)} accounts for "
                f"{stack.reader.tenant_id}/reader via CreateAccount{stack.tag} in "
                f"{time.perf_counter() - start:.1f}s"
            )
        fixture = self.stacks[PLAINTEXT].fixture
        assert fixture is not None
        return fixture

    def point(
        self, stack: Stack, kind: str, workload: str, concurrency: int, duration: float
    ) -> PointResult:
        server = stack.echo if kind == "echo" else stack.service
        assert stack.fixture is not None
        a = self.args
        result: PointResult = self._run(
            "point",
            timeout=a.warmup + duration + 2 * a.call_timeout + 60,
            target=server.target,
            kind=kind,
            workload=workload,
            fixture=stack.fixture,
            concurrency=concurrency,
            server_pid=server.pid,
            warmup_s=a.warmup,
            duration_s=duration,
            call_timeout_s=a.call_timeout,
            channels=a.channels,
            security=stack.security,
            tls=stack.tls,
        )
        label = report.label(kind, workload, stack.security)
        width = 7 if len(self.stacks) == 1 else 18
        print(
            f"  {label:<{width}} c={concurrency:<3} {result.throughput:8.0f} calls/s  "
            f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  "
            f"errors {result.error_count}  server {result.server_cpu_per_call_us:6.0f} µs/call",
            flush=True,
        )
        return result

    def load(self) -> list[PointResult]:
        workloads = [w for w in WORKLOADS if w in self.args.workloads]
        points: list[PointResult] = []
        if not workloads:
            return points
        print(
            f"\n== load: {', '.join(workloads)} at concurrency "
            f"{','.join(map(str, self.args.concurrency))}, {' and '.join(self.stacks)} =="
        )
        # Modes interleave per concurrency, so slow drift of the machine hits both alike.
        for concurrency in self.args.concurrency:
            for stack in self.stacks.values():
                for kind, workload in [("echo", "echo"), *(("service", w) for w in workloads)]:
                    try:
                        points.append(
                            self.point(stack, kind, workload, concurrency, self.args.duration)
                        )
                    except (RuntimeError, TimeoutError) as exc:
                        self._section_failed(f"{workload}{stack.tag} c={concurrency}", exc)
        return points

    def list_scaling(self) -> list[dict[str, Any]]:
        assert self.service is not None
        print(
            f"\n== list scaling: first page (50) of {self.args.list_calls} sequential "
            f"ListAccounts, users with {', '.join(map(str, self.args.list_sizes))} accounts =="
        )
        rows: list[dict[str, Any]] = []
        for size in self.args.list_sizes:
            who = Identity(self.reader.tenant_id, f"list{size}")
            try:
                seed_s = seed_db.seed_accounts(self.database_url, who, size)
                result, total = self._run(
                    "list_latency",
                    timeout=300,
                    target=self.service.target,
                    who=who,
                    calls=self.args.list_calls,
                    server_pid=self.service.pid,
                    warmup_s=min(self.args.warmup, 0.5),
                    max_s=120.0,
                )
            except Exception as exc:  # noqa: BLE001 - one size failing keeps the others
                self._section_failed(f"list scaling {size}", exc)
                continue
            rows.append({"accounts": size, "total_size": total, "seed_s": seed_s, "result": result})
            print(
                f"  {size:>7} accounts: p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
                f"  server {result.server_cpu_per_call_us:7.0f} µs/call  (seeded in {seed_s:.1f}s)",
                flush=True,
            )
        return rows

    def isolation(self, fixture: Fixture) -> dict[str, Any]:
        assert self.service is not None
        a = self.args
        print(
            f"\n== isolation: GetAccount at concurrency {a.isolation_concurrency}, alone and "
            f"with {a.isolation_tests} TestConnection calls stuck on a blackhole =="
        )
        try:
            result: dict[str, Any] = self._run(
                "isolation",
                timeout=2 * (a.warmup + a.duration) + 3 * a.call_timeout + 120,
                target=self.service.target,
                server_pid=self.service.pid,
                fixture=fixture,
                concurrency=a.isolation_concurrency,
                tests_in_flight=a.isolation_tests,
                tenants=a.isolation_tenants,
                warmup_s=a.warmup,
                duration_s=a.duration,
                call_timeout_s=a.call_timeout,
            )
        except Exception as exc:  # noqa: BLE001
            self._section_failed("isolation", exc)
            return {"status": "failed", "reason": str(exc).splitlines()[0]}
        if result["status"] != "ok":
            print(f"  skipped: {result['reason']}")
        return result

    def profile(self) -> dict[str, Any]:
        """py-spy on each mode's service; plaintext results keyed by workload, others by
        "workload [mode]"."""
        py_spy = profiling.find_py_spy()
        if py_spy is None:
            print("\n(py-spy not found: .venv/bin/pip install py-spy)")
            return {"status": "skipped", "reason": "py-spy not installed"}
        concurrency = max(self.args.concurrency)
        seconds = self.args.profile_seconds
        print(
            f"\n== py-spy profile of the service, {seconds:.0f}s per workload at c={concurrency} =="
        )
        out: dict[str, Any] = {}
        for stack, workload in ((s, w) for s in self.stacks.values() for w in self.args.py_spy):
            key = workload + stack.tag
            slug = "" if stack.security == PLAINTEXT else f"{stack.security.replace('+', '-')}-"
            path = RESULTS_DIR / f"{self.run_id}-pyspy-{self.args.py_spy_mode}-{slug}{workload}.txt"
            spy = profiling.start(
                py_spy,
                stack.service.pid,
                seconds + self.args.warmup,
                path,
                mode=self.args.py_spy_mode,
            )
            try:
                point = self.point(stack, "service", workload, concurrency, seconds)
            finally:
                try:
                    _, err = spy.communicate(timeout=seconds + 30)
                except Exception:  # noqa: BLE001
                    spy.kill()
                    err = b""
            if not path.exists():
                out[key] = {"status": "failed", "reason": err.decode(errors="replace")[-500:]}
                print(f"  py-spy failed: {out[key]['reason']}")
                continue
            summary = profiling.summarize(path)
            out[key] = {"point": point, "collapsed_stacks": str(path), **summary}
            print(profiling.format_summary(f"{key} ({self.args.py_spy_mode})", summary))
        return out

    def security_section(self, points: list[PointResult]) -> dict[str, Any]:
        """Plaintext vs each other mode, and the issue's target for GetAccount at the top
        concurrency (absent when get was not measured)."""
        rows = report.security_rows(points)
        section: dict[str, Any] = {"modes": self.args.security, "rows": rows}
        top = max(self.args.concurrency)
        row = next((r for r in rows if r["workload"] == "get" and r["concurrency"] == top), None)
        if row is not None:
            measured = row["auth_overhead_beyond_tls"]
            section["target"] = {
                "workload": "get",
                "concurrency": top,
                "security": row["security"],
                "max": AUTH_OVERHEAD_TARGET,
                "measured": measured,
                "met": measured <= AUTH_OVERHEAD_TARGET,
            }
        return section

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        machine = machine_info()
        notes = NOTES + (SECURITY_NOTES if len(a.security) > 1 else [])
        self.doc.update(
            machine=machine.as_dict(),
            config={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
            database_url=self.database_url.split("@")[-1],
            notes=notes,
        )
        print(f"mailaccounts bench {machine.date}")
        print(
            f"machine: {machine.nproc} CPUs ({machine.cpu_model}), load avg {machine.loadavg}, "
            f"Linux {machine.kernel}"
        )
        print(
            f"software: Python {machine.python}, grpcio {machine.grpcio}, "
            f"protobuf {machine.protobuf}, SQLAlchemy {machine.sqlalchemy}"
        )
        for note in notes:
            print(f"note: {note}")
        print(
            f"database: {self.doc['database_url']}; service log level {a.server_log_level}; "
            f"closed loop on {a.channels} channel(s), warm-up {a.warmup:g}s, "
            f"window {a.duration:g}s per point, call deadline {a.call_timeout:g}s"
        )
        self.start()
        fixture = self.seed()
        points = self.load()
        self.doc["points"] = [
            {**p.as_dict(), "vs_echo": report.echo_ratios(p, _echo_for(points, p))}
            for p in points
            if p.target == "service"
        ] + [p.as_dict() for p in points if p.target == "echo"]
        if len(a.security) > 1:
            self.doc["security"] = self.security_section(points)
        if "list-scaling" in a.workloads:
            rows = self.list_scaling()
            self.doc["list_scaling"] = {"rows": rows}
            if len(rows) >= 2:
                ratio = rows[-1]["result"].p50_ms / rows[0]["result"].p50_ms
                self.doc["list_scaling"]["largest_over_smallest_p50"] = ratio
        if "isolation" in a.workloads:
            self.doc["isolation"] = self.isolation(fixture)
        if a.py_spy:
            self.doc["profiles"] = self.profile()
        self.print_report(points)
        return self.doc

    def print_report(self, points: list[PointResult]) -> None:
        a = self.args
        print("\n" + "=" * 100)
        if points:
            print(
                f"LOAD  (closed loop; warm-up {a.warmup:g}s, window {a.duration:g}s; "
                "ratios are service / echo at the same concurrency;"
            )
            print(
                "       srv CPU% = server CPU time / wall time, 100% = one core; "
                "the load generator shares the same cores)"
            )
            print(report.load_table(points))
        security = self.doc.get("security")
        if security is not None:
            print(
                "\nSECURITY  (server µs/call of each mode in this run; svc x and echo x are "
                "mode / plaintext; the echo over\n"
                "          mTLS pays the same TLS costs, so auth beyond TLS = svc x / echo x; "
                "thr/echo = throughput / echo's, same mode)"
            )
            print(report.security_table(security["rows"]))
            target = security.get("target")
            if target is not None:
                verdict = "met" if target["met"] else "MISSED"
                print(
                    f"target: {target['workload']} auth overhead beyond TLS at c="
                    f"{target['concurrency']} {target['measured']:.2f}x "
                    f"(<= {target['max']:.2f}x): {verdict}"
                )
        scaling = self.doc.get("list_scaling")
        if scaling and scaling["rows"]:
            print(
                f"\nLIST SCALING  (ListAccounts page_size 50, first page, {a.list_calls} "
                "sequential calls per size)"
            )
            print(report.list_scaling_table(scaling["rows"]))
            ratio = scaling.get("largest_over_smallest_p50")
            if ratio is not None:
                big, small = scaling["rows"][-1]["accounts"], scaling["rows"][0]["accounts"]
                print(f"p50 ratio {big}/{small} accounts: {ratio:.2f}x")
        iso = self.doc.get("isolation")
        if iso is not None:
            print(
                f"\nISOLATION  (GetAccount at concurrency {a.isolation_concurrency}; "
                f"{a.isolation_tests} TestConnection to a loopback blackhole over "
                f"{a.isolation_tenants} tenants)"
            )
            if iso.get("status") == "ok":
                print(report.isolation_table(iso))
                print(
                    f"p99 ratio loaded/alone: {iso['p99_ratio']:.2f}x, throughput ratio "
                    f"{iso['throughput_ratio']:.2f}x; blackhole connections open "
                    f"{iso['blackhole_open_before']} at start, {iso['blackhole_open_after']} "
                    f"at end; probe error code {iso['probe_error_code']}"
                )
            else:
                print(f"skipped: {iso.get('reason')}")
        if self.doc["errors"]:
            print("\nsection errors:\n  " + "\n  ".join(self.doc["errors"]))


NOTES = [
    "client (load generator process) and both servers share this machine's cores: a saturated "
    "client caps throughput, so compare ratios within one run, not absolute numbers across runs",
    "echo baseline: grpc.aio server, default options, NO interceptors, generic bytes handler "
    "(/bench.Echo/Echo), same metadata and a GetAccountRequest-sized payload",
    "CreateAccount calls are made as a separate 'writer' user so the reader's list stays at its "
    "seeded size; Get/Update/List target the reader's seeded accounts",
]


SECURITY_NOTES = [
    "mtls+jwt: the service runs --auth mtls+jwt (client certificate spiffe://bench/client, one "
    "ES256 bearer token reused for every call, no x-tenant-id/x-user-id); its echo is the same "
    "bare server over mutual TLS and gets the same bearer header",
]


def _echo_for(points: list[PointResult], p: PointResult) -> PointResult | None:
    return next(
        (
            e
            for e in points
            if e.target == "echo" and e.concurrency == p.concurrency and e.security == p.security
        ),
        None,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    bench = Bench(args)
    started = time.monotonic()
    try:
        doc = bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping servers", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        bench.close()
    doc["elapsed_s"] = round(time.monotonic() - started, 1)
    path = args.json or RESULTS_DIR / f"{bench.run_id}.json"
    report.write_json(path, doc)
    print(f"\nresults: {path}  (run took {doc['elapsed_s']:.0f}s)")
    return 0 if not doc["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
