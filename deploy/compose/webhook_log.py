"""Stands in for the pager and the chat of the Compose demo: prints each notification
Alertmanager delivers, one line per alert (`docker compose logs -f webhook-log`)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PORT = 8080


def lines(receiver: str, notification: dict[str, Any]) -> list[str]:
    out = []
    for alert in notification.get("alerts", []):
        labels, notes = alert.get("labels", {}), alert.get("annotations", {})
        out.append(
            f"[{receiver}] {alert.get('status', '?').upper():8} {labels.get('severity', '?'):8} "
            f"{labels.get('alertname', '?')} {labels.get('campaign_id', labels.get('instance', ''))}: "
            f"{notes.get('summary', '')}"
        )
    return out


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            for line in lines(self.path.strip("/") or "webhook", json.loads(body)):
                print(line, flush=True)
            self.send_response(200)
        except ValueError:
            self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> int:
    print(f"webhook-log listening on :{PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
