"""A separate process competing for the writers' lock, for ``test_locking``'s cross-process tests.

Run as ``python lock_worker.py MODE URL LOGFILE ...``. ``compete``: take the lock ROUNDS times, appending
``enter PID`` and ``exit PID`` lines to LOGFILE around a short critical section (the test checks that they never
interleave). ``hold``: take it, print ``acquired`` and sleep until killed. ``try``: try once with a short timeout
and print the error (exit 3 when the lock was not obtained, as ``nebctl apply`` does).
"""

from __future__ import annotations

import os
import sys
import time


def main() -> int:
    mode, url, log_path = sys.argv[1:4]
    from nebctl.database import LockNotObtained, Store

    store = Store.open(url)
    pid = os.getpid()
    try:
        if mode == "compete":
            rounds, hold = int(sys.argv[4]), float(sys.argv[5])
            for _ in range(rounds):
                with store.acquire_lock(holder=f"worker {pid}", timeout=120, ttl=60):
                    with open(log_path, "a") as log:
                        log.write(f"enter {pid}\n")
                    time.sleep(hold)
                    with open(log_path, "a") as log:
                        log.write(f"exit {pid}\n")
            return 0
        if mode == "hold":
            store.acquire_lock(holder=sys.argv[4], timeout=30, ttl=float(sys.argv[5]))
            print("acquired", flush=True)
            time.sleep(600)
            return 0
        if mode == "try":
            try:
                store.acquire_lock(holder=f"waiter {pid}", timeout=float(sys.argv[4]), ttl=60)
            except LockNotObtained as error:
                print(error, flush=True)
                return 3
            print("acquired", flush=True)
            return 0
        raise SystemExit(f"unknown mode {mode}")
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
