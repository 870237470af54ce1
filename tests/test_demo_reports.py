"""The demo's Report page (testproject/chat/reports.py): who may open a report, and how many may run."""

import pytest
from django.test import Client

from testproject.chat import reports

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls")]


def test_a_report_opens_only_in_the_session_that_started_it():
    assert Client().get("/report/0123456789abcdef0123456789abcdef/").status_code == 404
    assert Client().get("/report/").status_code == 200


def test_no_more_reports_run_at_once_than_the_process_allows(monkeypatch):
    # Anyone may press the button, and each report is a process: past the limit, none is started.
    monkeypatch.setattr(reports, "MAX_RUNNING", 0)
    client = Client()
    response = client.post("/report/start/")
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert "reports" not in client.session
