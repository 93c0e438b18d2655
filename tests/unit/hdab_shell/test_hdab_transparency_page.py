"""The public transparency page: entries rendered as text, never as markup, with no external assets."""

from __future__ import annotations

from d4h.hdab.routes import _PAGE


def test_page_escapes_applicant_text_when_it_contains_markup() -> None:
    entry = {
        "entry": "application",
        "application_id": "app-1",
        "title": "<script>alert(1)</script>",
        "applicant": "Evil & Co",
        "purpose_label": "research",
        "public_summary": '<img src="https://tracker.example/x.png">',
    }
    html = _PAGE.render(node="HDAB", entries=[entry])
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html
    assert "Evil &amp; Co" in html


def test_page_says_so_when_the_register_is_empty() -> None:
    html = _PAGE.render(node="HDAB", entries=[])
    assert "No entries yet." in html
    assert "<link" not in html and "<script" not in html
