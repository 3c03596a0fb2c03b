"""Python binding (ctypes) of Switchboard's KV agent C client
(libswitchboard_kv.so, Sources/CKVClient). Engine connectors use it; so do
the integration tests.

    c = KVClient("/run/switchboard/kv.sock", page_size=block_bytes)
    space = KeySpace("prod", "llama-3-8b", "vllm-cpu-fp32", block_size=16)
    keys = space.keys(token_ids)              # one key per full block
    c.put(keys, [bytes...])                   # or reserve / page_address / commit
    blocks = c.get(keys)                      # longest stored prefix

Errors raise KVError (with .status); after an I/O error (agent gone, timed
out) the client is broken for good: create a new one later."""
import ctypes
import json
import os

import switchboard_libs

OK, E_IO = 0, 100
PAGE_PRESENT, PAGE_NO_SPACE = -1, -2
STATUS_NAMES = {1: "bad request", 2: "bad size", 3: "unknown id", 4: "deadline exceeded", 5: "unsupported version",
                6: "too large", 7: "not ready", 8: "internal error", 100: "I/O error"}


class KVError(Exception):
    def __init__(self, status, message):
        super().__init__(f"{STATUS_NAMES.get(status, status)}: {message}")
        self.status = status


class Key(ctypes.Structure):
    _fields_ = [("high", ctypes.c_uint64), ("low", ctypes.c_uint64)]


class _KeySpace(ctypes.Structure):
    _fields_ = [("k0", ctypes.c_uint64), ("k1", ctypes.c_uint64), ("block_size", ctypes.c_uint32)]


def library_path():
    return switchboard_libs.find("libswitchboard_kv.so", "SWITCHBOARD_KV_LIB")


_lib = None


def lib():
    global _lib
    if _lib is None:
        L = ctypes.CDLL(library_path())
        P, K, U32, U64 = ctypes.c_void_p, ctypes.POINTER(Key), ctypes.c_uint32, ctypes.c_uint64
        I32P, U32P, U64P = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(U32), ctypes.POINTER(U64)
        L.sbkv_connect.restype = P
        L.sbkv_connect.argtypes = [ctypes.c_char_p, U32, U32, ctypes.c_char_p, ctypes.c_size_t]
        L.sbkv_close.argtypes = [P]
        L.sbkv_last_error.restype = ctypes.c_char_p
        L.sbkv_last_error.argtypes = [P]
        L.sbkv_page_size.restype = U32
        L.sbkv_page_size.argtypes = [P]
        L.sbkv_pages.restype = U64
        L.sbkv_pages.argtypes = [P]
        L.sbkv_page.restype = P
        L.sbkv_page.argtypes = [P, ctypes.c_int32]
        L.sbkv_reserve.argtypes = [P, K, U32, U32, U32, U64P, I32P]
        L.sbkv_commit.argtypes = [P, U64, U32, U32P]
        L.sbkv_abort.argtypes = [P, U64, U32]
        L.sbkv_lease.argtypes = [P, K, U32, U32, U32, U64P, I32P, U32P]
        L.sbkv_release.argtypes = [P, U64, U32]
        for name in ("sbkv_exists", "sbkv_prefetch", "sbkv_delete"):
            getattr(L, name).argtypes = [P, K, U32, U32, U32P]
        L.sbkv_stats.argtypes = [P, ctypes.c_char_p, ctypes.c_size_t, U32]
        L.sbkv_keyspace_init.argtypes = [ctypes.POINTER(_KeySpace), ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, U32]
        L.sbkv_keys_for_tokens.restype = ctypes.c_size_t
        L.sbkv_keys_for_tokens.argtypes = [ctypes.POINTER(_KeySpace), ctypes.POINTER(U32), ctypes.c_size_t, K, ctypes.c_size_t]
        _lib = L
    return _lib


class KeySpace:
    """Chained block keys (identical to the Swift BlockKeySpace)."""

    def __init__(self, namespace, model, layout, block_size):
        self.block_size = block_size
        self._ks = _KeySpace()
        lib().sbkv_keyspace_init(ctypes.byref(self._ks), namespace.encode(), model.encode(), layout.encode(), block_size)

    def keys(self, tokens):
        n = len(tokens) // self.block_size
        if n == 0:
            return (Key * 0)()
        arr = (ctypes.c_uint32 * len(tokens))(*tokens)
        out = (Key * n)()
        got = lib().sbkv_keys_for_tokens(ctypes.byref(self._ks), arr, len(tokens), out, n)
        return out if got == n else out[:got]


