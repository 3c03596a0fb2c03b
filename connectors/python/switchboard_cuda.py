"""Python binding (ctypes) of the KV tier's CUDA shim (libswitchboard_cuda.so,
Sources/CCudaShim). Without a CUDA runtime or GPU, init() raises
CudaUnavailable with the reason; nothing else in the process is affected."""
import ctypes
import os

import switchboard_libs


class CudaUnavailable(Exception):
    pass


class CudaError(Exception):
    pass


class Slab(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("stride", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def library_path():
    return switchboard_libs.find("libswitchboard_cuda.so", "SWITCHBOARD_CUDA_LIB")


class Shim:
    def __init__(self, device=0):
        L = self.lib = ctypes.CDLL(library_path())
        P, E, SZ = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
        L.sbcuda_init.argtypes = [ctypes.c_int, E, SZ]
        L.sbcuda_runtime_version.restype = ctypes.c_int
        L.sbcuda_host_register.argtypes = [P, ctypes.c_uint64, E, SZ]
        L.sbcuda_host_unregister.argtypes = [P]
        L.sbcuda_set_mode.argtypes = [ctypes.c_int, E, SZ]
        for name in ("sbcuda_gather", "sbcuda_scatter"):
            getattr(L, name).argtypes = [ctypes.POINTER(Slab), ctypes.c_int, ctypes.POINTER(ctypes.c_int32), ctypes.c_int,
                                         ctypes.POINTER(P), E, SZ]
        err = ctypes.create_string_buffer(256)
        if L.sbcuda_init(device, err, 256) != 0:
            raise CudaUnavailable(err.value.decode(errors="replace"))
        self.runtime_version = L.sbcuda_runtime_version()

    def _check(self, rc, err):
        if rc != 0:
            raise CudaError(err.value.decode(errors="replace"))

    COPIES, KERNEL, AUTO = 1, 2, 0

    def set_mode(self, mode):
        """AUTO, COPIES or KERNEL (raises CudaUnavailable when the kernel cannot be built)."""
        err = ctypes.create_string_buffer(512)
        rc = self.lib.sbcuda_set_mode(mode, err, 512)
        if rc == 1:
            raise CudaUnavailable(err.value.decode(errors="replace"))
        self._check(rc, err)

    def host_register(self, address, nbytes):
        err = ctypes.create_string_buffer(256)
        self._check(self.lib.sbcuda_host_register(address, nbytes, err, 256), err)

    def host_unregister(self, address):
        self.lib.sbcuda_host_unregister(address)

    def _copy(self, name, slabs, block_ids, pages):
        arr = (Slab * len(slabs))(*[Slab(*s) for s in slabs])
        ids = (ctypes.c_int32 * len(block_ids))(*block_ids)
        ptrs = (ctypes.c_void_p * len(pages))(*pages)
        err = ctypes.create_string_buffer(256)
        self._check(getattr(self.lib, name)(arr, len(slabs), ids, len(block_ids), ptrs, err, 256), err)

    def gather(self, slabs, block_ids, pages):
        """Device blocks -> host pages. slabs: [(base, stride, bytes)], pages: host addresses."""
        self._copy("sbcuda_gather", slabs, block_ids, pages)

    def scatter(self, slabs, block_ids, pages):
        """Host pages -> device blocks."""
        self._copy("sbcuda_scatter", slabs, block_ids, pages)
