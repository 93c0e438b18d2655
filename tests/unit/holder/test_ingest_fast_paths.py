"""The ingest hot paths give the same results as the plain ones they replace.

Keyed ids from precomputed HMAC states must equal RFC 2104 HMAC-SHA256 for every key length, and a
columnar DuckDB batch must store exactly what the row-by-row insert stores, NULLs included.
"""

from __future__ import annotations

import hmac
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from d4h.holder.engine import AnalyticsDB
from d4h.holder.omop_frame import omop_frame
from d4h.holder.omop_map import COLUMNS, Mapper
from d4h.holder.pseudonymise import NodeSecret, _Hmac, _to_id, rekey_id
from d4h.holder.vocabulary import Vocabulary


@pytest.mark.parametrize("length", [16, 32, 63, 64, 65, 200])
def test_precomputed_hmac_equals_rfc2104_when_key_has_any_length(length: int) -> None:
    key = bytes((i * 7 + length) % 256 for i in range(length))
    for msg in (b"", b"Patient\x1fp1", bytes(range(256)) * 3):
        assert _Hmac(key).digest(msg) == hmac.digest(key, msg, "sha256")


def test_record_id_follows_the_rekey_chain_when_secret_has_three_keys() -> None:
    keys = (b"k0-0123456789abcdef", b"k1-0123456789abcdef" * 5, b"k2-0123456789abcdef")
    expected = _to_id(hmac.digest(keys[0], b"Encounter\x1fe-9", "sha256"))
    for key in keys[1:]:
        expected = rekey_id(key, expected)
    assert NodeSecret(keys).record_id("Encounter", "e-9") == expected


def _schema(db: AnalyticsDB, table: str) -> str:
    return db.token_schema if table == "person_token" else db.schema


def _stored(db: AnalyticsDB, table: str) -> list[tuple[Any, ...]]:
    names = ", ".join(COLUMNS[table])
    return sorted(db.query(f"SELECT {names} FROM {_schema(db, table)}.{table}"), key=repr)  # noqa: S608 - constant names


def test_columnar_batch_stores_the_same_rows_as_row_inserts_when_nulls_and_dates_mix(tmp_path: Path) -> None:
    rows = [
        (1, 10, 3004410, date(2020, 1, 2), datetime(2020, 1, 2, 8, 30, 5), 32817, 7.25, 0, 0, 5,
         "4548-4", 0, "%", None),
        (2, 10, 0, date(1901, 12, 31), datetime(1901, 12, 31, 23, 59, 59), 32817, None, 4, 0, None,
         None, 0, None, "10828004"),
        (3, 11, 0, date(2099, 6, 30), None, 32817, -1e300, 0, 8554, 6, "x" * 50, 0, "mg/dL", None),
        # The same instant as row 1 (one visit): distinct instants are converted once, then looked up.
        (4, 12, 0, date(2020, 1, 2), datetime(2020, 1, 2, 8, 30, 5), 32817, 1.0, 0, 0, 5, None, 0, None, None),
    ]  # fmt: skip
    plain = AnalyticsDB.open(str(tmp_path / "plain.duckdb"))
    fast = AnalyticsDB.open(str(tmp_path / "fast.duckdb"))
    for db in (plain, fast):
        db.create_tables(["measurement"])
    plain.insert_rows("measurement", COLUMNS["measurement"], rows)
    fast.insert_frame("measurement", omop_frame("measurement", COLUMNS["measurement"], rows))
    assert _stored(fast, "measurement") == _stored(plain, "measurement")
    assert len(_stored(fast, "measurement")) == 4


def test_columnar_batch_keeps_mapped_rows_when_a_population_is_written(
    tmp_path: Path, synth_dir: Path
) -> None:
    import orjson

    mapper = Mapper(NodeSecret((b"unit-test-node-key-0123456789abc",)), Vocabulary(), bytes(32))
    batches: dict[str, list[tuple[Any, ...]]] = {}
    for path in sorted(synth_dir.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            for table, row in mapper.map(orjson.loads(line)) or ():
                batches.setdefault(table, []).append(row)
    plain = AnalyticsDB.open(str(tmp_path / "plain.duckdb"))
    fast = AnalyticsDB.open(str(tmp_path / "fast.duckdb"))
    tables = sorted(batches)
    for db in (plain, fast):
        db.create_tables([t for t in tables if t != "person_token"])
    for table in tables:
        plain.insert_rows(table, COLUMNS[table], batches[table], schema=_schema(plain, table))
        frame = omop_frame(table, COLUMNS[table], batches[table])
        fast.insert_frame(table, frame, schema=_schema(fast, table))
    assert {"person", "person_token", "visit_occurrence", "measurement", "drug_exposure"} <= set(tables)
    for table in tables:
        assert _stored(fast, table) == _stored(plain, table), table


def test_datetime_column_keeps_python_objects_when_values_are_not_naive_datetimes() -> None:
    import numpy as np

    from d4h.holder.omop_frame import _column

    naive = _column(
        "datetime", np.array([datetime(2020, 1, 2, 3, 4, 5), None, datetime(2020, 1, 2, 3, 4, 5)])
    )
    assert naive.dtype == np.dtype("datetime64[ns]") and np.isnat(naive[1])
    assert naive[2] == np.datetime64("2020-01-02T03:04:05")
    aware = datetime(2020, 1, 2, tzinfo=UTC)
    for odd in ([aware, None], [date(2020, 1, 2)]):
        assert _column("datetime", np.array(odd, dtype=object)).dtype == object
