"""The queue pool's own routes, under WebTest: metrics from the real database, health from the job runner."""

from __future__ import annotations

from pathlib import Path

import webtest

from hostd.guard.health import INSTANCE_HEADER
from hostd.settings import Settings
from hostd.work.pool import QueueApp


def test_metrics_list_every_queue_of_this_host_and_health_says_why_not(tmp_path: Path, database_url: str) -> None:
    app = QueueApp(Settings(data_dir=tmp_path, database_url=database_url))
    client = webtest.TestApp(app)
    metrics = client.get("/metrics")
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert metrics.headers["Cache-Control"] == "no-store"
    assert 'hostd_queue_waiting_jobs{queue="hooks"} 0' in metrics.text
    assert 'hostd_queue_oldest_waiting_seconds{queue="repos.default"} 0' in metrics.text
    for path in ("/healthz", "/readyz"):  # the runner was never started in this process
        assert client.get(path, status=503).text == "job runner not running\n"
    assert "are served here" in client.get("/anything", status=404).text
    client.post("/metrics", status=405)
    app.db.close()


def test_readyz_names_the_data_directory_and_nothing_else_does(tmp_path: Path, database_url: str) -> None:
    # queue_app() reads it from the data directory (every stack's health check relies on it: tests/e2e).
    app = QueueApp(Settings(data_dir=tmp_path, database_url=database_url), instance="c" * 32)
    client = webtest.TestApp(app)
    assert client.get("/readyz", status=503).headers[INSTANCE_HEADER] == "c" * 32
    assert INSTANCE_HEADER not in client.get("/healthz", status=503).headers
    assert INSTANCE_HEADER not in client.get("/metrics").headers
    app.db.close()
