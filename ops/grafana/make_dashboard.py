"""Writes ops/grafana/confidant.json (Grafana dashboard, schema 38+). Edit the panels here, then run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DS = {"type": "prometheus", "uid": "${datasource}"}
Q = 'histogram_quantile({q}, sum(rate({m}_bucket{{instance=~"$instance"}}[$__rate_interval])) by (le))'
LE_1PCT = 'le="0.01"'
NOT_THERAPIST = 'role!="therapist"'


def panel(title: str, targets: list[tuple[str, str]], *, unit: str = "short", kind: str = "timeseries",
          w: int = 8, h: int = 8, description: str = "") -> dict[str, Any]:
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "gridPos": {"w": w, "h": h},
            "targets": [{"datasource": DS, "expr": expr, "legendFormat": legend, "refId": chr(65 + i)}
                        for i, (expr, legend) in enumerate(targets)]}


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"w": 24, "h": 1}, "panels": []}


def sel(metric: str, extra: str = "") -> str:
    return f'{metric}{{instance=~"$instance"{"," + extra if extra else ""}}}'


def rate(metric: str, extra: str = "") -> str:
    return f"rate({sel(metric, extra)}[$__rate_interval])"


PANELS = [
    row("Session health"),
    panel("Open rooms by kind", [(f"sum by (kind) ({sel('confidant_rooms')})", "{{kind}}")]),
    panel("Participants by state", [(f"sum by (state) ({sel('confidant_participants')})", "{{state}}")],
          description="connecting that stays up: ICE/DTLS trouble; waiting: clients in the waiting room"),
    panel("Join latency (token to first media)", [(Q.format(q=0.5, m="confidant_join_latency_seconds"), "p50"),
                                                  (Q.format(q=0.95, m="confidant_join_latency_seconds"), "p95")],
          unit="s", description="Service level: p95 under 1 s"),
    panel("ICE / DTLS failures per minute", [(f"60 * {rate('confidant_ice_failures_total')}", "ice"),
                                            (f"60 * {rate('confidant_dtls_failures_total')}", "dtls"),
                                            (f"60 * {rate('confidant_joins_without_media_total')}",
                                             "joins without media")]),
    panel("Participants by role", [(f"sum by (role) ({sel('confidant_participants')})", "{{role}}")]),
    panel("Paused subscriber tracks by reason",
          [(f"sum by (reason) ({sel('confidant_consumers_paused')})", "{{reason}}")]),
    row("Quality"),
    panel("Subscriber loss (share of links over 1 %)",
          [((f"1 - sum(rate({sel('confidant_subscriber_loss_ratio_bucket', LE_1PCT)}[$__rate_interval])) / "
            f"sum({rate('confidant_subscriber_loss_ratio_count')})"), "links > 1 % loss")], unit="percentunit"),
    panel("Subscriber jitter", [(Q.format(q=0.5, m="confidant_subscriber_jitter_seconds"), "p50"),
                                (Q.format(q=0.95, m="confidant_subscriber_jitter_seconds"), "p95")], unit="s"),
    panel("Subscriber RTT", [(Q.format(q=0.5, m="confidant_subscriber_rtt_seconds"), "p50"),
                             (Q.format(q=0.95, m="confidant_subscriber_rtt_seconds"), "p95")], unit="s"),
    panel("NACKs and retransmissions /s", [(f"sum({rate('confidant_nacks_received_total')})", "NACKs received"),
                                           (f"sum({rate('confidant_retransmissions_sent_total')})",
                                            "retransmissions")]),
    panel("Keyframe requests /s", [(f"sum by (method) ({rate('confidant_keyframe_requests_sent_total')})",
                                    "sent {{method}}"),
                                   (f"sum by (method) ({rate('confidant_keyframe_requests_received_total')})",
                                    "received {{method}}")]),
    panel("Drops /s by reason", [(f"sum by (reason) ({rate('confidant_packets_dropped_total')}) > 0",
                                  "{{reason}}")]),
    row("Fallback and adaptation"),
    panel("Audio-only subscribers", [(f"sum({sel('confidant_audio_only_subscribers')})", "audio-only")]),
    panel("Audio-only transitions per minute",
          [(f"60 * sum by (direction) ({rate('confidant_audio_only_transitions_total')})", "{{direction}}")]),
    panel("Share of subscriber time in audio-only",
          [((f"sum({rate('confidant_audio_only_seconds_total')}) / "
            f"clamp_min(sum({sel('confidant_participants', NOT_THERAPIST)}), 1)"), "audio-only share")],
          unit="percentunit"),
    panel("Bandwidth estimates", [(Q.format(q=0.05, m="confidant_subscriber_bandwidth_estimate_bytes_per_second"),
                                   "p5"),
                                  (Q.format(q=0.5, m="confidant_subscriber_bandwidth_estimate_bytes_per_second"),
                                   "p50")], unit="Bps"),
    panel("Layer switches per minute", [(f"60 * sum({rate('confidant_layer_switches_total')})", "switches")]),
    panel("Probes per minute", [(f"60 * sum by (result) ({rate('confidant_probe_clusters_finished_total')})",
                                 "{{result}}")]),
    row("Capacity"),
    panel("CPU (cores)", [(f"{rate('confidant_process_cpu_seconds_total')}", "{{instance}}")], unit="short",
          description="The process uses one core; over 0.85 it is full"),
    panel("CPU per egress packet", [((f"{rate('confidant_process_cpu_seconds_total')} / "
                                     f"sum by (instance) ({rate('confidant_packets_forwarded_total')})"),
                                     "{{instance}}")], unit="s"),
    panel("Egress / ingress packets /s", [(f"sum by (kind) ({rate('confidant_packets_forwarded_total')})",
                                           "out {{kind}}"),
                                          (f"sum by (kind) ({rate('confidant_packets_received_total')})",
                                           "in {{kind}}")]),
    panel("Egress / ingress bandwidth", [(f"sum({rate('confidant_bytes_forwarded_total')})", "out"),
                                         (f"sum({rate('confidant_bytes_received_total')})", "in")], unit="Bps"),
    panel("Event-loop lag", [(Q.format(q=0.99, m="confidant_event_loop_lag_seconds"), "p99"),
                             (f"max({sel('confidant_event_loop_lag_last_seconds')})", "last tick")], unit="s"),
    panel("Memory", [(sel("confidant_process_resident_memory_bytes"), "{{instance}} RSS")], unit="bytes"),
    panel("Ready / draining", [(sel("confidant_ready"), "ready {{instance}}"),
                               (sel("confidant_draining"), "draining {{instance}}")]),
    panel("Media transports", [(f"sum({sel('confidant_media_connections')})", "transports")]),
]


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    x = y = 0
    for i, p in enumerate(panels):
        p["id"] = i + 1
        pos = p["gridPos"]
        if p["type"] == "row" or x + pos["w"] > 24:
            x, y = 0, y + (8 if x else 0)
        pos["x"], pos["y"] = x, y
        if p["type"] == "row":
            y += 1
        else:
            x += pos["w"]
    return panels


def dashboard() -> dict[str, Any]:
    return {
        "title": "Confidant SFU", "uid": "confidant-sfu", "schemaVersion": 38, "version": 1,
        "tags": ["confidant", "webrtc"], "timezone": "utc", "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "instance", "type": "query", "datasource": DS, "label": "Node", "includeAll": True,
             "multi": True, "allValue": ".*", "query": "label_values(confidant_ready, instance)", "refresh": 2},
        ]},
        "panels": layout(PANELS),
    }


if __name__ == "__main__":
    out = Path(__file__).with_name("confidant.json")
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(out)
