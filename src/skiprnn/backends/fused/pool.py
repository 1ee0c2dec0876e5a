"""The fused path's workspace: large (T, B, ...) buffers reused across calls, as a caching allocator would."""
from __future__ import annotations

import math
import threading
from collections import OrderedDict

import torch
from torch import Tensor

# A fresh multi-megabyte CPU allocation is mmap-ed and page-faulted in on first touch, which can cost
# as much as the recurrence itself (about 0.35 ms per MB here, against a few µs for the maths of a step).
# Large (T, B, ...) buffers are kept in a small pool and reused once nothing refers to them any more
# (no tensor, view, saved tensor or gradient shares their storage), as a caching allocator would.
_POOL: OrderedDict = OrderedDict()  # (numel, dtype) -> [flat buffers], least recently used first
_POOL_KEYS, _POOL_PER_KEY, _POOL_MIN_BYTES, _POOL_MAX_BYTES = 16, 8, 1 << 20, 4 << 30
_POOL_LOCK = threading.Lock()
# Private torch APIs (docs/layout.md): without any of them, no pool.
_PRIVATE = ((torch._C, "_storage_Use_Count"), (torch.Tensor, "_use_count"), (torch.UntypedStorage, "_cdata"))
_CAN_POOL = all(hasattr(owner, name) for owner, name in _PRIVATE)


def _unused(buf: Tensor) -> bool:
    # 2 = the pool's own tensor + the temporary storage object of this very call.
    return buf._use_count() == 1 and torch._C._storage_Use_Count(buf.untyped_storage()._cdata) <= 2


def _pool_bytes() -> int:
    return sum(b.numel() * b.element_size() for bufs in _POOL.values() for b in bufs)


def empty(like: Tensor, *shape: int) -> Tensor:
    """An uninitialised tensor of ``shape``; on CPU, large ones are taken from the pool when one is free."""
    numel = math.prod(shape)
    if not _CAN_POOL or like.device.type != "cpu" or numel * like.element_size() < _POOL_MIN_BYTES:
        return like.new_empty(shape)
    key = (numel, like.dtype)
    with _POOL_LOCK:
        bufs = _POOL.pop(key, [])
        _POOL[key] = bufs
        buf = next((b for b in bufs if _unused(b)), None)
        if buf is None:
            buf = like.new_empty(numel)
            if len(bufs) < _POOL_PER_KEY:
                bufs.append(buf)
            while len(_POOL) > 1 and (len(_POOL) > _POOL_KEYS or _pool_bytes() > _POOL_MAX_BYTES):
                _POOL.popitem(last=False)
        # A separate tensor on the same storage, not a view: callers return some of these as outputs.
        return like.new_empty(0).set_(buf.untyped_storage(), 0, shape)


def empty_cache() -> None:
    """Release the buffers the fused path keeps for reuse (up to 4 GiB, the last 16 sizes used)."""
    with _POOL_LOCK:
        _POOL.clear()

