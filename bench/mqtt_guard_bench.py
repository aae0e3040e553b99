"""What the MQTT reader's limits cost per message (issue 18): ``python -m bench mqtt``.

In process, no broker: the hub's message path (rate gate, size and nesting check,
parse, parse time) against the bare parser on the same payloads, medians over
repeats. Refusing a hostile payload must cost less than parsing a good one would.
"""

from __future__ import annotations

import json

from bench.timing import median_s
from devices.mqtt.formats import FORMATS
from devices.mqtt.guard import MessageLimits
from devices.mqtt.hub import MqttHub

#: Targets: the guarded path per typical message, and its ratio to the bare parse.
TARGET_GUARDED_US = 50.0
TARGET_RATIO = 2.0
TARGET_REFUSE_NESTED_MS = 5.0


def _payloads() -> dict[str, tuple[str, bytes]]:
    shelly = {"id": 0, "source": "init", "output": True, "apower": 812.5, "voltage": 231.2,
              "current": 3.61, "aenergy": {"total": 123.4, "by_minute": [1.0, 2.0, 3.0],
                                           "minute_ts": 1700000000},
              "temperature": {"tC": 41.2, "tF": 106.2}}
    em = {"src": "shellypro3em-x", "dst": "x", "method": "NotifyStatus",
          "params": {"ts": 1.7e9, "em:0": {"id": 0, **{f"{ph}_{k}": 1.5 for ph in "abc"
                                                       for k in ("current", "voltage",
                                                                 "act_power", "pf")},
                                          "total_act_power": 4321.0}}}
    return {"shelly_plug_status": ("/status/switch:0", json.dumps(shelly).encode()),
            "shelly_pro3em_notify": ("/events/rpc", json.dumps(em).encode())}


def run(quick: bool = False) -> dict:
    """Medians in µs per message, each target beside its measurement."""
    repeats = 200 if quick else 2000
    hub = MqttHub("127.0.0.1", 1, limits=MessageLimits(max_per_s=1e12))
    out: dict = {"messages": {}}
    formats = {"shelly_plug_status": "shelly-plug", "shelly_pro3em_notify": "shelly-pro3em"}
    for name, (suffix, payload) in _payloads().items():
        fmt = FORMATS[formats[name]]
        topic = f"dev-{name}{suffix}"
        parser = fmt.subscriptions[suffix]
        hub.register({topic: parser})
        bare = median_s(lambda p=parser, t=topic, b=payload: p(t, b), repeats)
        guarded = median_s(lambda t=topic, b=payload: hub._read(t, b), repeats)  # noqa: SLF001
        assert hub.states[topic].error is None, hub.states[topic].error
        out["messages"][name] = {"bytes": len(payload), "bare_us": round(bare * 1e6, 2),
                                 "guarded_us": round(guarded * 1e6, 2),
                                 "ratio": round(guarded / bare, 2)}
    # 64,000 bytes of nesting pass the size limit: the depth count refuses them.
    hostile = {"nested_64kb": b"[" * 32_000 + b"]" * 32_000,
               "nested_200kb": b"[" * 100_000 + b"]" * 100_000,
               "ten_mb": b'{"a": "' + b"x" * 10_000_000 + b'"}'}
    topic = "dev-hostile/status/switch:0"
    hub.register({topic: FORMATS["shelly-plug"].subscriptions["/status/switch:0"]})
    out["refused"] = {}
    for name, payload in hostile.items():
        took = median_s(lambda b=payload: hub._read(topic, b), 20 if quick else 100)  # noqa: SLF001
        assert "refused" in (hub.states[topic].error or ""), hub.states[topic].error
        out["refused"][name] = {"bytes": len(payload), "ms": round(took * 1e3, 3)}
    worst = max(m["guarded_us"] for m in out["messages"].values())
    ratio = max(m["ratio"] for m in out["messages"].values())
    out["verdicts"] = {
        "guarded_us_per_message": {"target": TARGET_GUARDED_US, "measured": worst,
                                   "met": worst <= TARGET_GUARDED_US},
        "guarded_over_bare": {"target": TARGET_RATIO, "measured": ratio,
                              "met": ratio <= TARGET_RATIO},
        "refuse_nested_64kb_ms": {"target": TARGET_REFUSE_NESTED_MS,
                                  "measured": out["refused"]["nested_64kb"]["ms"],
                                  "met": out["refused"]["nested_64kb"]["ms"]
                                  <= TARGET_REFUSE_NESTED_MS},
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
