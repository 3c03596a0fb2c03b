"""A fake Kubernetes API server for discovery tests: pod LIST and chunked
WATCH over TLS with a CA generated at test time, bearer-token auth, and
hooks to inject 410 Gone, dropped connections and malformed events."""
import base64
import datetime
import ipaddress
import json
import os
import queue
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


GONE = json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410,
                                               "message": "too old resource version"}}).encode() + b"\n"


def make_ca(name):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server_cert(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def pod(name, port, ready=True, ip="127.0.0.1", model="tiny", ns="default", terminating=False, rv="1"):
    p = {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                      "labels": {"model.aibrix.ai/name": model, "model.aibrix.ai/port": str(port)}},
         "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    if terminating:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


class FakeKube:
    def __init__(self, workdir, token="secret-token-1"):
        self.dir = workdir
        self.token = token
        self.pods = {}
        self.rv = 100
        self.lists = 0
        self.watch_requests = []  # resourceVersion of each watch
        self.log = []  # (rv, event line): replayed to any watch that starts before them
        self.control = queue.Queue()  # drop / gone / malformed, for the current watch only
        self.current = 0
        self.compacted = 0  # watches from an older resourceVersion get 410
        self.lock = threading.Lock()
        ca_key, self.ca = make_ca("fake-kube-ca")
        key, cert = make_server_cert(ca_key, self.ca)
        self.ca_path = os.path.join(workdir, "kube-ca.crt")
        with open(self.ca_path, "wb") as f:
            f.write(pem(self.ca))
        cert_path, key_path = os.path.join(workdir, "kube-server.crt"), os.path.join(workdir, "kube-server.key")
        with open(cert_path, "wb") as f:
            f.write(pem(cert))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.headers.get("Authorization") != f"Bearer {outer.token}":
                    return self.reply(401, {"kind": "Status", "code": 401, "message": "Unauthorized"})
                u = urllib.parse.urlparse(self.path)
                q = urllib.parse.parse_qs(u.query)
                if q.get("labelSelector") != ["model.aibrix.ai/name"]:
                    return self.reply(400, {"message": "missing label selector"})
                if q.get("watch") == ["1"]:
                    return self.watch(q.get("resourceVersion", [""])[0])
                with outer.lock:
                    outer.lists += 1
                    items = list(outer.pods.values())
                    rv = str(outer.rv)
                self.reply(200, {"kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items})

            def reply(self, code, obj):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def chunk(self, data):
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def watch(self, rv):
                with outer.lock:
                    outer.watch_requests.append(rv)
                    outer.current += 1
                    me = outer.current
                    start = int(rv or 0)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if start < outer.compacted:
                    self.chunk(GONE)
                    self.wfile.write(b"0\r\n\r\n")
                    return
                sent = start
                while outer.current == me:
                    with outer.lock:
                        pending = [(r, e) for r, e in outer.log if r > sent]
                    for r, e in pending:
                        self.chunk(e)
                        sent = r
                    try:
                        item = outer.control.get(timeout=0.05)
                    except queue.Empty:
                        continue
                    if item == "DROP":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                    self.chunk(item)
                    if item == GONE:
                        self.wfile.write(b"0\r\n\r\n")
                        return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def kubeconfig(self, ca_path=None, token_file=None):
        """Writes a kubeconfig for this server; returns its path."""
        path = os.path.join(self.dir, "kubeconfig.yaml")
        ca = open(ca_path or self.ca_path, "rb").read()
        user = {"tokenFile": token_file} if token_file else {"token": self.token}
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "test",
               "clusters": [{"name": "fake", "cluster": {"server": f"https://127.0.0.1:{self.port}",
                                                         "certificate-authority-data": base64.b64encode(ca).decode()}}],
               "users": [{"name": "gw", "user": user}],
               "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "gw"}}]}
        with open(path, "w") as f:
            json.dump(cfg, f)  # JSON is YAML
        return path

    def _event(self, kind, obj):
        with self.lock:
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.log.append((self.rv, json.dumps({"type": kind, "object": obj}).encode() + b"\n"))

    def add(self, p):
        key = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        with self.lock:
            self.pods[key] = p
        self._event("ADDED", p)

    def modify(self, p):
        key = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        with self.lock:
            self.pods[key] = p
        self._event("MODIFIED", p)

    def delete(self, p):
        key = f"{p['metadata']['namespace']}/{p['metadata']['name']}"
        with self.lock:
            self.pods.pop(key, None)
        self._event("DELETED", p)

    def bookmark(self):
        with self.lock:
            self.rv += 1
            self.log.append((self.rv, json.dumps({"type": "BOOKMARK", "object": {
                "kind": "Pod", "metadata": {"resourceVersion": str(self.rv)}}}).encode() + b"\n"))

    def gone(self):
        """Compacts history: the current watch ends with 410, and so does any watch from before now."""
        with self.lock:
            self.compacted = self.rv + 1
            self.rv += 1
        self.control.put(GONE)

    def drop(self):
        self.control.put("DROP")

    def malformed(self):
        self.control.put(b"{this is not json\n")

    def stop(self):
        self.httpd.shutdown()
