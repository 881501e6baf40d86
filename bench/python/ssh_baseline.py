"""Python baseline of `netpulse-bench ssh-poll`: scrapli (asyncio, asyncssh transport)
polling the same show commands on the same simulated devices as the netpulse collector.

One long-lived session per device (scrapli's EOS driver for `arista_eos` devices, its
IOS-XE driver for `cisco_ios` ones: both open with `enable` and `terminal length 0`, as
the collector's shell sessions do). Each command first runs at a random point of its
interval, then every interval; a run that overruns skips the missed runs (the
collector's schedule). `show interfaces` is parsed with ntc-templates' TextFSM template,
as netpulse parses it; the other outputs are kept as they come.

Driven by the bench over stdin/stdout, one line each way:
- it prints `{"event": "started"}` once imported (the bench reads its memory then);
- for each `stats` line read it prints one JSON object of cumulative counters, plus the
  durations (seconds) of the command runs finished since the previous `stats`;
- it exits when stdin closes (the bench stopped or died).

Targets file: one device per line, `name address port platform`.
"""

import argparse
import asyncio
import json
import random
import sys
import time
import warnings

from scrapli.driver.core import AsyncEOSDriver, AsyncIOSXEDriver
from scrapli.helper import _textfsm_get_template, textfsm_parse

# The simulated devices have no enable password; scrapli warns about that on every open.
warnings.filterwarnings("ignore", category=UserWarning, module=r"scrapli\.")

COMMANDS = ("show version", "show interfaces", "show lldp neighbors")
PARSED = "show interfaces"
DRIVERS = {"arista_eos": AsyncEOSDriver, "cisco_ios": AsyncIOSXEDriver}


class Stats:
    """What the bench reads."""

    def __init__(self):
        self.open = 0
        self.connects = 0
        self.connect_failed = 0
        self.ok = 0
        self.failed = 0
        self.closed = 0
        self.overruns = 0
        self.parsed_rows = 0
        self.parse_errors = 0
        self.last_error = ""
        self.durations = []

    def report(self):
        durations, self.durations = self.durations, []
        return {
            "open": self.open,
            "connects": self.connects,
            "connect_failed": self.connect_failed,
            "ok": self.ok,
            "failed": self.failed,
            "closed": self.closed,
            "overruns": self.overruns,
            "parsed_rows": self.parsed_rows,
            "parse_errors": self.parse_errors,
            "last_error": self.last_error,
            "durations": durations,
        }


def rss_kib():
    """This process's resident memory (VmRSS), in KiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def templates():
    """Path of the `show interfaces` template of each platform, found once."""
    paths = {}
    for platform in DRIVERS:
        found = _textfsm_get_template(platform=platform, command=PARSED)
        if found is None:
            raise SystemExit(f"no ntc-templates template for {platform} {PARSED}")
        paths[platform] = found.name
        found.close()
    return paths


async def poll(target, args, stats, connects, template):
    name, host, port, platform = target
    driver = DRIVERS[platform]
    loop = asyncio.get_running_loop()
    now = loop.time()
    due = [now + args.interval * random.random() for _ in COMMANDS]
    backoff = 0.5
    while True:
        conn = driver(
            host=host,
            port=port,
            auth_username=args.username,
            auth_password=args.password,
            auth_strict_key=False,
            transport="asyncssh",
            timeout_socket=30,
            timeout_transport=60,
            timeout_ops=30,
        )
        async with connects:
            stats.connects += 1
            try:
                await conn.open()
            except Exception as error:  # noqa: BLE001 - any failure is counted, retried
                stats.connect_failed += 1
                stats.last_error = f"{name}: connect: {error!r}"
                await asyncio.sleep(backoff * (1 + random.random()))
                backoff = min(backoff * 2, 30)
                continue
        backoff = 0.5
        stats.open += 1
        # Runs that fell due while there was no session run now.
        now = loop.time()
        due = [max(d, now) for d in due]
        try:
            while True:
                i = min(range(len(COMMANDS)), key=due.__getitem__)
                await asyncio.sleep(max(0.0, due[i] - loop.time()))
                command = COMMANDS[i]
                started = time.perf_counter()
                response = await conn.send_command(command)
                stats.durations.append(time.perf_counter() - started)
                due[i] += args.interval
                now = loop.time()
                if due[i] <= now:
                    missed = int((now - due[i]) / args.interval) + 1
                    stats.overruns += missed
                    due[i] += args.interval * missed
                if response.failed:
                    stats.failed += 1
                    stats.last_error = f"{name}: {command}: failed"
                    continue
                stats.ok += 1
                if command == PARSED and args.parse:
                    rows = textfsm_parse(template, response.result)
                    if isinstance(rows, list) and rows:
                        stats.parsed_rows += len(rows)
                    else:
                        stats.parse_errors += 1
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - a dropped session is reopened
            stats.closed += 1
            stats.last_error = f"{name}: session: {error!r}"
        finally:
            stats.open -= 1
            try:
                await asyncio.wait_for(conn.close(), 2)
            except BaseException:  # noqa: BLE001 - closing a dead session may fail
                pass


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", required=True)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--limit", type=int, default=0, help="first N targets only")
    parser.add_argument(
        "--connects", type=int, default=64, help="session opens in flight at once"
    )
    parser.add_argument("--no-parse", dest="parse", action="store_false")
    args = parser.parse_args()

    with open(args.targets, encoding="utf-8") as f:
        targets = [line.split() for line in f if line.strip()]
    targets = [(n, h, int(p), pl) for n, h, p, pl in targets]
    if args.limit:
        targets = targets[: args.limit]
    paths = templates()
    stats = Stats()
    connects = asyncio.Semaphore(args.connects)

    def emit(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    emit({"event": "started", "devices": len(targets), "rss_kib": rss_kib()})
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = [
        asyncio.create_task(poll(t, args, stats, connects, paths[t[3]])) for t in targets
    ]
    while True:
        line = await reader.readline()
        if not line:
            break
        if line.strip() == b"stats":
            emit(stats.report())
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=5)


if __name__ == "__main__":
    asyncio.run(main())
