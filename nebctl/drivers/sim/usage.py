"""Usage figures of simulated VMs: they move over time, yet are a pure function of (seed, VM, clock).

Used by the sim monitoring and virtualization drivers when they build ``VMStatus`` values. Being pure, two
processes probing the same fleet at the same instant agree, and a test with a fixed clock gets fixed numbers.
Each VM follows slow waves with its own phase (from a hash of the seed and its uuid); I/O counters grow with
its uptime, as real counters do.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from nebctl.drivers.states import VMLiveState

_PERIOD = 600.0  # seconds of one CPU wave


@dataclass(frozen=True)
class Usage:
    cpu: float = 0.0
    memory_used: int = 0
    disk_read: int = 0
    disk_write: int = 0
    net_rx: int = 0
    net_tx: int = 0


def _phase(seed: int, uuid: str) -> tuple[float, float]:
    digest = hashlib.blake2b(f"{seed}:{uuid}".encode(), digest_size=8).digest()
    return digest[0] / 255 * 2 * math.pi, 0.5 + digest[1] / 255  # phase, rate factor in 0.5..1.5


def _cpu(vcpu: int, phase: float, rate: float, now: float) -> float:
    wave = (1 + math.sin(2 * math.pi * now / _PERIOD + phase)) / 2  # 0..1
    return round(vcpu * (0.05 + 0.6 * wave * rate / 1.5), 4)


def vm_cpu(*, seed: int, uuid: str, state: str, vcpu: int, started: float | None, now: float) -> float:
    """``vm_usage(...).cpu`` alone: what a host's load sums, without the rest of each VM's figures."""
    if state != VMLiveState.RUNNING or started is None:
        return 0.0
    phase, rate = _phase(seed, uuid)
    return _cpu(vcpu, phase, rate, now)


def vm_usage(*, seed: int, uuid: str, state: str, vcpu: int, memory: int, started: float | None, now: float) -> Usage:
    if state == VMLiveState.SUSPENDED:
        return Usage(memory_used=memory // 2)
    if state != VMLiveState.RUNNING or started is None:
        return Usage()
    phase, rate = _phase(seed, uuid)
    uptime = max(0.0, now - started)
    memory_wave = (1 + math.sin(2 * math.pi * now / (_PERIOD * 3) + phase)) / 2
    return Usage(
        cpu=_cpu(vcpu, phase, rate, now),
        memory_used=int(memory * (0.25 + 0.5 * memory_wave)),
        disk_read=int(uptime * 64_000 * rate),
        disk_write=int(uptime * 32_000 * rate),
        net_rx=int(uptime * 20_000 * rate),
        net_tx=int(uptime * 12_000 * rate),
    )
