"""vLLM V1 KV connector for Switchboard's KV-cache node agent.

Several vLLM servers on a node share one agent: a prefix computed by one is
loaded by the others instead of recomputed. Blocks are keyed by chained
hashes of their tokens (the agent's key space: namespace, model, KV layout,
block size), so equal prefixes give equal keys in every process, and only
whole blocks move.

Enable it with (PYTHONPATH must reach connectors/vllm and connectors/python,
in the engine's child processes too):

  --kv-transfer-config '{"kv_connector": "SwitchboardKVConnector",
     "kv_connector_module_path": "switchboard_vllm_connector",
     "kv_role": "kv_both", "kv_load_failure_policy": "recompute",
     "kv_connector_extra_config": {"socket_path": "/run/switchboard/kv.sock"}}'

extra config: socket_path, namespace ("default"), timeout_ms (1000),
retry_s (5: how long to wait before reconnecting to an agent that failed),
copy_path ("auto": the CUDA shim for CUDA tensors, torch copies otherwise;
"torch": always torch; "cuda-shim": always the shim, and a shim that cannot
load or copy is an error, never a silent fallback. With CPU tensors this
only works against a stand-in runtime (Tests/integration/fake_cudart.c),
which is how CI runs the shim path without a GPU).

Scheduler side: asks the agent how many leading prompt blocks it holds
(`exists`) and reports them as external hits; records which blocks to load
and which newly computed prompt blocks to store. Worker side: before the
forward pass, leases the blocks and copies them into the paged KV cache; after
it, reserves pages, copies the new blocks in, commits. Block data goes
through the agent's shared memory, never a socket. On a GPU the copies of a
transfer are one call into the CUDA shim (libswitchboard_cuda.so: batched
async copies on its own stream, the pool mapping pinned once); on CPU they
are torch copies per block. (The GPU path has not yet run on a GPU here:
scripts/gpu-check checks the shim itself.)

Failure: if the agent is gone or slow, lookups report no hit and saves are
skipped (the engine recomputes), loads that cannot complete are reported
through get_block_ids_with_load_errors (the engine recomputes those blocks;
set kv_load_failure_policy to "recompute"), and the connector reconnects
after retry_s. Nothing blocks longer than timeout_ms.
"""
import ctypes
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import switchboard_kv as sbkv  # noqa: E402

from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # noqa: E402
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
)
from vllm.logger import init_logger  # noqa: E402

# Under "vllm." so the engine's own logging configuration shows these lines.
logger = init_logger("vllm.switchboard_kv_connector")


@dataclass
class Transfer:
    req_id: str
    keys: list          # (high, low) pairs
    block_ids: list     # engine block ids, same order


@dataclass
class SwitchboardConnectorMetadata(KVConnectorMetadata):
    loads: list = field(default_factory=list)
    stores: list = field(default_factory=list)


class _Agent:
    """A connection to the agent that fails soft: after an error it stays
    down for retry_s, and every call reports failure instead of raising."""

    def __init__(self, socket_path, page_size, timeout_ms, retry_s, role):
        self.socket_path, self.page_size = socket_path, page_size
        self.timeout_ms, self.retry_s, self.role = timeout_ms, retry_s, role
        self.client = None
        self.down_until = 0.0
        self.warned = False

    def get(self):
        if self.client is not None:
            return self.client
        if time.monotonic() < self.down_until:
            return None
        try:
            self.client = sbkv.KVClient(self.socket_path, page_size=self.page_size, timeout_ms=self.timeout_ms)
            logger.info("Switchboard KV (%s): connected to %s (%d pages of %d bytes)", self.role, self.socket_path,
                        self.client.pages, self.client.page_size)
            self.warned = False
        except sbkv.KVError as e:
            self.fail(e)
        return self.client

    def fail(self, err):
        if not self.warned:
            logger.warning("Switchboard KV (%s): agent unavailable (%s); recomputing, retry in %ss",
                           self.role, err, self.retry_s)
            self.warned = True
        if self.client is not None:
            self.client.close()
        self.client = None
        self.down_until = time.monotonic() + self.retry_s


