"""Baseline (d), issue 27: the platform's original service, NestJS, answering `create-payment-intent` over Kafka.

The platform's monorepo (GitHub `jazzyrana29/vyarna-copy`) holds it at `services/domain-finance/vy-finance-payments`,
with three libraries of its own as `file:` dependencies (`libs/ez-logger`, `libs/ez-kafka-producer`,
`libs/ez-utils`). `build()` exports those four directories from a local copy of the monorepo (a bare mirror or a
checkout: VYP_BENCH_NESTJS_SOURCE), installs them with npm (`npm ci` where a lock is committed, `npm install`
where none is: ez-utils) and builds each with its own `build` script (tsc; `nest build` for the service), under
a cache outside the tree (VYP_BENCH_NESTJS_CACHE, default ~/.cache/vyp-bench/nestjs/<commit>): a later run reuses
it. Nothing of the original's code is changed: `nestjs_stripe.cjs`, preloaded, points its Stripe client (built
with no host option) at the benchmark's stand-in, and gives its kafkajs consumer the fetch wait the bench gives our
relay on Tansu (which holds a fetch for half of it; kafkajs waits 5 s unless told). When any step fails,
`Build.note` says which and why, and the run goes on without the phase's figures.

The original serves each request with three Stripe calls in series (a Customer search by e-mail, a Customer
create, a PaymentIntent create), a Kafka producer connected afresh for the new customer's `create-contact` and
again for the reply, and its rows (intent, attempt, history) through TypeORM on MySQL (MariaDB here, its tables
made by TypeORM's `synchronize`, which it turns on under NODE_ENV=development); kafkajs hands it one message at a
time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stack import database_env

SOURCE_ENV, CACHE_ENV = "VYP_BENCH_NESTJS_SOURCE", "VYP_BENCH_NESTJS_CACHE"
DEFAULT_SOURCE = Path("/work/.mirror/jazzyrana29+vyarna-copy/repo")
SERVICE = "services/domain-finance/vy-finance-payments"
PRELOAD = Path(__file__).resolve().parent / "nestjs_stripe.cjs"
ENTRY = "dist/src/main.js"  # `nest build` keeps src/ under dist/ (the tsconfig has no rootDir)
NPM_TIMEOUT_S, BUILD_TIMEOUT_S = 900.0, 600.0  # each step is bounded: a run never waits on npm for ever
NPM_FLAGS = ("--no-audit", "--no-fund", "--loglevel=error")
STAMP = "built.json"
TOPIC_PARTITIONS = 3  # as the relay creates ours (settings.py's KAFKA_TOPIC_PARTITIONS default)
# Topics it writes besides the replies: a new Stripe Customer's contact, for the platform's identity service.
OUTGOING_TOPICS = ("create-contact",)


@dataclass(frozen=True)
class Build:
    """The built service, or why there is none."""

    root: Path | None  # the service's directory, built (node_modules, dist)
    commit: str | None
    note: str  # how it was had ("built in 212 s", "cached"), or why it could not be

    @property
    def ok(self) -> bool:
        return self.root is not None


class BuildFailed(Exception):
    """A step of the build failed; its message is the note RESULTS.md shows."""


def failure_note(step: str, where: str, returncode: int | None, output: str, limit: int = 400) -> str:
    """One line for RESULTS.md: which step failed where, how, and the last lines it printed (npm's reason)."""
    how = "timed out" if returncode is None else f"exited {returncode}"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    tail = " / ".join(lines[-4:])
    if len(tail) > limit:
        tail = "…" + tail[-limit:]
    return f"`{step}` in {where} {how}" + (f": {tail}" if tail else " with no output")


def local_dependencies(read: Callable[[str], dict[str, Any]], package: str) -> list[str]:
    """The `file:` dependencies of a package, transitively, each after those it depends on (the build order).

    `read(path)` is the package.json of a directory of the monorepo; paths are the monorepo's, normalised."""
    order: list[str] = []

    def visit(path: str, seen: tuple[str, ...]) -> None:
        if path in seen:
            raise BuildFailed(f"a cycle of file: dependencies: {' -> '.join((*seen, path))}")
        manifest = read(path)
        for spec in sorted({**manifest.get("dependencies", {}), **manifest.get("devDependencies", {})}.values()):
            if isinstance(spec, str) and spec.startswith("file:"):
                target = os.path.normpath(os.path.join(path, spec[len("file:") :]))
                if target not in order:
                    visit(target, (*seen, path))
        if path != package and path not in order:
            order.append(path)

    visit(package, ())
    return order


def topic_constants(sources: list[str]) -> dict[str, str]:
    """`export const KT_… = '…'` of TypeScript sources (ez-utils' topic names), by constant."""
    found: dict[str, str] = {}
    for text in sources:
        for name, value in re.findall(r"export\s+const\s+(KT_\w+)\s*=\s*['\"]([^'\"]+)['\"]", text):
            found[name] = value
    return found


def subscribed_topics(controllers: list[str], constants: dict[str, str]) -> list[str]:
    """The topics the service's controllers answer (`@MessagePattern(KT_…)`), resolved through `constants`."""
    names = {n for text in controllers for n in re.findall(r"@MessagePattern\(\s*(KT_\w+)\s*\)", text)}
    return sorted(constants[n] for n in names if n in constants)


def topics_to_create(built: Path) -> list[str]:
    """Every topic the built service reads or writes, so that they exist before it subscribes (its kafkajs
    consumer would otherwise wait on metadata for topics the broker does not have)."""
    libs = built.parents[len(Path(SERVICE).parts) - 1] / "libs" / "ez-utils" / "src" / "constants"
    constants = topic_constants([p.read_text() for p in libs.rglob("*.ts")])
    controllers = [p.read_text() for p in (built / "src").rglob("*.controller.ts")]
    requests = subscribed_topics(controllers, constants)
    return sorted({*requests, *(f"{t}-response" for t in requests), *OUTGOING_TOPICS})


def source() -> Path:
    return Path(os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE)


def cache_root() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vyp-bench" / "nestjs"
    return Path(os.environ.get(CACHE_ENV) or default)


def _git(repo: Path, *args: str) -> list[str]:
    bare = (repo / "objects").is_dir() and (repo / "HEAD").is_file()
    return ["git", f"--git-dir={repo}" if bare else f"--git-dir={repo / '.git'}", *args]


def _run(argv: list[str], cwd: Path, where: str, timeout_s: float, env: dict[str, str]) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"") + (exc.stderr or b"")
        text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
        raise BuildFailed(failure_note(" ".join(argv), where, None, text)) from exc
    except OSError as exc:
        why = f"`{argv[0]}` could not be started ({exc.strerror}): is Node 20 with npm on the PATH?"
        raise BuildFailed(why) from exc
    if done.returncode != 0:
        raise BuildFailed(failure_note(" ".join(argv), where, done.returncode, done.stdout + "\n" + done.stderr))


