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


# A device of a fleet serving TLS and demanding credentials, for example from
# `NETPULSE_SIM_CA_FILE=ca.pem NETPULSE_SIM_CREDENTIALS=admin:s3cret cargo run -p simulator
# --example serve` or `netpulse simulate --tls --credentials admin:s3cret --write-secret DIR`
# (ca.crt in DIR). Without these every TLS test is skipped.
TLS_TARGET_ENV = "NETPULSE_SIM_TLS_TARGET"
TLS_CA_ENV = "NETPULSE_SIM_TLS_CA"
TLS_CREDENTIALS_ENV = "NETPULSE_SIM_TLS_CREDENTIALS"
LLDP_NAMES = "lldp/interfaces/interface[name=*]/neighbors/neighbor[id=*]/state/system-name"


def _tls_settings():
    target, ca, credentials = (os.environ.get(k) for k in (TLS_TARGET_ENV, TLS_CA_ENV, TLS_CREDENTIALS_ENV))
    if not (target and ca and credentials):
        pytest.skip(f"{TLS_TARGET_ENV}, {TLS_CA_ENV} and {TLS_CREDENTIALS_ENV} are not all set")
    host, _, port = target.rpartition(":")
    user, _, password = credentials.partition(":")
    return (host, int(port)), ca, user, password


def test_tls_with_the_fleet_ca_and_credentials():
    target, ca, user, password = _tls_settings()
    # pygnmi trusts `path_cert` as the root when no key is given: the server certificate
    # is verified against the fleet's CA, with the device IP as the name.
    with gNMIclient(target=target, username=user, password=password, path_cert=ca, gnmi_timeout=WAIT) as gc:
        caps = gc.capabilities()
        assert "openconfig-lldp" in {m["name"] for m in caps["supported_models"]}
        reply = gc.get(path=["components/component[name=CPU0]/cpu/utilization/state/instant"], encoding="json_ietf")
        values = [u["val"] for n in reply["notification"] for u in n.get("update", [])]
        # JSON_IETF (RFC 7951) may carry integers as strings.
        assert len(values) == 1 and 0 <= int(values[0]) <= 100, reply
        reply = gc.get(path=[LLDP_NAMES], encoding="json_ietf")
        assert all(isinstance(u["val"], str) for n in reply["notification"] for u in n.get("update", []))


def test_tls_with_a_wrong_password_is_refused():
    target, ca, user, password = _tls_settings()
    with pytest.raises(Exception, match="(?i)unauthenticated|rejected"):
        with gNMIclient(
            target=target, username=user, password=password + "-wrong", path_cert=ca, gnmi_timeout=WAIT
        ) as gc:
            gc.capabilities()
