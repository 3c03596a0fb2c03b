"""The benchmark client: sends a workload to an OpenAI-compatible endpoint
and records, per request, when it was due, when it went out, the time to the
first content token, every gap between content tokens, the time per output
token, the end-to-end latency, token counts from `usage`, the pod that served
it and the status.

Open loop (default): every request goes out at its timestamp whatever the
state of earlier ones. Closed loop (--concurrency N): N workers each send
their next request when the previous one finishes, ignoring timestamps.
Either way a session's turns go one at a time, each with the whole history.

HTTP/1.1 over asyncio streams, no third-party dependency: the timing is taken
where bytes arrive, with nothing buffering in between."""
import asyncio
import json
import sys
import time
import urllib.parse

POD_HEADERS = ("x-switchboard-pod", "target-pod", "x-vllm-sim-pod")


class HTTPError(Exception):
    pass


class Connection:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    def close(self):
        try:
            self.writer.close()
        except Exception:  # noqa: BLE001 - closing a broken socket
            pass


class Pool:
    """Keep-alive connections to one host:port."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.idle = []

    async def get(self):
        while self.idle:
            c = self.idle.pop()
            if not c.reader.at_eof():
                return c
            c.close()
        r, w = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        return Connection(r, w)

    def put(self, c):
        self.idle.append(c)

    def close(self):
        for c in self.idle:
            c.close()
        self.idle = []


async def _read_head(reader):
    line = await reader.readline()
    if not line:
        raise HTTPError("connection closed before the response")
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise HTTPError(f"bad status line {line[:80]!r}")
    status = int(parts[1])
    headers = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers


async def _body_chunks(reader, headers):
    """Yields the body in the pieces the network delivers them."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = await reader.readline()
            if not size_line:
                raise HTTPError("connection closed inside a chunked body")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return
            data = await reader.readexactly(size + 2)
            yield data[:-2]
    elif "content-length" in headers:
        left = int(headers["content-length"])
        while left > 0:
            data = await reader.read(min(left, 1 << 16))
            if not data:
                raise HTTPError("connection closed inside the body")
            left -= len(data)
            yield data
    else:
        while True:
            data = await reader.read(1 << 16)
            if not data:
                return
            yield data


class Client:
    def __init__(self, url, model, api="chat", stream=True, strategy=None, timeout=120.0, headers=None,
                 record_prompts=False):
        u = urllib.parse.urlsplit(url)
        self.pool = Pool(u.hostname, u.port or 80)
        self.host_header = u.netloc
        self.base = u.path.rstrip("/")
        self.model, self.api, self.stream = model, api, stream
        self.strategy, self.timeout = strategy, timeout
        self.extra_headers = dict(headers or {})
        self.record_prompts = record_prompts

    def _payload(self, history, prompt, max_tokens):
        body = {"model": self.model, "max_tokens": max_tokens, "temperature": 0, "stream": self.stream}
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        if self.api == "chat":
            body["messages"] = history + [{"role": "user", "content": prompt}]
            path = "/v1/chat/completions"
        else:
            body["prompt"] = " ".join([m["content"] for m in history] + [prompt])
            path = "/v1/completions"
        return path, json.dumps(body, separators=(",", ":")).encode()

    async def send(self, req, history, t0):
        """Sends one request; returns (record, reply text)."""
        rec = {"request_id": req.get("request_id"), "session_id": req.get("session_id"), "turn": req.get("turn"),
               "scheduled_s": req["timestamp_ms"] / 1000.0, "prompt_tokens_requested": req.get("prompt_tokens"),
               "max_tokens": req.get("max_tokens"), "strategy": self.strategy, "api": self.api, "stream": self.stream,
               "status": None, "error": None, "pod": None, "ttft_ms": None, "itl_ms": [], "tpot_ms": None,
               "e2e_ms": None, "prompt_tokens": None, "completion_tokens": None, "cached_tokens": None}
        if "prefix_group" in req:
            rec["prefix_group"] = req["prefix_group"]
        path, body = self._payload(history, req["prompt"], int(req.get("max_tokens") or 128))
        if self.record_prompts:
            rec["prompt"] = req["prompt"]
        head = [f"POST {self.base}{path} HTTP/1.1", f"Host: {self.host_header}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", "Accept: text/event-stream" if self.stream else "Accept: application/json"]
        if self.strategy:
            head.append(f"routing-strategy: {self.strategy}")
        head += [f"{k}: {v}" for k, v in self.extra_headers.items()]
        wire = ("\r\n".join(head) + "\r\n\r\n").encode() + body
        text = []
        conn = None
        sent = time.perf_counter()
        try:
            conn = await asyncio.wait_for(self.pool.get(), self.timeout)
            sent = time.perf_counter()
            rec["dispatch_s"] = sent - t0
            rec["dispatch_lag_ms"] = max(0.0, (rec["dispatch_s"] - rec["scheduled_s"]) * 1000.0)
            conn.writer.write(wire)
            await conn.writer.drain()
            await asyncio.wait_for(self._receive(conn, rec, text, sent), self.timeout)
            if rec["status"] == 200 and rec.get("_keepalive", True):
                self.pool.put(conn)
                conn = None
        except asyncio.TimeoutError:
            rec["status"] = rec["status"] or 0
            rec["error"] = f"timeout after {self.timeout}s"
        except (OSError, HTTPError, asyncio.IncompleteReadError, ValueError) as e:
            rec["status"] = rec["status"] or 0
            rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            if conn is not None:
                conn.close()
        rec.pop("_keepalive", None)
        if rec.get("dispatch_s") is None:
            rec["dispatch_s"] = sent - t0
        if rec["e2e_ms"] is None and rec["status"] == 200:
            rec["e2e_ms"] = (time.perf_counter() - sent) * 1000.0
        return rec, "".join(text)

    async def _receive(self, conn, rec, text, sent):
        status, headers = await _read_head(conn.reader)
        rec["status"] = status
        rec["_keepalive"] = headers.get("connection", "").lower() != "close"
        for h in POD_HEADERS:
            if h in headers:
                rec["pod"] = headers[h]
                break
        if status != 200 or not self.stream:
            raw = b"".join([c async for c in _body_chunks(conn.reader, headers)])
            rec["e2e_ms"] = (time.perf_counter() - sent) * 1000.0
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = None
            if status != 200:
                err = obj.get("error") if isinstance(obj, dict) else None
                msg = (err.get("message") if isinstance(err, dict) else None) or (obj.get("message") if isinstance(obj, dict) else None)
                rec["error"] = msg or raw[:200].decode(errors="replace")
                return
            self._usage(rec, obj.get("usage"))
            choice = (obj.get("choices") or [{}])[0]
            text.append((choice.get("message") or {}).get("content") or choice.get("text") or "")
            return
        buf = b""
        last = None
        async for chunk in _body_chunks(conn.reader, headers):
            now = time.perf_counter()
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue
                    obj = json.loads(data)
                    if obj.get("usage"):
                        self._usage(rec, obj["usage"])
                    for choice in obj.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
                        if piece:
                            if last is None:
                                rec["ttft_ms"] = (now - sent) * 1000.0
                            else:
                                rec["itl_ms"].append((now - last) * 1000.0)
                            last = now
                            text.append(piece)
        end = time.perf_counter()
        rec["e2e_ms"] = (end - sent) * 1000.0
        n = rec["completion_tokens"] or (len(rec["itl_ms"]) + 1 if last else 0)
        if last is not None and n and n > 1:
            rec["tpot_ms"] = (last - sent) * 1000.0 - rec["ttft_ms"]
            rec["tpot_ms"] /= (n - 1)

    @staticmethod
    def _usage(rec, usage):
        if not isinstance(usage, dict):
            return
        rec["prompt_tokens"] = usage.get("prompt_tokens")
        rec["completion_tokens"] = usage.get("completion_tokens")
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict):
            rec["cached_tokens"] = details.get("cached_tokens")


