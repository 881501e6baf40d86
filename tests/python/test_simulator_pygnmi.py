"""Interoperability of the netpulse simulator with pygnmi, a third-party gNMI client.

The target comes from NETPULSE_SIM_TARGET (host:port), for example the first address
printed by `netpulse simulate` or `cargo run -p simulator --example serve`. Without it
every test is skipped.
"""

import os

import pytest
from pygnmi.client import gNMIclient

TARGET_ENV = "NETPULSE_SIM_TARGET"
COUNTER = "interfaces/interface[name=Ethernet1]/state/counters/in-octets"
OPER_STATUS = "interfaces/interface[name=*]/state/oper-status"
# Seconds to wait for any one message from the simulator.
WAIT = 15

# pygnmi's Subscriber.close() only half-closes the request stream. A gNMI target keeps a
# STREAM subscription going after a half-close (it is not a cancel), so the RPC ends when
# the fixture closes the channel, and pygnmi's reader thread re-raises that CANCELLED.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def _target():
    value = os.environ.get(TARGET_ENV)
    if not value:
        pytest.skip(f"{TARGET_ENV} is not set (host:port of a simulated device)")
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        pytest.fail(f"{TARGET_ENV}={value!r} is not host:port")
    return host, int(port)


@pytest.fixture
def client():
    # Credentials are sent as metadata; the simulator accepts and ignores them.
    with gNMIclient(
        target=_target(), insecure=True, username="admin", password="admin", gnmi_timeout=WAIT
    ) as gc:
        yield gc


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _full_path(notification, update):
    prefix = (notification.get("prefix") or "").strip("/")
    path = (update.get("path") or "").strip("/")
    return "/".join(p for p in (prefix, path) if p)


def _values(notification, path):
    """Values of `path` in a pygnmi-parsed notification (Get or Subscribe)."""
    return [u["val"] for u in notification.get("update", []) if _full_path(notification, u) == path]


def test_capabilities_list_encodings_and_models(client):
    caps = client.capabilities()
    assert {"json", "json_ietf", "proto"} <= set(caps["supported_encodings"])
    models = {m["name"] for m in caps["supported_models"]}
    assert "openconfig-interfaces" in models
    assert caps["gnmi_version"]


@pytest.mark.parametrize("encoding", ["json", "proto"])
def test_get_counter_is_numeric(client, encoding):
    reply = client.get(path=[COUNTER], encoding=encoding)
    values = [v for n in reply["notification"] for v in _values(n, COUNTER)]
    assert len(values) == 1, reply
    assert _is_number(values[0]) and values[0] > 0, values


def test_get_wildcard_returns_every_oper_status(client):
    reply = client.get(path=[OPER_STATUS], encoding="json")
    statuses = [u["val"] for n in reply["notification"] for u in n.get("update", [])]
    assert statuses, reply
    assert set(statuses) <= {"UP", "DOWN"}


def test_subscribe_stream_sample_grows(client):
    request = {
        "mode": "stream",
        "encoding": "json",
        "subscription": [
            # 500 ms in nanoseconds.
            {"path": COUNTER, "mode": "sample", "sample_interval": 500_000_000},
        ],
    }
    subscription = client.subscribe2(subscribe=request)
    try:
        # pygnmi coalesces everything up to sync_response into the first message.
        first = subscription.get_update(timeout=WAIT)
        assert first.get("sync_response") is True, first
        initial = _values(first["update"], COUNTER)
        assert len(initial) == 1 and _is_number(initial[0]), first
        seen = [initial[0]]
        while len(seen) < 3:
            update = subscription.get_update(timeout=WAIT)
            assert "update" in update, update
            seen.extend(_values(update["update"], COUNTER))
        assert all(_is_number(v) for v in seen), seen
        assert seen == sorted(seen), f"counter went backwards: {seen}"
    finally:
        subscription.close()


def test_subscribe_once_ends_with_sync(client):
    request = {"mode": "once", "encoding": "json", "subscription": [{"path": OPER_STATUS}]}
    subscription = client.subscribe2(subscribe=request)
    try:
        messages = []
        for message in subscription:
            messages.append(message)
            if len(messages) > 100:
                break
        assert messages and messages[-1].get("sync_response") is True, messages
        statuses = [u["val"] for m in messages if "update" in m for u in m["update"]["update"]]
        assert statuses and set(statuses) <= {"UP", "DOWN"}, messages
    finally:
        subscription.close()


def test_subscribe_poll_returns_current_values(client):
    request = {"mode": "poll", "encoding": "json", "subscription": [{"path": COUNTER}]}
    subscription = client.subscribe2(subscribe=request)
    try:
        seen = []
        for _ in range(2):
            reply = subscription.get_update(timeout=WAIT)
            assert reply.get("sync_response") is True, reply
            seen.extend(_values(reply["update"], COUNTER))
        assert len(seen) >= 2 and all(_is_number(v) for v in seen), seen
        assert seen == sorted(seen), seen
    finally:
        subscription.close()
