"""The error a user can fix, and the check every "one of these values" setting goes through."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class CamError(Exception):
    """A problem the user can fix; scripts print its message without a traceback."""


def check_choice(name: str, value: Any, choices: Iterable[Any], where: str = "") -> Any:
    """Returns `value` when it is one of `choices`, else raises CamError naming them all.

    `name` is the setting as the user writes it (`METHOD`); `where` may say whose choices
    they are ("the splits of cam_shapes"). Every such message has the same shape:
    `METHOD='lime'; choose one of cam, gradcam`.
    """
    choices = list(choices)
    if value not in choices:
        owner = f" ({where})" if where else ""
        raise CamError(f"{name}={value!r}; choose one of "
                       f"{', '.join(str(choice) for choice in choices)}{owner}")
    return value
