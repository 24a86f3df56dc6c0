"""Reading banyan-watch's JSON summary and a relay's metrics, for the bench/scripts tables.

Imported by the scripts' inline Python (impairment.sh, transports.sh) with this directory on
sys.path; not a program of its own.
"""
import json
import urllib.request


def load(path):
    """The JSON in `path`, or None when it is missing or malformed."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def get(d, *path):
    for k in path:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def fmt(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def dist(s, key):
    # A distribution {p50, p99, max, ...} as "p50/p99/max"; a bare number as itself.
    v = get(s, key)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return fmt(v)
    return "/".join(fmt(get(v, k)) for k in ("p50", "p99", "max"))


def stalls(s):
    # `stalls` may be a count, a list of stalls, or an object with a count; print what it holds.
    v = get(s, "stalls")
    if isinstance(v, bool) or v is None:
        return "-"
    if isinstance(v, (int, float)):
        return fmt(v)
    if isinstance(v, list):
        return fmt(len(v))
    if isinstance(v, dict):
        n = v.get("count", v.get("n"))
        ms = v.get("total_ms", v.get("ms"))
        if n is not None and ms is not None:
            return f"{fmt(n)} ({fmt(ms)} ms)"
        return fmt(n if n is not None else ms)
    return "-"


def skipped_in(text):
    # Sum of every banyan_relay_groups_skipped_total sample (all `reason` labels, if any) in a
    # Prometheus text exposition; None when there is none.
    total, seen = 0.0, False
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name == "banyan_relay_groups_skipped_total":
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return int(total) if seen else None


def skipped_total(http):
    # The same, read from a relay's /metrics at `http` (host:port).
    try:
        text = urllib.request.urlopen(f"http://{http}/metrics", timeout=5).read().decode()
    except Exception:
        return None
    return skipped_in(text)
