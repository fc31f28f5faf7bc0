#!/usr/bin/env python3
"""Parses OpenMetrics text on stdin with the Prometheus project's Python client parser
(`prometheus_client.openmetrics.parser`, strict: it rejects malformed names, labels,
values, histogram buckets and a missing `# EOF`) — or, with `--text`, the Prometheus text
format 0.0.4 (`prometheus_client.parser`) — and prints the result as JSON:
[{"name", "type", "help", "samples": [[sample name, {labels}, value], ...]}, ...].

Exit codes: 0 parsed, 1 the text is not valid OpenMetrics (the parser's message on
stderr), 3 the parser is not installed (`pip install prometheus-client`).
The tests of joblog and sync-app run it on what `/metrics` serves."""
import json
import sys

try:
    if "--text" in sys.argv[1:]:
        from prometheus_client.parser import text_string_to_metric_families
    else:
        from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError as e:
    print(f"prometheus_client is not installed: {e}", file=sys.stderr)
    sys.exit(3)

text = sys.stdin.read()
try:
    families = [
        {
            "name": f.name,
            "type": f.type,
            "help": f.documentation,
            "samples": [[s.name, s.labels, s.value] for s in f.samples],
        }
        for f in text_string_to_metric_families(text)
    ]
except Exception as e:  # the parser raises ValueError and others on bad input
    print(f"not valid: {e!r}", file=sys.stderr)
    sys.exit(1)
json.dump(families, sys.stdout)