class Progress:
    """A one-line progress bar on stderr (a line every few seconds when not a terminal)."""

    def __init__(self, total, enabled=True, label=""):
        self.total, self.enabled, self.label = total, enabled, label
        self.done = self.errors = self.inflight = 0
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last = 0.0

    def update(self, force=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        width = 30
        filled = int(width * self.done / max(1, self.total))
        line = (f"{self.label}[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} done, "
                f"{self.inflight} in flight, {self.errors} errors, {now - self.start:.1f}s")
        sys.stderr.write(("\r" + line) if self.tty else (line + "\n"))
        sys.stderr.flush()

    def finish(self):
        self.update(force=True)
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def sessions_of(requests):
    """Groups requests into sessions (a request without session_id is its own),
    in order of their first timestamp; turns keep their order."""
    groups, order = {}, []
    for i, r in enumerate(requests):
        r = dict(r)
        r.setdefault("request_id", i)
        key = ("s", r["session_id"]) if r.get("session_id") is not None else ("r", i)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(r)
    for g in groups.values():
        g.sort(key=lambda r: (r.get("turn", 0), r["timestamp_ms"]))
    return [groups[k] for k in order]


async def run(requests, client, concurrency=None, duration=None, progress=True, on_record=None):
    """Runs a workload; returns the records, in completion order."""
    groups = sessions_of(requests)
    bar = Progress(len(requests), progress, label=f"{client.strategy or ''} ")
    records = []
    t0 = time.perf_counter()

    async def run_group(group, open_loop):
        history = []
        for req in group:
            if open_loop:
                delay = t0 + req["timestamp_ms"] / 1000.0 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            bar.inflight += 1
            rec, reply = await client.send(req, history, t0)
            bar.inflight -= 1
            bar.done += 1
            if rec["status"] != 200:
                bar.errors += 1
            records.append(rec)
            if on_record:
                on_record(rec)
            bar.update()
            if rec["status"] != 200:
                break  # a session without this reply cannot go on faithfully
            if req.get("session_id") is not None:
                history = history + [{"role": "user", "content": req["prompt"]}, {"role": "assistant", "content": reply}]

    async def closed_worker(queue):
        while True:
            try:
                g = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await run_group(g, open_loop=False)

    if concurrency:
        queue = asyncio.Queue()
        for g in groups:
            queue.put_nowait(g)
        tasks = [asyncio.ensure_future(closed_worker(queue)) for _ in range(concurrency)]
    else:
        tasks = [asyncio.ensure_future(run_group(g, open_loop=True)) for g in groups]
    try:
        if duration:
            done, pending = await asyncio.wait(tasks, timeout=duration)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        else:
            await asyncio.gather(*tasks)
    finally:
        client.pool.close()
        bar.finish()
    return records