def _keys(pairs):
    return (sbkv.Key * len(pairs))(*[sbkv.Key(h, lo) for h, lo in pairs])


class SwitchboardKVConnector(KVConnectorBase_V1):
    def __init__(self, vllm_config, role, kv_cache_config=None):
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        extra = self._kv_transfer_config.kv_connector_extra_config or {}
        self.block_size = vllm_config.cache_config.block_size
        mc, pc = vllm_config.model_config, vllm_config.parallel_config
        layout = (f"vllm:{str(mc.dtype).replace('torch.', '')}:{vllm_config.cache_config.cache_dtype}:"
                  f"L{mc.get_num_layers(pc)}:H{mc.get_num_kv_heads(pc)}:D{mc.get_head_size()}")
        self.space = sbkv.KeySpace(str(extra.get("namespace", "default")), mc.served_model_name or mc.model, layout,
                                   self.block_size)
        self.socket_path = str(extra.get("socket_path", "/run/switchboard/kv.sock"))
        self.timeout_ms = int(extra.get("timeout_ms", 1000))
        self.retry_s = float(extra.get("retry_s", 5))
        self.copy_path = str(extra.get("copy_path", "auto"))
        if self.copy_path not in ("auto", "torch", "cuda-shim"):
            raise ValueError(f"Switchboard KV: copy_path must be auto, torch or cuda-shim, not {self.copy_path!r}")
        self.is_scheduler = role == KVConnectorRole.SCHEDULER
        # Scheduler side.
        self._pending_loads = {}     # req_id -> (first block, end block)
        self._requests = {}          # req_id -> state for stores
        # Worker side.
        self._layers = []            # per layer: list of per-block slabs ([num_blocks, ...] tensors)
        self._block_bytes = 0
        self._failed_blocks = set()
        self._shim, self._registered, self._slabs = None, None, []
        self._agent = None
        if self.is_scheduler:
            self._agent = _Agent(self.socket_path, 0, self.timeout_ms, self.retry_s, "scheduler")
        logger.info("Switchboard KV connector (%s): socket %s, layout %s, block %d tokens",
                    "scheduler" if self.is_scheduler else "worker", self.socket_path, layout, self.block_size)

    # ------------------------------------------------------------------ keys

    def _prompt_keys(self, tokens, n_blocks):
        ks = self.space.keys(list(tokens[: n_blocks * self.block_size]))
        return [(k.high, k.low) for k in ks]

    # ------------------------------------------------------------- scheduler

    def get_num_new_matched_tokens(self, request, num_computed_tokens):
        tokens = request.prompt_token_ids or []
        usable = (len(tokens) - 1) // self.block_size      # the last prompt token is always computed
        first = num_computed_tokens // self.block_size
        if usable <= first:
            return 0, False
        client = self._agent.get()
        if client is None:
            return 0, False
        keys = self._prompt_keys(tokens, usable)
        try:
            held = client.exists(_keys(keys))
        except sbkv.KVError as e:
            self._agent.fail(e)
            return 0, False
        if held <= first:
            return 0, False
        self._pending_loads[request.request_id] = (first, held)
        return held * self.block_size - num_computed_tokens, False

    def update_state_after_alloc(self, request, blocks, num_external_tokens):
        if num_external_tokens == 0:
            self._pending_loads.pop(request.request_id, None)

    def build_connector_meta(self, scheduler_output):
        meta = SwitchboardConnectorMetadata()
        for req in scheduler_output.scheduled_new_reqs:
            tokens = list(req.prompt_token_ids or [])
            state = {"tokens": tokens, "blocks": list(req.block_ids[0]), "stored": 0}
            self._requests[req.req_id] = state
            load = self._pending_loads.pop(req.req_id, None)
            if load is not None:
                first, end = load
                keys = self._prompt_keys(tokens, end)[first:end]
                meta.loads.append(Transfer(req.req_id, keys, state["blocks"][first:end]))
            self._plan_store(meta, req.req_id, state,
                             req.num_computed_tokens + scheduler_output.num_scheduled_tokens.get(req.req_id, 0))
        cached = scheduler_output.scheduled_cached_reqs
        for i, req_id in enumerate(cached.req_ids):
            state = self._requests.get(req_id)
            if state is None:
                continue
            new_ids = cached.new_block_ids[i]
            if req_id in cached.resumed_req_ids:
                state["blocks"] = list(new_ids[0]) if new_ids else []
                state["stored"] = 0
            elif new_ids:
                state["blocks"].extend(new_ids[0])
            self._plan_store(meta, req_id, state,
                             cached.num_computed_tokens[i] + scheduler_output.num_scheduled_tokens.get(req_id, 0))
        for req_id in scheduler_output.finished_req_ids:
            self._requests.pop(req_id, None)
            self._pending_loads.pop(req_id, None)
        return meta

    def _plan_store(self, meta, req_id, state, computed_after_step):
        """Stores the prompt blocks this step completes."""
        tokens = state["tokens"]
        full = min(computed_after_step, len(tokens)) // self.block_size
        full = min(full, len(state["blocks"]))
        if full > state["stored"]:
            keys = self._prompt_keys(tokens, full)[state["stored"]:full]
            meta.stores.append(Transfer(req_id, keys, state["blocks"][state["stored"]:full]))
            state["stored"] = full

    def request_finished(self, request, block_ids):
        self._requests.pop(request.request_id, None)
        self._pending_loads.pop(request.request_id, None)
        return False, None

    # ---------------------------------------------------------------- worker

    def register_kv_caches(self, kv_caches):
        layers = []
        total = 0
        num_blocks = None
        for name in sorted(kv_caches):
            t = kv_caches[name]
            if num_blocks is None:
                num_blocks = t.shape[0] if t.shape[0] != 2 else t.shape[1]
            # [num_blocks, ...] per block, or [2, num_blocks, ...] (K and V apart).
            slabs = [t] if t.shape[0] == num_blocks else [t[0], t[1]]
            for s in slabs:
                if not s[0].is_contiguous():
                    raise ValueError(f"Switchboard KV: layer {name} block is not contiguous (shape {tuple(t.shape)})")
                total += s[0].numel() * s[0].element_size()
            layers.append(slabs)
        self._layers = layers
        self._block_bytes = total
        self._agent = _Agent(self.socket_path, total, self.timeout_ms, self.retry_s, "worker")
        logger.info("Switchboard KV: %d layers, %d bytes per block (the agent's --block-bytes must match)",
                    len(layers), total)
        # On a GPU, whole transfers go through the CUDA shim (one batched call,
        # pinned pool); on CPU, torch copies per block.
        self._shim, self._registered = None, None
        self._on_cuda = bool(layers) and layers[0][0].is_cuda
        if layers and (self.copy_path == "cuda-shim" or (self.copy_path == "auto" and self._on_cuda)):
            try:
                import switchboard_cuda
                self._shim = switchboard_cuda.Shim(layers[0][0].device.index or 0)
                self._slabs = [(s.data_ptr(), s.stride(0) * s.element_size(), s[0].numel() * s.element_size())
                               for slabs in layers for s in slabs]
                logger.info("Switchboard KV: block copies go through the CUDA shim (runtime %d)",
                            self._shim.runtime_version)
            except Exception as e:  # noqa: BLE001 - any failure means the torch path, unless the shim is required
                if self.copy_path == "cuda-shim":
                    raise RuntimeError(f"Switchboard KV: copy_path is cuda-shim but the CUDA shim is unavailable: {e}") from e
                logger.warning("Switchboard KV: CUDA shim unavailable (%s); copying with torch", e)
        self._agent.get()

    def _page_view(self, client, page):
        buf = (ctypes.c_uint8 * self._block_bytes).from_address(client.page_address(page))
        return torch.frombuffer(buf, dtype=torch.uint8)

    def _copy(self, client, page, block_id, to_page):
        view = self._page_view(client, page)
        off = 0
        for slabs in self._layers:
            for s in slabs:
                blk = s[block_id]
                n = blk.numel() * blk.element_size()
                flat = blk.view(torch.uint8).reshape(-1)
                if to_page:
                    view[off:off + n].copy_(flat)
                else:
                    flat.copy_(view[off:off + n])
                off += n

    def _transfer(self, client, pages, block_ids, to_page):
        """Copies blocks between the paged KV cache and agent pages."""
        if self._shim is not None:
            import switchboard_cuda
            try:
                if self._registered is None or self._registered[0] is not client:
                    # Pin the pool mapping once per connection, for DMA; a new
                    # connection maps the pool anew, so the old pin goes.
                    if self._registered is not None:
                        try:
                            self._shim.host_unregister(self._registered[1])
                        except switchboard_cuda.CudaError:
                            pass  # the old mapping is gone with its connection
                    base = client.page_address(0)
                    self._shim.host_register(base, client.pages * client.page_size)
                    self._registered = (client, base)
                addrs = [client.page_address(p) for p in pages]
                if to_page:
                    if self._on_cuda:
                        torch.cuda.current_stream().synchronize()   # the forward pass wrote these blocks
                    self._shim.gather(self._slabs, block_ids, addrs)
                else:
                    self._shim.scatter(self._slabs, block_ids, addrs)
                return
            except switchboard_cuda.CudaError as e:
                if self.copy_path == "cuda-shim":
                    raise RuntimeError(f"Switchboard KV: CUDA shim copy failed with copy_path cuda-shim: {e}") from e
                logger.warning("Switchboard KV: CUDA shim copy failed (%s); copying with torch", e)
                self._shim = None
        for page, block in zip(pages, block_ids):
            self._copy(client, page, block, to_page)

    def start_load_kv(self, forward_context, **kwargs):
        meta = self._get_connector_metadata()
        if not isinstance(meta, SwitchboardConnectorMetadata) or not meta.loads:
            return
        client = self._agent.get() if self._agent else None
        for t in meta.loads:
            loaded = 0
            if client is not None:
                try:
                    lid, pages = client.lease(_keys(t.keys), lease_ms=self.timeout_ms * 10)
                    self._transfer(client, pages, t.block_ids[:len(pages)], to_page=False)
                    loaded = len(pages)
                    if lid:
                        client.release(lid)
                except sbkv.KVError as e:
                    self._agent.fail(e)
                    client = None
            if loaded < len(t.block_ids):
                logger.warning("Switchboard KV: loaded %d of %d blocks for %s; the rest is recomputed",
                               loaded, len(t.block_ids), t.req_id)
                self._failed_blocks.update(t.block_ids[loaded:])

    def wait_for_layer_load(self, layer_name):
        return

    def save_kv_layer(self, layer_name, kv_layer, attn_metadata, **kwargs):
        return  # whole blocks are saved after the forward pass, in wait_for_save

    def wait_for_save(self):
        meta = self._get_connector_metadata()
        if not isinstance(meta, SwitchboardConnectorMetadata) or not meta.stores:
            return
        client = self._agent.get() if self._agent else None
        if client is None:
            return
        for t in meta.stores:
            try:
                rid, pages = client.reserve(_keys(t.keys), lease_ms=self.timeout_ms * 10)
                if not rid:
                    continue
                todo = [(p, b) for p, b in zip(pages, t.block_ids) if p >= 0]
                self._transfer(client, [p for p, _ in todo], [b for _, b in todo], to_page=True)
                client.commit(rid)
            except sbkv.KVError as e:
                self._agent.fail(e)
                return

    def get_block_ids_with_load_errors(self):
        failed, self._failed_blocks = self._failed_blocks, set()
        return failed
