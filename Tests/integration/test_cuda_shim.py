"""The CUDA shim's logic without a GPU: a stand-in runtime (fake_cudart.c:
device memory is host memory, but copies are checked for direction against
device allocations and registered host memory, and complete only at stream
synchronisation) loaded through SWITCHBOARD_CUDART, so gather and scatter
over vLLM-style paged layouts are checked bit for bit, and the error paths
report clearly. On a real GPU, scripts/gpu-check runs the same shim against
PyTorch."""
import ctypes
import os
import random
import subprocess
import sys

import pytest

from harness import ROOT, build_dir, build_fake_cudart



def run_in_child(code, fake):
    """Each scenario in a fresh process: the shim loads its runtime once per process."""
    env = dict(os.environ, SWITCHBOARD_CUDART=fake or "/nonexistent/libcudart.so",
               SWITCHBOARD_CUDA_LIB=os.path.join(build_dir(), "libswitchboard_cuda.so"),
               SWITCHBOARD_NVRTC="/nonexistent/libnvrtc.so")
    prelude = f"import sys; sys.path.insert(0, {os.path.join(ROOT, 'connectors', 'python')!r}); import switchboard_cuda as sc\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return build_fake_cudart(tmp_path_factory.mktemp("fakecuda"))


GATHER_SCATTER = r'''
import ctypes, random
shim = sc.Shim(0)
fake = ctypes.CDLL(__import__("os").environ["SWITCHBOARD_CUDART"])
rng = random.Random(7)
NB, L = 40, 3
# Layer 0: [num_blocks, ...] with padding between blocks (stride > bytes);
# layers 1-2: K and V halves ([2, num_blocks, ...]) as separate slabs.
layouts = [(96, 80)] + [(64, 64)] * 4
def device_buffer(n):
    """n bytes of the stand-in's device memory (cudaMalloc), filled at random."""
    p = ctypes.c_void_p()
    assert fake.cudaMalloc(ctypes.byref(p), ctypes.c_size_t(n)) == 0
    buf = (ctypes.c_uint8 * n).from_address(p.value)
    ctypes.memmove(buf, bytes(rng.randrange(256) for _ in range(n)), n)
    return buf
bufs = [device_buffer(stride * NB) for stride, _ in layouts]
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


STAND_IN_RULES = r'''
import ctypes
fake = ctypes.CDLL(__import__("os").environ["SWITCHBOARD_CUDART"])
fake.cudaGetErrorString.restype = ctypes.c_char_p
dev = ctypes.c_void_p()
assert fake.cudaMalloc(ctypes.byref(dev), ctypes.c_size_t(64)) == 0
d = (ctypes.c_uint8 * 64).from_address(dev.value)
ctypes.memset(d, 0, 64)
h = (ctypes.c_uint8 * 64)(*range(64))
pageable = (ctypes.c_uint8 * 64)(*range(64))
assert fake.cudaHostRegister(h, ctypes.c_size_t(64), 3) == 0
# A copy completes only at synchronisation.
assert fake.cudaMemcpyAsync(dev, h, ctypes.c_size_t(64), 1, None) == 0
assert bytes(d) == bytes(64) and ctypes.c_int.in_dll(fake, "fake_pending").value == 1
assert fake.cudaStreamSynchronize(None) == 0
assert bytes(d) == bytes(range(64))
# The wrong direction, and pageable memory, are rejected with the reason.
for dst, src, kind, why in [(h, dev, 1, b"H2D copy from memory that is not registered host memory"),
                            (dev, h, 2, b"D2H copy from memory that is not device memory"),
                            (dev, pageable, 1, b"H2D copy from memory that is not registered host memory"),
                            (pageable, dev, 2, b"D2H copy into memory that is not registered host memory")]:
    e = fake.cudaMemcpyAsync(dst, src, ctypes.c_size_t(64), kind, None)
    assert e == 1 and why in fake.cudaGetErrorString(e), (kind, fake.cudaGetErrorString(e))
assert fake.cudaHostRegister(h, ctypes.c_size_t(64), 3) == 712         # already registered
assert fake.cudaHostUnregister(pageable) == 713                         # never registered
# Through the shim: gathering "device" blocks that are really registered host
# memory is a copy in the wrong direction, and the shim reports it.
shim = sc.Shim(0)
pool = (ctypes.c_uint8 * 256)()
shim.host_register(ctypes.addressof(pool), 256)
try:
    shim.gather([(ctypes.addressof(h), 64, 64)], [0], [ctypes.addressof(pool)])
    raise SystemExit("a gather from host memory was accepted")
except sc.CudaError as e:
    assert "D2H copy from memory that is not device memory" in str(e), e
# Scattering from pages that were never registered is refused too.
loose = (ctypes.c_uint8 * 64)()
try:
    shim.scatter([(dev.value, 64, 64)], [0], [ctypes.addressof(loose)])
    raise SystemExit("a scatter from unregistered pages was accepted")
except sc.CudaError as e:
    assert "not registered host memory" in str(e), e
print("ok")
'''


def test_the_stand_in_keeps_cudas_rules(fake):
    r = run_in_child(STAND_IN_RULES, fake)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["ok"]
