"""The queue pool's settings: defaults, what is refused, and the round trip through the environment."""

from __future__ import annotations

import ipaddress
from dataclasses import fields

import pytest

from hostd.settings import Background, Settings, SettingsError
from hostd.settings.background import VARIABLES


def test_defaults_deliver_with_ten_second_timeouts_and_back_off_up_to_a_day() -> None:
    background = Settings.from_env({}).background
    assert background == Background()
    assert (background.hook_timeout, background.hook_retry_max, background.hook_allow_nets) == (10.0, 86400.0, ())


def test_every_setting_has_its_variable() -> None:
    assert set(VARIABLES) == {field.name for field in fields(Background)}


def test_the_exported_environment_gives_the_same_settings_back() -> None:
    given = Background.from_env({"HOSTD_HOOK_ALLOW_NETS": "10.1.0.0/16, fd00::/8", "HOSTD_QUEUE_HEARTBEAT": "0.5",
                                 "HOSTD_QUEUE_STALLED_AFTER": "2", "HOSTD_HOOK_DISABLE_AFTER": "7"})
    assert given.hook_allow_nets == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00::/8"))
    assert Background.from_env(given.environ()) == given


@pytest.mark.parametrize(("env", "message"), [
    ({"HOSTD_QUEUE_WORKERS": "0"}, "HOSTD_QUEUE_WORKERS='0' is not a positive whole number"),
    ({"HOSTD_HOOK_TIMEOUT": "soon"}, "HOSTD_HOOK_TIMEOUT='soon' is not a number of seconds"),
    ({"HOSTD_HOOK_RETRY_BASE": "nan"}, "must be a positive number of seconds"),
    ({"HOSTD_HOOK_ALLOW_NETS": "10.0.0.0/8,intranet"}, "'intranet' is not a network"),
    ({"HOSTD_QUEUE_HEARTBEAT": "5", "HOSTD_QUEUE_STALLED_AFTER": "10"}, "at least three heartbeats"),
], ids=["zero-workers", "words", "nan", "not-a-network", "stalled-before-three-beats"])
def test_bad_values_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)
