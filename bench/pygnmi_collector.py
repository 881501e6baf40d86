#!/usr/bin/env python3
"""A pygnmi-based peer collector for bench/collector.sh (issue 3, scenario 3).

Subscribes (STREAM, SAMPLE, PROTO encoding) to the first N devices of a devices file
written by `netpulse simulate --write-devices`, one thread per device, counts the
updates received, and prints one result line with the process CPU (all threads, from
getrusage) per update over the measured window. Loopback only; stops by itself.

    pygnmi_collector.py DEVICES_FILE N WARMUP_S SECONDS [SAMPLE_INTERVAL_S]
"""

import re
import resource
import sys
import threading
import time

from pygnmi.client import gNMIclient


def devices_of(path, limit):
    """(address, port) of the first `limit` devices, in file order."""
    text = open(path, encoding="utf-8").read()
    addresses = re.findall(r"^\s+address:\s*(\S+)\s*$", text, re.M)
    ports = re.findall(r"^\s+port:\s*(\d+)\s*$", text, re.M)
    return list(zip(addresses, (int(p) for p in ports)))[:limit]


def paths_of(path):
    """The subscription paths of the first device (the simulator writes the same ones
    for every device)."""
    text = open(path, encoding="utf-8").read()
    first = text.split("- name:")[1]
    return re.findall(r"- path:\s*(\S+)", first)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    file, n, warmup, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    devices = devices_of(file, n)
    paths = paths_of(file)
    counts = [0] * len(devices)
    errors = []
    stop = threading.Event()
    synced = threading.Semaphore(0)

    def collect(i, address, port):
        request = {
            "subscription": [
                {"path": p, "mode": "sample", "sample_interval": int(interval * 1e9)} for p in paths
            ],
            "mode": "stream",
            "encoding": "proto",
        }
        try:
            with gNMIclient(target=(address, port), insecure=True, gnmi_timeout=10) as client:
                stream = client.subscribe2(subscribe=request)
                announced = False
                while not stop.is_set():
                    try:
                        message = stream.get_update(timeout=1)
                    except Exception:  # queue.Empty on timeout
                        continue
                    if "update" in message:
                        counts[i] += len(message["update"].get("update", []))
                        if not announced:
                            announced = True
                            synced.release()
                stream.close()
        except Exception as error:  # noqa: BLE001 - report, do not hide
            errors.append(f"{address}: {error}")
            synced.release()

    threads = [
        threading.Thread(target=collect, args=(i, a, p), daemon=True)
        for i, (a, p) in enumerate(devices)
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    for _ in threads:
        synced.acquire(timeout=60)
    print(f"  pygnmi: {len(devices)} streams up after {time.monotonic() - started:.1f}s", file=sys.stderr)
    time.sleep(warmup)
    c0, u0, t0 = cpu_seconds(), sum(counts), time.monotonic()
    time.sleep(seconds)
    c1, u1, t1 = cpu_seconds(), sum(counts), time.monotonic()
    stop.set()
    updates = u1 - u0
    window = t1 - t0
    cpu = c1 - c0
    print(
        f"pygnmi devices={len(devices)} errors={len(errors)} updates_per_s={updates / window:.0f} "
        f"cpu_pct={100 * cpu / window:.1f} cpu_us_per_update={1e6 * cpu / max(updates, 1):.2f} "
        f"window_s={window:.1f}"
    )
    for e in errors[:3]:
        print(f"  error: {e}", file=sys.stderr)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