def hexkey(k):
    return "%016x%016x" % (k.high, k.low)


def _keys(keys):
    if isinstance(keys, ctypes.Array):
        return keys, len(keys)
    arr = (Key * len(keys))(*[Key(k.high, k.low) for k in keys])
    return arr, len(keys)


class KVClient:
    def __init__(self, socket_path, page_size=0, timeout_ms=2000):
        err = ctypes.create_string_buffer(256)
        self.timeout_ms = timeout_ms
        self._c = lib().sbkv_connect(socket_path.encode(), page_size, timeout_ms, err, 256)
        if not self._c:
            msg = err.value.decode(errors="replace")
            raise KVError(2 if "blocks are" in msg else E_IO, msg)
        self.page_size = lib().sbkv_page_size(self._c)
        self.pages = lib().sbkv_pages(self._c)

    def close(self):
        if self._c:
            lib().sbkv_close(self._c)
            self._c = None

    def __del__(self):
        self.close()

    def _check(self, rc):
        if rc != OK:
            raise KVError(rc, lib().sbkv_last_error(self._c).decode(errors="replace"))

    def page_address(self, page):
        return lib().sbkv_page(self._c, page)

    def reserve(self, keys, lease_ms=0):
        arr, n = _keys(keys)
        rid, pages = ctypes.c_uint64(), (ctypes.c_int32 * max(1, n))()
        self._check(lib().sbkv_reserve(self._c, arr, n, lease_ms, self.timeout_ms, ctypes.byref(rid), pages))
        return rid.value, list(pages[:n])

    def commit(self, rid):
        out = ctypes.c_uint32()
        self._check(lib().sbkv_commit(self._c, rid, self.timeout_ms, ctypes.byref(out)))
        return out.value

    def abort(self, rid):
        self._check(lib().sbkv_abort(self._c, rid, self.timeout_ms))

    def lease(self, keys, lease_ms=0):
        arr, n = _keys(keys)
        lid, pages, hits = ctypes.c_uint64(), (ctypes.c_int32 * max(1, n))(), ctypes.c_uint32()
        self._check(lib().sbkv_lease(self._c, arr, n, lease_ms, self.timeout_ms, ctypes.byref(lid), pages, ctypes.byref(hits)))
        return lid.value, list(pages[:hits.value])

    def release(self, lid):
        self._check(lib().sbkv_release(self._c, lid, self.timeout_ms))

    def _count(self, name, keys):
        arr, n = _keys(keys)
        out = ctypes.c_uint32()
        self._check(getattr(lib(), name)(self._c, arr, n, self.timeout_ms, ctypes.byref(out)))
        return out.value

    def exists(self, keys):
        return self._count("sbkv_exists", keys)

    def prefetch(self, keys):
        return self._count("sbkv_prefetch", keys)

    def delete(self, keys):
        return self._count("sbkv_delete", keys)

    def stats(self):
        buf = ctypes.create_string_buffer(4096)
        self._check(lib().sbkv_stats(self._c, buf, 4096, self.timeout_ms))
        return json.loads(buf.value.decode())

    def put(self, keys, blocks):
        """Stores whole blocks (bytes-like, page_size each); returns how many were stored."""
        rid, pages = self.reserve(keys)
        if rid == 0:
            return 0
        for page, data in zip(pages, blocks):
            if page >= 0:
                if len(data) != self.page_size:
                    self.abort(rid)
                    raise KVError(2, f"block of {len(data)} bytes; the agent's pages are {self.page_size}")
                ctypes.memmove(self.page_address(page), bytes(data), self.page_size)
        return self.commit(rid)

    def get(self, keys):
        """The longest stored prefix of keys, as bytes."""
        lid, pages = self.lease(keys)
        if lid == 0:
            return []
        out = [ctypes.string_at(self.page_address(p), self.page_size) for p in pages]
        self.release(lid)
        return out
