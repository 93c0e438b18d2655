"""The opt-out hook: token derivation and Art. 71(3) timing of exclusions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from d4h.errors import ConfigError, UserError
from d4h.holder.optout import (
    OptOutEvent,
    OptOutList,
    excluded_person_ids,
    load_token_key,
    normalise_national_id,
    optout_token,
)

KEY = bytes(range(32))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_tokens_match_when_national_ids_differ_only_in_formatting() -> None:
    assert normalise_national_id(" 1980 0101-123 ") == "19800101123"
    assert optout_token(KEY, "1980 0101 123") == optout_token(KEY, "19800101123")
    assert optout_token(KEY, "ab-12") == optout_token(KEY, "AB12")


def test_tokens_differ_when_key_or_identifier_differs() -> None:
    assert optout_token(KEY, "19800101123") != optout_token(bytes(32), "19800101123")
    assert optout_token(KEY, "19800101123") != optout_token(KEY, "19800101124")
    assert len(optout_token(KEY, "1")) == 64


def test_person_is_excluded_when_opt_out_precedes_permit_grant() -> None:
    token = optout_token(KEY, "1")
    optouts = OptOutList((OptOutEvent(token, T0),))
    assert optouts.is_excluded(token, T0 + timedelta(days=1))
    assert optouts.is_excluded(token, T0)  # opted out at the very moment of the grant


def test_earlier_permit_is_unaffected_when_opt_out_comes_after_grant() -> None:
    token = optout_token(KEY, "1")
    optouts = OptOutList((OptOutEvent(token, T0),))
    assert not optouts.is_excluded(token, T0 - timedelta(seconds=1))


def test_person_is_included_again_when_opt_out_was_withdrawn_before_grant() -> None:
    token = optout_token(KEY, "1")
    optouts = OptOutList((OptOutEvent(token, T0), OptOutEvent(token, T0 + timedelta(days=10), "withdraw")))
    assert optouts.is_excluded(token, T0 + timedelta(days=5))
    assert not optouts.is_excluded(token, T0 + timedelta(days=11))


def test_opt_out_list_round_trips_when_serialised() -> None:
    events = (OptOutEvent(optout_token(KEY, "1"), T0), OptOutEvent(optout_token(KEY, "2"), T0, "withdraw"))
    original = OptOutList(events, T0)
    assert OptOutList.from_json(original.to_json()) == original


def test_malformed_list_is_refused_when_token_is_not_hex() -> None:
    with pytest.raises(UserError):
        OptOutList.from_json({"events": [{"token": "xyz", "at": "2026-01-01T00:00:00+00:00"}]})
    with pytest.raises(UserError):
        OptOutList.from_json({"nothing": []})


def test_excluded_person_ids_uses_stored_tokens_when_filtering() -> None:
    t1, t2 = optout_token(KEY, "1"), optout_token(KEY, "2")
    optouts = OptOutList((OptOutEvent(t1, T0),))
    table = [(10, t1), (20, t2), (30, None)]
    assert excluded_person_ids(table, optouts, T0 + timedelta(days=1)) == {10}
    assert excluded_person_ids(table, optouts, T0 - timedelta(days=1)) == frozenset()


def test_token_key_file_is_refused_when_short(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("00ff")
    with pytest.raises(ConfigError, match="shorter"):
        load_token_key(path)
    path.write_text(KEY.hex())
    assert load_token_key(path) == KEY
