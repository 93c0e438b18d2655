"""Secret rotation re-keys every stored id, and later ingests agree with the re-keyed database."""

from __future__ import annotations

from pathlib import Path

from d4h.holder.engine import AnalyticsDB
from d4h.holder.ingest import ingest
from d4h.holder.omop_map import Mapper
from d4h.holder.omop_tables import CLINICAL_TABLES
from d4h.holder.pseudonymise import NodeSecret, load_secret, rekey_id, save_secret
from d4h.holder.rekey import rotate
from d4h.holder.vocabulary import Vocabulary

from .conftest import TOKEN_KEY


def test_rotation_rekeys_ids_and_later_ingest_adds_nothing_when_data_is_the_same(
    synth_dir: Path, secret: NodeSecret, tmp_path: Path
) -> None:
    secret_path = tmp_path / "secret.json"
    save_secret(secret_path, secret)
    new_key = b"second-rotation-key-of-32-bytes!"
    with AnalyticsDB.open(":memory:") as db:
        ingest([synth_dir], db, Mapper(secret, Vocabulary(), TOKEN_KEY))
        counts = {t: db.count(t) for t in CLINICAL_TABLES}
        old_people = sorted(int(r[0]) for r in db.query("SELECT person_id FROM cdm.person"))
        old_links = db.query(
            "SELECT count(*) FROM cdm.visit_occurrence v JOIN cdm.person p USING (person_id)"
        )

        rotated = rotate(secret_path, db, new_key)

        assert load_secret(secret_path) == rotated == secret.rotated(new_key)
        new_people = sorted(int(r[0]) for r in db.query("SELECT person_id FROM cdm.person"))
        assert new_people == sorted(rekey_id(new_key, p) for p in old_people)
        assert not set(new_people) & set(old_people)
        assert {t: db.count(t) for t in CLINICAL_TABLES} == counts
        assert (
            db.query("SELECT count(*) FROM cdm.visit_occurrence v JOIN cdm.person p USING (person_id)")
            == old_links
        )
        tokens = db.query(
            "SELECT count(*) FROM cdm_optout.person_token t JOIN cdm.person p USING (person_id)"
        )
        assert tokens == [(counts["person"],)]
        hexes = db.query(
            "SELECT count(*) FROM cdm.person WHERE person_source_value = printf('%016x', person_id)"
        )
        assert hexes == [(counts["person"],)]

        # Re-ingesting the same sources with the rotated secret finds every row already there.
        db.execute("DELETE FROM cdm.d4h_ingested_file")
        ingest([synth_dir], db, Mapper(rotated, Vocabulary(), TOKEN_KEY))
        assert {t: db.count(t) for t in CLINICAL_TABLES} == counts
