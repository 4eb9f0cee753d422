"""The HTTP gateway: REST API, live events (SSE and WebSocket), Prometheus text, webhooks and
the web dashboard, served by every worker when `HTTP=1`.

  service.py     `HttpService`: binds the SO_REUSEPORT listener, runs hypercorn in the worker's
                 nursery, replicates webhooks between workers
  app.py         the quart-trio app: routing on the raw path, auth, CORS, every REST route
  events.py      SSE and WebSocket subscribers on the worker's event bus
  prometheus.py  the text exposition format (pure)
  webhooks.py    the webhook registry and the background, retrying, signed delivery
  static/        the dashboard (plain HTML, CSS, JS and SVG; nothing loads from elsewhere)
"""

from gateway.http.service import HttpService

__all__ = ["HttpService"]
