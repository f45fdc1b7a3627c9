"""camlab.errors: the one shape of every "choose one of" message."""

from __future__ import annotations

import pytest

from camlab.errors import CamError, check_choice


def test_a_valid_choice_is_returned():
    assert check_choice("METHOD", "cam", ("cam", "gradcam")) == "cam"


@pytest.mark.parametrize("where, message", [
    ("", "METHOD='lime'; choose one of cam, gradcam"),
    ("the splits of x", "METHOD='lime'; choose one of cam, gradcam (the splits of x)")])
def test_an_invalid_choice_names_every_valid_one(where, message):
    with pytest.raises(CamError) as error:
        check_choice("METHOD", "lime", ["cam", "gradcam"], where)
    assert str(error.value) == message
