"""The settings model: strict values, one run reporting every error, suggestions, and loading without I/O."""

from __future__ import annotations

from unittest import mock

import pulumi
import pytest
from harness import PROJECT, RecordingMocks, layered_config

import settings
from settings import ConfigError, parse
from settings.deployer import complete_entra_admin

pytestmark = pytest.mark.unit

CLOSED = {"ingressInternal": "true"}


def problems(raw: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as refused:
        parse(raw, "dev")
    return str(refused.value).split("\n  - ")[1:]


@pytest.mark.parametrize("value", ["yes", "no", "1", "0", "on", "off", "y", "t", "enabled", ""])
def test_a_boolean_is_true_or_false_only(value: str) -> None:
    assert problems({**CLOSED, "protectResources": value}) == [
        f"config key 'protectResources': {value!r} is not accepted; expected true or false"
    ]


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("TRUE", True), (" False ", False)])
def test_true_and_false_as_yaml_writes_them_are_booleans(value: str, expected: bool) -> None:
    assert parse({**CLOSED, "protectResources": value}, "dev").protect_resources is expected


@pytest.mark.parametrize("value", ["3.0", "7 days", "0x10", "1e1"])
def test_a_number_is_a_whole_number_only(value: str) -> None:
    assert problems({**CLOSED, "backupRetentionDays": value}) == [
        f"config key 'backupRetentionDays': {value!r} is not accepted; expected a whole number: 7 to 35"
    ]


@pytest.mark.parametrize(
    ("misspelled", "meant"),
    [
        ("authmode", "authMode"),
        ("AuthMode", "authMode"),
        ("deployerCidr", "deployerCidrs"),
        ("logRetention", "logRetentionDays"),
    ],
)
def test_a_misspelled_key_gets_the_key_it_resembles(misspelled: str, meant: str) -> None:
    assert problems({**CLOSED, misspelled: "x"}) == [
        f"config key '{misspelled}' is not a key of this project; did you mean '{meant}'?"
    ]


def test_a_key_like_no_other_is_pointed_at_the_reference_not_given_every_key() -> None:
    (problem,) = problems({**CLOSED, "zzz": "x"})
    assert problem == "config key 'zzz' is not a key of this project; the keys are listed in docs/configuration.md"


def test_field_and_cross_key_errors_come_in_one_run() -> None:
    found = problems(
        {
            "backupRetentionDays": "3",  # a bound
            "protectResources": "yes",  # a boolean
            "highAvailability": "ZoneRedundant",  # across keys: not on Burstable
            "appSubnetCidr": "10.99.0.0/23",  # across keys: outside vnetCidr
            "existingDatabase": "true",  # across keys: needs existingServerId
            "authmod": "token",  # unknown
            "signIn": "none",  # no sign-in either: with the allow-list empty, the endpoint is anonymous
        }
    )
    assert len(found) == 7, found  # and the anonymous public endpoint, across four keys
    for key in ("backupRetentionDays", "protectResources", "highAvailability", "appSubnetCidr", "existingDatabase"):
        assert sum(f"config key '{key}'" in problem for problem in found) == 1, key
    assert any("did you mean 'authMode'" in problem for problem in found)
    assert any("would be public and anonymous" in problem for problem in found)


def test_a_rule_that_reads_an_invalid_key_stays_silent() -> None:
    # The subnet cannot be checked against a vnet that is itself refused; the endpoint rule does not
    # report a client list that is itself refused.
    assert problems({**CLOSED, "vnetCidr": "x", "appSubnetCidr": "10.99.0.0/23"}) == [
        "config key 'vnetCidr': 'x' is not accepted; expected an IPv4 address or CIDR range such as 203.0.113.7 "
        "or 203.0.113.0/24"
    ]
    (problem,) = problems({"allowedClientCidrs": '["0.0.0.0/0"]'})
    assert "narrower than the whole internet" in problem


def test_a_rule_that_asks_whether_a_key_is_set_speaks_beside_that_keys_own_error() -> None:
    found = problems({**CLOSED, "entraAdminObjectId": "not-a-guid", "existingEnvironmentId": "shared-env"})
    assert [problem.split(":")[0] for problem in found] == [
        "config key 'entraAdminObjectId'",
        "config key 'entraAdminPrincipalName'",
        "config key 'entraAdminPrincipalType'",
        "config key 'existingEnvironmentId'",
        "config key 'appEgressIps'",
    ]


def test_a_secret_is_never_echoed_even_beside_other_errors() -> None:
    password = "Adm1n-Pw-not-echoed"
    with pytest.raises(ConfigError) as refused:
        parse({"existingServerAdminPassword": password, "authMode": "x"}, "dev")
    assert password not in str(refused.value) and "'<secret>'" in str(refused.value)


def test_settings_are_frozen() -> None:
    parsed = parse(CLOSED, "dev")
    with pytest.raises(ValueError, match="frozen"):
        parsed.auth_mode = "password"


def test_load_reads_the_config_and_makes_no_call() -> None:
    recording = RecordingMocks()
    pulumi.runtime.set_mocks(recording, project=PROJECT, stack="dev", preview=False, organization="organization")
    pulumi.runtime.set_all_config(layered_config("dev"), [])
    with mock.patch("socket.socket", side_effect=AssertionError("load() opened a socket")):
        loaded = settings.load()
    assert recording.calls == [] and recording.resources == []
    assert loaded.stack == "dev" and loaded.entra_admin.object_id is None  # the deployer is a separate step
    completed = complete_entra_admin(loaded)
    assert [token for token, _ in recording.calls] == ["azure-native:authorization:getClientToken"]
    assert completed.entra_admin.complete and completed.entra_admin.principal_name == "pgmcp-deploy"
