"""The book's pages that read executed/ share one execution between builds until the records change."""

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
import records_cache  # noqa: E402


def _app(tmp_path):
    (tmp_path / "book" / "executed").mkdir(parents=True)
    (tmp_path / "_build" / ".jupyter_cache").mkdir(parents=True)
    config = SimpleNamespace(nb_execution_cache_path="")
    return SimpleNamespace(config=config, outdir=str(tmp_path / "_build" / "html"), srcdir=str(tmp_path / "book"))


def test_the_cache_is_emptied_when_a_record_changes_and_kept_while_none_does(tmp_path):
    app = _app(tmp_path)
    record = tmp_path / "book" / "executed" / "a.json"
    record.write_text("{}")
    records_cache.check_records(app)  # the first build: no fingerprint yet
    assert app.records_changed
    (tmp_path / "_build" / ".jupyter_cache").mkdir()
    records_cache.check_records(app)  # the next build, the same records: the cache stays
    assert not app.records_changed and (tmp_path / "_build" / ".jupyter_cache").is_dir()
    record.write_text('{"accuracy": 1}')
    records_cache.check_records(app)
    assert app.records_changed and not (tmp_path / "_build" / ".jupyter_cache").exists()