def _export(repo: Path, commit: str, paths: list[str], into: Path) -> None:
    """`git archive` of the paths at the commit, unpacked into `into` (the monorepo's layout kept)."""
    archive = into / "export.tar"
    with open(archive, "wb") as out:
        done = subprocess.run(_git(repo, "archive", commit, *paths), stdout=out, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise BuildFailed(failure_note("git archive", str(repo), done.returncode, done.stderr.decode(errors="replace")))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()


def build(log: Callable[[str], None] = print) -> Build:
    """The original service built from the monorepo's HEAD, from the cache when it is there; never raises."""
    repo = source()
    if not repo.exists():
        return Build(None, None, f"the platform's monorepo is not at {repo} (set {SOURCE_ENV} to a copy of it)")
    try:
        commit = subprocess.run(
            _git(repo, "rev-parse", "HEAD"), capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return Build(None, None, f"{repo} is not a git repository the bench can read ({exc})")
    done = cache_root() / commit[:12]
    if (done / STAMP).exists():
        return Build(done / SERVICE, commit, f"built earlier ({json.loads((done / STAMP).read_text())['note']})")
    partial = cache_root() / f"{commit[:12]}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    started = time.monotonic()
    # npm and node from the PATH, with the inherited environment (npm's own settings, proxy, CA certificates);
    # NODE_OPTIONS only ever for the service itself.
    env = {k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"}
    try:

        def read(path: str) -> dict[str, Any]:
            shown = subprocess.run(
                _git(repo, "show", f"{commit}:{path}/package.json"), capture_output=True, text=True, timeout=30
            )
            if shown.returncode != 0:
                raise BuildFailed(f"{path}/package.json is not in {repo} at {commit[:12]}")
            manifest: dict[str, Any] = json.loads(shown.stdout)
            return manifest

        libraries = local_dependencies(read, SERVICE)
        log(f"nestjs: exporting {SERVICE} and {', '.join(libraries)} at {commit[:12]} into {partial}")
        _export(repo, commit, [*libraries, SERVICE], partial)
        for path in [*libraries, SERVICE]:
            where = partial / path
            install = "ci" if (where / "package-lock.json").exists() else "install"
            log(f"nestjs: npm {install} and npm run build in {path}")
            _run(["npm", install, *NPM_FLAGS], where, path, NPM_TIMEOUT_S, env)
            _run(["npm", "run", "build"], where, path, BUILD_TIMEOUT_S, env)
        if not (partial / SERVICE / ENTRY).exists():
            raise BuildFailed(f"the build left no {ENTRY} in {SERVICE}")
        note = f"built in {time.monotonic() - started:.0f} s with node {_node_version(env)}"
        (partial / STAMP).write_text(json.dumps({"commit": commit, "note": note}) + "\n")
        try:
            partial.rename(done)  # the relative symlinks npm made for the file: dependencies survive the move
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)  # another run finished the same build first: theirs is used
        return Build(done / SERVICE, commit, note)
    except BuildFailed as exc:
        shutil.rmtree(partial, ignore_errors=True)
        return Build(None, commit, str(exc))


def _node_version(env: dict[str, str]) -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True, env=env, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def environment(
    base: dict[str, str],
    *,
    kafka: str,
    stripe_base: str,
    database: str,
    port: int,
    secret_key: str,
    group: str,
    fetch_wait_ms: int,
) -> dict[str, str]:
    """The original's settings (its .env-example's names), for the bench's services; its logs at ProdStandard.
    `fetch_wait_ms`: its Kafka consumer's fetch wait, as the bench sets ours for Tansu (nestjs_stripe.cjs)."""
    return {
        **base,
        "APP": "vy-finance-payments",
        "CONTEXT": "vy-finance-payments",
        "APP_PORT": str(port),
        # Its TypeORM config turns `synchronize` on only in development: the tables come from its entities.
        "NODE_ENV": "development",
        "KAFKA_BROKER": kafka,
        "KAFKA_GROUP": group,
        "LOG_STREAM_LEVEL": "1",
        "SENTRY_DNS": "",
        "STRIPE_SECRET_KEY": secret_key,
        **database_env(database),
        "NODE_OPTIONS": f"--require {PRELOAD}",
        "VYP_BENCH_STRIPE_BASE": stripe_base,
        "VYP_BENCH_KAFKA_FETCH_WAIT_MS": str(fetch_wait_ms),
    }


def command() -> list[str]:
    return ["node", ENTRY]


def listening(port: int) -> bool:
    """Its HTTP port answers: `app.listen` comes after its Kafka consumer has joined its group (main.ts)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def create_topics(bootstrap: str, topics: list[str], timeout_s: float = 20.0) -> None:
    """The topics it reads and writes, on the phase's fresh broker, before it subscribes."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = [NewTopic(name, num_partitions=TOPIC_PARTITIONS, replication_factor=1) for name in topics]
    for future in admin.create_topics(wanted, request_timeout=timeout_s, operation_timeout=timeout_s).values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
