"""The demo's sign-in with a name alone (testproject/chat/calls.py): what calls between guests need."""

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import connection

from tests.support.servers import manage, project_env, running_server

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls")]


def test_a_new_name_signs_in_and_goes_back_to_the_room(client):
    response = client.post("/sign-in/", {"name": "ada", "next": "/room/lobby/"})
    assert response.status_code == 302 and response["Location"] == "/room/lobby/"
    user = User.objects.get(username="ada")
    assert not user.has_usable_password()
    page = client.get("/room/lobby/").content.decode()
    assert "Signed in as ada" in page
    assert f'"me": {user.pk}' in page


@pytest.mark.parametrize(("name", "error"), [("a", "2 to 30"), ("<b>x</b>", "2 to 30"), ("ADA", "taken")])
def test_a_bad_or_taken_name_is_refused_and_nobody_is_signed_in(client, name, error):
    User.objects.create_user("ada", password="secret")
    response = client.post("/sign-in/", {"name": name, "next": "/room/lobby/"})
    assert response.status_code == 200 and error in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert User.objects.count() == 1


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "javascript:alert(1)"])
def test_only_a_page_of_the_site_is_where_signing_in_goes_next(client, target):
    response = client.post("/sign-in/", {"name": "ada", "next": target})
    assert response["Location"] == "/"


def test_a_call_page_sends_a_visitor_to_sign_in_first_and_signing_out_ends_it(client):
    response = client.get("/call/7/?call=1")
    assert response.status_code == 302 and response["Location"] == "/sign-in/?next=%2Fcall%2F7%2F%3Fcall%3D1"
    client.post("/sign-in/", {"name": "ada"})
    response = client.post("/sign-out/", {"next": "/room/lobby/"})
    assert response["Location"] == "/room/lobby/"
    assert "_auth_user_id" not in client.session


# Look-alike names --------------------------------------------------------
#
# The account's name is the name given, normalised as Django normalises usernames (NFKC:
# fullwidth "ａｌｉｃｅ" is "alice") and case-folded: one account per name however it is typed.


def test_a_name_taken_while_this_sign_in_checked_is_taken_not_a_server_error(client):
    """Two sign-ins under one new name at once: the second is told the name is taken, not given a 500."""
    raced = []

    def another_sign_in_right_after_the_check(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not raced and sql.lstrip().upper().startswith("SELECT") and "auth_user" in sql:
            raced.append(sql)
            User.objects.create_user("carol")  # the other request's account, committed meanwhile
        return result

    with connection.execute_wrapper(another_sign_in_right_after_the_check):
        response = client.post("/sign-in/", {"name": "carol", "next": "/room/lobby/"})
    assert raced, "the view checked no name"
    assert response.status_code == 200 and "carol is taken" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert list(User.objects.values_list("username", flat=True)) == ["carol"]


def sign_in(server_url: str, name: str) -> httpx.Response:
    """Sign in under *name* on a real server, as a new browser does: the form's CSRF token, then the POST."""
    with httpx.Client(base_url=server_url, timeout=10) as browser:
        browser.get("/sign-in/")
        form = {"name": name, "next": "/room/lobby/", "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        return browser.post("/sign-in/", data=form)


@pytest.mark.server
def test_a_look_alike_of_a_taken_name_is_taken_on_a_real_server(tmp_path):
    env = project_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    manage(env, "migrate", "--verbosity", "0")
    with running_server("gunicorn-gevent", env, tmp_path / "server.log") as server:
        for first, again in [("alice", "ａｌｉｃｅ"), ("Élodie", "élodie"), ("zoë", "ZOË"), ("ＢＯＢ", "bob")]:
            assert sign_in(server.url, first).status_code == 302, server.log()
            response = sign_in(server.url, again)
            assert (response.status_code, f"{again} is taken" in response.text) == (200, True), server.log()[-3000:]
        # The same name typed the same way again: taken too.
        response = sign_in(server.url, "alice")
        assert (response.status_code, "alice is taken" in response.text) == (200, True)
    names = manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\nprint(sorted(User.objects.values_list('username', flat=True)))",
    )
    assert names.strip().splitlines()[-1] == "['alice', 'bob', 'zoë', 'élodie']"


def test_the_sign_in_page_shows_no_connection_pill_as_it_never_connects(client):
    assert 'id="status"' in client.get("/room/lobby/").content.decode()
    page = client.get("/sign-in/").content.decode()
    assert "realtime.js" not in page and 'id="status"' not in page
