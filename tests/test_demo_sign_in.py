"""The demo's sign-in with a name alone (testproject/chat/calls.py): what calls between guests need."""

import pytest
from django.contrib.auth.models import User

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
