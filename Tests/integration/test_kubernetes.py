"""Kubernetes discovery against a fake TLS API server (list, chunked watch,
410 relist, dropped watches, readiness flips, wrong CA, token rotation)."""
import os
import tempfile
import time

from fake_kube import FakeKube, make_ca, pem, pod
from harness import Proc, binary, free_port, free_ports, wait_port, wait_until
from test_pod_metrics import wait_for


class Gateway:
    def __init__(self, kubeconfig, d):
        self.admin = free_port()
        self.p = Proc("switchboard", [binary("switchboard"), "serve", "--kubernetes", "--kubeconfig", kubeconfig,
                                      "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{self.admin}"], d)
        wait_port(self.admin)

    def discovery(self):
        import http.client, json
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        c.request("GET", "/debug/stats")
        return json.loads(c.getresponse().read())["discovery"]

    def endpoints(self, model="tiny"):
        import http.client, json
        c = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=5)
        c.request("GET", "/debug/pods")
        models = json.loads(c.getresponse().read())["models"]
        return None if model not in models else sorted(e["address"] for e in models[model])


def test_list_watch_readiness_relist_and_reconnect():
    d = tempfile.mkdtemp(prefix="switchboard-k8s-")
    kube = FakeKube(d)
    a, b, c = free_ports(3)
    kube.pods["default/a"] = pod("a", a)
    kube.pods["default/not-ready"] = pod("not-ready", b, ready=False)
    kube.pods["default/dying"] = pod("dying", c, terminating=True)
    kube.pods["default/no-ip"] = pod("no-ip", c, ip="")
    gw = Gateway(kube.kubeconfig(), d)
    try:
        # Initial list: only the ready pod with an IP that is not terminating.
        assert wait_for(lambda: gw.endpoints() == [f"127.0.0.1:{a}"]), gw.endpoints()
        assert wait_for(lambda: len(kube.watch_requests) == 1)
        assert kube.watch_requests[0] == "100"  # watch resumes from the list's resourceVersion
        # Watch: add, readiness flip, delete.
        kube.add(pod("b", b))
        assert wait_for(lambda: gw.endpoints() == sorted([f"127.0.0.1:{a}", f"127.0.0.1:{b}"]))
        kube.modify(pod("a", a, ready=False))
        assert wait_for(lambda: gw.endpoints() == [f"127.0.0.1:{b}"])
        kube.modify(pod("a", a, ready=True))
        assert wait_for(lambda: gw.endpoints() == sorted([f"127.0.0.1:{a}", f"127.0.0.1:{b}"]))
        kube.delete(pod("b", b))
        assert wait_for(lambda: gw.endpoints() == [f"127.0.0.1:{a}"])
        kube.add(pod("other", c, model="other-model"))
        assert wait_for(lambda: gw.endpoints("other-model") == [f"127.0.0.1:{c}"])
        # A bookmark moves the resourceVersion; a dropped watch resumes from it (no relist).
        bookmarks = gw.discovery()["bookmarks"]
        kube.bookmark()
        wait_until(lambda: gw.discovery()["bookmarks"] == bookmarks + 1, "the gateway to count the bookmark")
        last_rv = str(kube.rv)
        lists_before = kube.lists
        dropped_at = time.monotonic()
        kube.drop()
        assert wait_for(lambda: len(kube.watch_requests) == 2, timeout=15)
        resumed = time.monotonic() - dropped_at
        assert kube.watch_requests[1] == last_rv
        assert kube.lists == lists_before
        # 410 Gone: relist, and the state matches the server's.
        kube.pods["default/late"] = pod("late", b)  # changed while "compacted": only a relist can see it
        gone_at = time.monotonic()
        kube.gone()
        assert wait_for(lambda: kube.lists == lists_before + 1, timeout=15)
        assert wait_for(lambda: gw.endpoints() == sorted([f"127.0.0.1:{a}", f"127.0.0.1:{b}"]))
        print(f"\nfault Kubernetes watch: dropped, resumed from its resourceVersion in {resumed:.2f} s without a relist; "
              f"410 Gone, relisted and caught up with a change made meanwhile in {time.monotonic() - gone_at:.2f} s")
        # A malformed event is logged and the watch is restarted; later events still apply.
        kube.malformed()
        assert wait_for(lambda: "k8s.watch.error" in gw.p.output(), timeout=15)
        kube.delete(pod("late", b))
        assert wait_for(lambda: gw.endpoints() == [f"127.0.0.1:{a}"], timeout=15)
        out = gw.p.output()
        assert "k8s.pods.listed" in out and "k8s.watch.expired" in out
    finally:
        gw.p.stop()
        kube.stop()


def test_wrong_ca_is_rejected():
    d = tempfile.mkdtemp(prefix="switchboard-k8s-ca-")
    kube = FakeKube(d)
    kube.pods["default/a"] = pod("a", free_port())
    _, other_ca = make_ca("some-other-ca")
    other = os.path.join(d, "other-ca.crt")
    with open(other, "wb") as f:
        f.write(pem(other_ca))
    gw = Gateway(kube.kubeconfig(ca_path=other), d)
    try:
        assert wait_for(lambda: "certificate verification failed" in gw.p.output(), timeout=15), gw.p.output()
        assert kube.lists == 0
        assert gw.endpoints() is None
    finally:
        gw.p.stop()
        kube.stop()


def test_rotated_token_is_reread():
    d = tempfile.mkdtemp(prefix="switchboard-k8s-token-")
    kube = FakeKube(d)
    a = free_port()
    kube.pods["default/a"] = pod("a", a)
    token_file = os.path.join(d, "token")
    with open(token_file, "w") as f:
        f.write(kube.token + "\n")
    gw = Gateway(kube.kubeconfig(token_file=token_file), d)
    try:
        assert wait_for(lambda: gw.endpoints() == [f"127.0.0.1:{a}"])
        # Rotate: the server accepts only the new token from now on.
        kube.token = "secret-token-2"
        with open(token_file, "w") as f:
            f.write("secret-token-2\n")
        kube.drop()
        b = free_port()
        kube.add(pod("b", b))
        assert wait_for(lambda: gw.endpoints() == sorted([f"127.0.0.1:{a}", f"127.0.0.1:{b}"]), timeout=15)
    finally:
        gw.p.stop()
        kube.stop()
