"""The CUDA shim's logic without a GPU: a stand-in runtime (fake_cudart.c:
device memory is host memory, copies are memcpy) loaded through
SWITCHBOARD_CUDART, so gather and scatter over vLLM-style paged layouts are
checked bit for bit, and the error paths report clearly. On a real GPU,
scripts/gpu-check runs the same shim against PyTorch."""
import ctypes
import os
import random
import shutil
import subprocess
import sys

import pytest

from harness import ROOT, build_dir

HERE = os.path.dirname(os.path.abspath(__file__))


def run_in_child(code, fake):
    """Each scenario in a fresh process: the shim loads its runtime once per process."""
    env = dict(os.environ, SWITCHBOARD_CUDART=fake or "/nonexistent/libcudart.so",
               SWITCHBOARD_CUDA_LIB=os.path.join(build_dir(), "libswitchboard_cuda.so"),
               SWITCHBOARD_NVRTC="/nonexistent/libnvrtc.so")
    prelude = f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'connectors', 'python')!r}); import switchboard_cuda as sc\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    cc = shutil.which("clang") or shutil.which("cc")
    out = str(tmp_path_factory.mktemp("fakecuda") / "libcudart_fake.so")
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", out, os.path.join(HERE, "fake_cudart.c")], check=True)
    return out


GATHER_SCATTER = r'''
import ctypes, random
shim = sc.Shim(0)
fake = ctypes.CDLL(__import__("os").environ["SWITCHBOARD_CUDART"])
rng = random.Random(7)
NB, L = 40, 3
# Layer 0: [num_blocks, ...] with padding between blocks (stride > bytes);
# layers 1-2: K and V halves ([2, num_blocks, ...]) as separate slabs.
layouts = [(96, 80)] + [(64, 64)] * 4
bufs = [(ctypes.c_uint8 * (stride * NB))(*[rng.randrange(256) for _ in range(stride * NB)]) for stride, _ in layouts]
slabs = [(ctypes.addressof(b), stride, nbytes) for b, (stride, nbytes) in zip(bufs, layouts)]
page = sum(n for _, n in layouts)
n = 12
ids = rng.sample(range(NB), n)
ids[3:7] = [20, 21, 22, 23]                      # an adjacent run
host = (ctypes.c_uint8 * (page * n))()
base = ctypes.addressof(host)
pages = [base + i * page for i in range(n)]
shim.host_register(base, page * n)
shim.gather(slabs, ids, pages)
for i, b in enumerate(ids):
    off = 0
    for buf, (stride, nbytes) in zip(bufs, layouts):
        assert bytes(host[i * page + off:i * page + off + nbytes]) == bytes(buf[b * stride:b * stride + nbytes]), (i, b)
        off += nbytes
calls = ctypes.c_int.in_dll(fake, "fake_memcpy_calls").value
assert calls == n * len(layouts), calls          # one copy per (slab, block): nothing merged across slabs
dst = rng.sample([b for b in range(NB) if b not in ids], n)
before = [bytes(b) for b in bufs]
shim.scatter(slabs, dst, pages)
for i, b in enumerate(dst):
    off = 0
    for buf, (stride, nbytes) in zip(bufs, layouts):
        assert bytes(buf[b * stride:b * stride + nbytes]) == bytes(host[i * page + off:i * page + off + nbytes])
        assert bytes(buf[b * stride + nbytes:(b + 1) * stride]) == before[bufs.index(buf)][b * stride + nbytes:(b + 1) * stride]
        off += nbytes
# One slab, adjacent blocks into adjacent pages: one merged copy for the run.
one = [(ctypes.addressof(bufs[1]), 64, 64)]
fake_calls = ctypes.c_int.in_dll(fake, "fake_memcpy_calls")
start = fake_calls.value
shim.gather(one, [5, 6, 7, 9], [base, base + 64, base + 128, base + 192])
assert fake_calls.value - start == 2, fake_calls.value - start
assert bytes(host[:192]) == bytes(bufs[1][5 * 64:8 * 64]) and bytes(host[192:256]) == bytes(bufs[1][9 * 64:10 * 64])
try:
    shim.gather(slabs, [-1], pages[:1])
    raise SystemExit("negative id accepted")
except sc.CudaError as e:
    assert "negative block id" in str(e)
try:
    shim.set_mode(sc.Shim.KERNEL)
    raise SystemExit("kernel mode without NVRTC accepted")
except sc.CudaUnavailable as e:
    assert "libnvrtc" in str(e), e
print("ok", shim.runtime_version)
'''


def test_gather_scatter_are_bit_exact_over_paged_layouts(fake):
    r = run_in_child(GATHER_SCATTER, fake)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["ok", "99999"]


def test_unavailable_is_reported_with_the_reason():
    r = run_in_child("""
try:
    sc.Shim(0)
except sc.CudaUnavailable as e:
    print(e)
""", None)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("CUDA unavailable: no CUDA runtime (libcudart)")
