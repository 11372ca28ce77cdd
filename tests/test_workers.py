"""--workers: a supervisor and forked workers, as a real process tree. Load spreads
over the workers; a killed worker is replaced; SIGHUP and --max-requests replace
workers under load without a failed request, on new connections or keep-alive ones
(``KeepAliveLoad``: clients that never retry); TTIN/TTOU change the count; SIGTERM
drains everything and exits 0. An app or a worker that cannot start stops the
supervisor (exit 3) instead of a restart loop; workers leave with their supervisor."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_end_to_end import SERVE, ServerProcess

pytestmark = pytest.mark.slow
WAIT = 20.0

APP = textwrap.dedent(
    """
    import os

    def application(environ, start_response):
        if environ["PATH_INFO"] == "/hold":  # read a FIFO to its end: see Held
            with open(environ["QUERY_STRING"], "rb") as fifo:
                fifo.read()
        body = f"{os.getpid()} {environ['wsgi.multiprocess']}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ask(port: int, target: str = "/") -> str:
    """One request on a connection of its own; the worker's pid and multiprocess."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), data[:100]
    return body.decode()


def children(pid: int) -> set[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return {int(part) for part in text.split()}


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll another process's state, bounded."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


class Load:
    """Client threads requesting without pause, each on new connections."""

    def __init__(self, port: int, clients: int = 4) -> None:
        self.port = port
        self.pids: Counter[int] = Counter()
        self.failures: list[str] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                self.pids[int(ask(self.port).split()[0])] += 1
            except (OSError, AssertionError) as exc:
                self.failures.append(repr(exc))

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(WAIT)


REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def closed_while_idle(sock: socket.socket) -> bool:
    """Before reusing a keep-alive connection, see whether the server has closed it,
    as a pooling client does (urllib3's ``is_connection_dropped``). A reset here is
    an ungraceful close; raised, so that the load counts it."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    data = sock.recv(1, socket.MSG_PEEK)
    if data:
        raise AssertionError(f"unexpected bytes on an idle connection: {data!r}")
    return True


def read_response(sock: socket.socket) -> tuple[bytes, bool]:
    """The body of one Content-Length response, and whether it said
    ``Connection: close``. EOF or a reset before it is complete raises."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            what = "any response byte" if not data else "the end of the head"
            raise ConnectionError(f"EOF before {what}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").lower().split("\r\n")
    assert lines[0].startswith("http/1.1 200 "), head
    fields = dict(line.split(": ", 1) for line in lines[1:])
    length = int(fields["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("EOF in the body")
        body += chunk
    assert len(body) == length, "bytes after the response"
    return body, fields.get("connection") == "close"


class KeepAliveLoad:
    """Client threads sending requests without pause on keep-alive connections, and
    never retrying one. A client opens a new connection only after a response said
    ``Connection: close`` or after the server closed its connection while idle
    (``closed_while_idle``); a request answered by EOF or a reset is a failure."""

    def __init__(self, port: int, clients: int = 8) -> None:
        self.port = port
        self.pids: Counter[int] = Counter()
        self.failures: list[str] = []
        self.reconnects: Counter[str] = Counter()  # why a client opened another
        #: (when the request was sent, the response's body), for every response.
        self.answers: list[tuple[float, bytes]] = []
        self._done = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]
        for thread in self._threads:
            thread.start()

    @property
    def served(self) -> int:
        return sum(self.pids.values())

    def _run(self) -> None:
        sock: socket.socket | None = None
        while not self._done.is_set():
            try:
                if sock is not None and closed_while_idle(sock):
                    self.reconnects["closed while idle"] += 1
                    sock.close()
                    sock = None
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), 10)
                sent_at = time.monotonic()
                sock.sendall(REQUEST)
                body, close = read_response(sock)
            except (OSError, AssertionError) as exc:
                self.failures.append(repr(exc))
                if sock is not None:
                    sock.close()
                    sock = None
                continue
            self.pids[int(body.split()[0])] += 1
            self.answers.append((sent_at, body))
            if close:
                self.reconnects["Connection: close"] += 1
                sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        self._done.set()
        for thread in self._threads:
            thread.join(WAIT)

    def run_for(self, seconds: float) -> None:
        """Keep the load on for ``seconds`` (how long the test loads the server, not
        a synchronisation), then stop it."""
        self._done.wait(seconds)
        self.stop()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., tuple[ServerProcess, int]]]:
    (tmp_path / "pidapp.py").write_text(APP)
    servers: list[ServerProcess] = []

    def start(*flags: str) -> tuple[ServerProcess, int]:
        port = free_port()
        server = ServerProcess(
            [*SERVE, "pidapp", "--port", str(port), *flags], cwd=tmp_path
        )
        servers.append(server)
        assert server.port == port  # logged once a worker listens
        return server, port

    yield start
    for server in servers:
        if server.proc.poll() is None:  # a failed test: workers first, then the rest
            for pid in children(server.proc.pid):
                os.kill(pid, signal.SIGKILL)
        server.kill()


def test_workers_share_the_load_and_drain_on_sigterm(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start("--workers", "2")
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    answers = Counter(ask(port) for _ in range(200))
    pids = {int(answer.split()[0]) for answer in answers}
    assert pids == children(supervisor)  # both workers served requests
    assert all(answer.endswith(" True") for answer in answers)  # wsgi.multiprocess
    assert min(answers.values()) >= 20, answers
    assert server.stop(signal.SIGTERM) == 0
    assert not any("Traceback" in line for line in server.lines)


def test_a_killed_worker_is_replaced(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start("--workers", "2")
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    victim = min(children(supervisor))
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: victim not in children(supervisor) and len(children(supervisor)) == 2,
        "a replacement worker",
    )
    load = Load(port)
    wait_until(lambda: sum(load.pids.values()) >= 100, "requests after the kill")
    load.stop()
    assert load.failures == []
    assert server.stop(signal.SIGTERM) == 0


def test_sighup_replaces_every_worker_without_a_failed_request(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start("--workers", "2")
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    old = children(supervisor)
    load = Load(port)
    wait_until(lambda: sum(load.pids.values()) >= 50, "load")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: not (children(supervisor) & old) and len(children(supervisor)) == 2,
        "every worker replaced",
    )
    served_before = sum(load.pids.values())
    wait_until(
        lambda: sum(load.pids.values()) >= served_before + 50, "new workers serve"
    )
    load.stop()
    assert load.failures == []
    assert set(load.pids) - old  # the new workers served too
    assert server.stop(signal.SIGTERM) == 0


def test_max_requests_recycles_workers_under_load(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start(
        "--workers", "2", "--max-requests", "100", "--max-requests-jitter", "20"
    )
    supervisor = server.proc.pid
    load = Load(port)
    wait_until(lambda: len(load.pids) >= 4, "at least two generations of workers")
    load.stop()
    assert load.failures == []
    assert max(load.pids.values()) <= 120 + 10  # a worker stops soon after its limit
    assert server.stop(signal.SIGTERM) == 0
    assert len(children(supervisor)) == 0 if server.proc.poll() is None else True


def test_max_requests_under_keep_alive_load_loses_no_request(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    """Issue 12, item 5: a draining worker used to close idle keep-alive connections
    while their clients' next requests were on the way (28-54 failed per run here)."""
    server, port = start(
        "--workers", "2", "--max-requests", "200", "--max-requests-jitter", "50"
    )
    load = KeepAliveLoad(port)
    load.run_for(4.0)
    assert load.failures == []
    assert len(load.pids) >= 6, load.pids  # workers were replaced, many times here
    assert load.reconnects["Connection: close"] >= 4
    assert server.stop(signal.SIGTERM) == 0


def test_sighup_under_keep_alive_load_loses_no_request(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start("--workers", "2")
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    load = KeepAliveLoad(port)

    def replace_all() -> None:
        old = children(supervisor)
        served = load.served
        wait_until(lambda: load.served >= served + 200, "load")
        server.proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: not (children(supervisor) & old) and len(children(supervisor)) == 2,
            "every worker replaced",
        )

    for _ in range(6):  # closing idle connections at once failed on about every other
        replace_all()
    served = load.served
    wait_until(lambda: load.served >= served + 200, "the new workers serve")
    load.stop()
    assert load.failures == []
    # Drains met keep-alive connections (which stay with their worker: a new worker
    # may serve none before the next SIGHUP replaces it).
    assert load.reconnects["Connection: close"] >= 6, load.reconnects
    assert server.stop(signal.SIGTERM) == 0


def test_ttin_and_ttou_change_the_number_of_workers(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, port = start("--workers", "2")
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    server.proc.send_signal(signal.SIGTTIN)
    wait_until(lambda: len(children(supervisor)) == 3, "three workers")
    server.proc.send_signal(signal.SIGTTOU)  # (two at once could merge into one)
    wait_until(lambda: len(children(supervisor)) == 2, "two workers again")
    server.proc.send_signal(signal.SIGTTOU)
    wait_until(lambda: len(children(supervisor)) == 1, "one worker")
    assert ask(port).split()[0] == str(min(children(supervisor)))
    assert server.stop(signal.SIGTERM) == 0


def alive(pid: int) -> bool:
    """Running, not a zombie (a reparented worker may wait for a lazy reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def test_an_app_that_cannot_be_imported_exits_3_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [*SERVE, "nosuchmodule:app", "--workers", "2", "--port", str(free_port())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 3, result.stderr
    assert "nosuchmodule" in result.stderr
    assert time.monotonic() - started < 10


VERSIONED_APP = textwrap.dedent(
    """
    import os

    CODE = {code!r}

    def application(environ, start_response):
        body = f"{{os.getpid()}} {{CODE}}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    """
)
#: Of different lengths: a .pyc is reused when the source's size and mtime (in
#: seconds) are unchanged, and the edit may come within the second.
OLD_CODE, NEW_CODE = "old", "new-code"


def wait_listening(server: ServerProcess, workers: int) -> None:
    wait_until(
        lambda: sum("Listening on" in line for line in server.lines) >= workers,
        f"{workers} workers listening",
    )


def hup_with_edited_app(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path, *flags: str
) -> tuple[KeepAliveLoad, float, ServerProcess]:
    """Serve the old code with --workers 2 under keep-alive load, edit the app,
    SIGHUP, and wait (up to 10 s) until every old worker is gone; the load and
    the time the last old worker was seen gone."""
    (tmp_path / "pidapp.py").write_text(VERSIONED_APP.format(code=OLD_CODE))
    server, port = start("--workers", "2", *flags)
    supervisor = server.proc.pid
    wait_listening(server, 2)  # both have imported the app: it may be edited now
    old = children(supervisor)
    load = KeepAliveLoad(port)
    wait_until(lambda: load.served >= 200, "load on the old code")
    (tmp_path / "pidapp.py").write_text(VERSIONED_APP.format(code=NEW_CODE))
    hup_at = time.monotonic()
    server.proc.send_signal(signal.SIGHUP)
    while children(supervisor) & old or len(children(supervisor)) != 2:
        assert time.monotonic() < hup_at + 10, "workers not replaced in 10 s"
        time.sleep(0.05)  # polling another process's state
    replaced_at = time.monotonic()
    served = load.served
    wait_until(lambda: load.served >= served + 200, "load on the new workers")
    load.stop()
    return load, replaced_at, server


def test_sighup_without_preload_serves_the_new_code(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path
) -> None:
    """Issue 15: a deploy by editing the code and sending SIGHUP loads it."""
    load, replaced_at, server = hup_with_edited_app(start, tmp_path)
    assert load.failures == []
    after = [body.split()[1] for sent, body in load.answers if sent > replaced_at]
    assert after, "no request after the replacement"
    assert set(after) == {NEW_CODE.encode()}
    assert server.stop(signal.SIGTERM) == 0


def test_sighup_with_preload_keeps_the_code_imported_at_startup(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path
) -> None:
    load, replaced_at, server = hup_with_edited_app(start, tmp_path, "--preload")
    assert load.failures == []
    after = [body.split()[1] for sent, body in load.answers if sent > replaced_at]
    assert after, "no request after the replacement"
    assert set(after) == {OLD_CODE.encode()}  # the documented --preload behaviour
    assert server.stop(signal.SIGTERM) == 0


def test_sighup_with_code_that_cannot_be_imported_keeps_the_old_workers(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path
) -> None:
    (tmp_path / "pidapp.py").write_text(VERSIONED_APP.format(code=OLD_CODE))
    server, port = start("--workers", "2")
    supervisor = server.proc.pid
    wait_listening(server, 2)  # both have imported the app: it may be edited now
    old = children(supervisor)
    (tmp_path / "pidapp.py").write_text("import nosuchmodule_either\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(logged(server, "the old workers go on serving"), "the failed reload")
    assert children(supervisor) == old
    assert {ask(port).split()[1] for _ in range(20)} == {OLD_CODE}
    assert server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("preload", [False, True])
@pytest.mark.parametrize(
    ("source", "said"),
    [
        (None, "could not import 'nosuchmodule'"),
        # An app that checks its settings as it is imported: no restart loop either.
        ("import sys\nsys.exit('DATABASE_URL is not set')\n", "DATABASE_URL is not"),
        ("import sys\nsys.exit(0)\n", "error while importing 'nosuchmodule'"),
    ],
    ids=["missing", "sys.exit(text)", "sys.exit(0)"],
)
def test_an_app_that_cannot_be_imported_exits_3_once(
    tmp_path: Path, preload: bool, source: str | None, said: str
) -> None:
    """Without --preload the workers import the app: one is started alone first,
    so the import error is shown once and the supervisor exits 3 at once. With it,
    the supervisor's own import fails before any fork."""
    if source is not None:
        (tmp_path / "nosuchmodule.py").write_text(source)
    started = time.monotonic()
    result = subprocess.run(
        [*SERVE, "nosuchmodule:app", "--workers", "4", "--port", str(free_port())]
        + (["--preload"] if preload else []),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.count(said) == 1, result.stderr
    assert result.stderr.count("Started worker") == (0 if preload else 1)
    assert time.monotonic() - started < 10


def test_a_bad_tls_file_is_refused_before_forking(tmp_path: Path) -> None:
    (tmp_path / "pidapp.py").write_text(APP)
    result = subprocess.run(
        [*SERVE, "pidapp", "--workers", "2", "--ssl-certfile", "missing.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2, result.stderr
    assert "Started worker" not in result.stderr


WORKER_CANNOT_START = textwrap.dedent(
    """
    import logging, socket, sys
    from aiogate.config import Config
    from aiogate.errors import ConfigError
    from aiogate.supervisor import Supervisor

    def serve(sockets, worker, tell):
        raise ConfigError("no such certificate")

    logging.basicConfig(level=logging.INFO)
    sys.exit(Supervisor(Config(workers=3), [socket.socket()], serve).run())
    """
)


def test_a_worker_that_cannot_start_stops_the_supervisor() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WORKER_CANNOT_START],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 3, result.stderr
    assert "could not start: no such certificate" in result.stderr
    assert "could not start serving; stopping" in result.stderr
    assert "right after starting" not in result.stderr  # no restart attempted


def test_workers_leave_when_the_supervisor_dies(
    start: Callable[..., tuple[ServerProcess, int]],
) -> None:
    server, _ = start("--workers", "2")
    supervisor = server.proc.pid
    wait_until(lambda: len(children(supervisor)) == 2, "two workers")
    workers = children(supervisor)
    os.kill(supervisor, signal.SIGKILL)
    server.proc.wait(WAIT)
    try:
        wait_until(lambda: not any(alive(pid) for pid in workers), "workers exit")
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


class Held:
    """A request that the app holds until ``release()``: the app opens a FIFO and
    reads it to its end, so the test decides when the response goes out."""

    def __init__(self, port: int, fifo: Path) -> None:
        os.mkfifo(fifo)
        self.fifo = fifo
        self.answer: str | None = None
        self.error: BaseException | None = None
        self._writer = -1
        self._thread = threading.Thread(target=self._run, args=(port,))
        self._thread.start()
        wait_until(self._app_is_reading, "the held request in the app")

    def _run(self, port: int) -> None:
        try:
            self.answer = ask(port, f"/hold?{self.fifo}")
        except (OSError, AssertionError) as exc:
            self.error = exc

    def _app_is_reading(self) -> bool:
        try:  # succeeds once the app has the FIFO open for reading
            self._writer = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        return True

    @property
    def pending(self) -> bool:
        return self._thread.is_alive()

    def release(self) -> str | None:
        """Let the app answer; the response's body, or None if the request failed."""
        os.close(self._writer)
        self._thread.join(WAIT)
        return self.answer


def logged(server: ServerProcess, text: str) -> Callable[[], bool]:
    return lambda: any(text in line for line in server.lines)


def test_max_requests_successor_serves_while_the_old_worker_drains(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path
) -> None:
    """The successor is forked when the limit is reached, not when the old worker
    has drained: with one worker, nobody would accept until then."""
    server, port = start("--max-requests", "1")  # one worker, supervised
    held = Held(port, tmp_path / "hold")  # the old worker's one and last request
    successor = int(ask(port).split()[0])  # would time out while the request is held
    assert held.pending
    answer = held.release()
    assert answer is not None, held.error
    assert int(answer.split()[0]) != successor
    assert server.stop(signal.SIGTERM) == 0


def test_sigterm_waits_for_requests_in_flight_and_a_second_one_kills(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path
) -> None:
    server, port = start("--workers", "2")
    held = Held(port, tmp_path / "drained")
    server.proc.send_signal(signal.SIGTERM)
    wait_until(logged(server, "Received SIGTERM: draining"), "the drain")
    answer = held.release()
    assert answer is not None, held.error  # served to the end
    assert server.proc.wait(WAIT) == 0

    server, port = start("--workers", "2")
    held = Held(port, tmp_path / "cut")
    server.proc.send_signal(signal.SIGTERM)
    wait_until(logged(server, "Received SIGTERM: draining"), "the drain")
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(WAIT) == 1  # at once: the request is still held
    assert held.release() is None


def test_a_draining_worker_is_not_signalled_twice(
    start: Callable[..., tuple[ServerProcess, int]], tmp_path: Path
) -> None:
    """SIGTERM to the supervisor while a worker replaced by SIGHUP still drains: that
    worker must not get a second SIGTERM, which makes a server exit at once."""
    server, port = start("--max-requests", "1000")  # one worker, supervised
    held = Held(port, tmp_path / "hold")
    server.proc.send_signal(signal.SIGHUP)
    wait_until(logged(server, "Received SIGTERM: shutting down"), "the old one drains")
    server.proc.send_signal(signal.SIGTERM)
    wait_until(logged(server, "Received SIGTERM: draining"), "the drain")
    answer = held.release()
    assert answer is not None, held.error
    assert server.proc.wait(WAIT) == 0


SLOW_IMPORT = textwrap.dedent(
    """
    import os, time
    from pathlib import Path

    Path("importing").touch()
    while not Path("go").exists():  # held until the test has sent its SIGHUP
        time.sleep(0.01)

    def application(environ, start_response):
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]
    """
)


@pytest.mark.parametrize(
    "mode", [[], ["--workers", "2", "--preload"]], ids=["one", "preload"]
)
def test_a_sighup_while_the_app_is_imported_is_ignored(
    tmp_path: Path, mode: list[str]
) -> None:
    """A deploy's reload that comes while the app is still being imported (by the
    process itself: one process, or --preload) must not end it (SIGHUP's default)."""
    (tmp_path / "slowapp.py").write_text(SLOW_IMPORT)
    server = ServerProcess([*SERVE, "slowapp", "--port", "0", *mode], tmp_path)
    try:
        wait_until((tmp_path / "importing").exists, "the import started")
        server.proc.send_signal(signal.SIGHUP)
        (tmp_path / "go").touch()
        assert ask(server.port) == "ok"
        assert server.proc.poll() is None
        assert server.stop(signal.SIGTERM) == 0
        assert any("SIGHUP while starting" in line for line in server.lines)
    finally:
        server.kill()
