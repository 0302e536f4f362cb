#!/usr/bin/env python3
"""The naive peer `make bench` measures Lantern against: what a user would write in an
afternoon. paho-mqtt, phonenumbers, SQLite in memory, a commit per event, one rule (a caller
with `min_calls` calls or more in the trailing `window_days` gets a repeat-caller flag, raised
once and updated on every call after).

Usage: naive_peer.py HOST PORT CLIENT_ID CALLS_TOPIC FLAGS_TOPIC N [MIN_CALLS] [WINDOW_DAYS]

It subscribes with a persistent session (QoS 1), so events published while it was away wait
at the broker. Run once with N=0 to register the session, publish, then run with N: it
prints `ready` once subscribed and, after N events, one line `events_per_s flags`.
"""

import json
import sqlite3
import sys
import time
from datetime import datetime

import paho.mqtt.client as mqtt
import phonenumbers


def main():
    host, port, client_id, calls, flags_topic = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    n = int(sys.argv[6])
    min_calls = int(sys.argv[7]) if len(sys.argv) > 7 else 5
    window_ms = int(float(sys.argv[8]) if len(sys.argv) > 8 else 30) * 86_400_000

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE calls (call_id TEXT PRIMARY KEY, number TEXT, occurred_ms INTEGER)")
    db.execute("CREATE INDEX calls_number ON calls (number, occurred_ms)")
    db.execute("CREATE TABLE flags (number TEXT PRIMARY KEY, flag_id TEXT, calls INTEGER)")
    state = {"seen": 0, "flags": 0, "start": None, "subscribed": False}

    def on_connect(client, userdata, flags, rc, *rest):
        client.subscribe(calls, qos=1)

    def on_subscribe(client, userdata, mid, granted, *rest):
        state["subscribed"] = True

    def on_message(client, userdata, msg):
        if state["start"] is None:
            state["start"] = time.perf_counter()
        state["seen"] += 1
        try:
            ev = json.loads(msg.payload)
            raw = (ev.get("caller") or {}).get("number")
            at = ev["occurred_at"].replace("Z", "+00:00")
            occurred = int(datetime.fromisoformat(at).timestamp() * 1000)
            number = None
            if raw:
                parsed = phonenumbers.parse(raw, "GB")
                if phonenumbers.is_valid_number(parsed):
                    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
            cur = db.execute(
                "INSERT OR IGNORE INTO calls (call_id, number, occurred_ms) VALUES (?, ?, ?)",
                (ev["call_id"], number, occurred),
            )
            if number and cur.rowcount == 1:
                (count,) = db.execute(
                    "SELECT COUNT(*) FROM calls WHERE number = ? AND occurred_ms > ?",
                    (number, occurred - window_ms),
                ).fetchone()
                if count >= min_calls:
                    row = db.execute("SELECT flag_id FROM flags WHERE number = ?", (number,)).fetchone()
                    flag_id = row[0] if row else "f-" + ev["call_id"]
                    db.execute("INSERT OR REPLACE INTO flags (number, flag_id, calls) VALUES (?, ?, ?)", (number, flag_id, count))
                    flag = {"flag_id": flag_id, "kind": "repeat_caller", "calls": count, "call_id": ev["call_id"]}
                    client.publish(flags_topic, json.dumps(flag), qos=1)
                    state["flags"] += 1
            db.commit()
        except Exception as e:  # a bad event must not stop the peer
            print(f"bad event: {e}", file=sys.stderr)

    try:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, clean_session=False)
    except AttributeError:  # paho-mqtt 1.x
        client = mqtt.Client(client_id=client_id, clean_session=False)
    client.max_inflight_messages_set(1000)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(host, port, keepalive=30)
    deadline = time.monotonic() + 600
    while not state["subscribed"] and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    print("ready", flush=True)
    while state["seen"] < n and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    # Let the last flags and acks go out before leaving.
    for _ in range(20):
        client.loop(timeout=0.05)
    client.disconnect()
    if n:
        elapsed = time.perf_counter() - (state["start"] or time.perf_counter())
        print(f"{state['seen'] / max(elapsed, 1e-9):.1f} {state['flags']}", flush=True)


if __name__ == "__main__":
    main()
