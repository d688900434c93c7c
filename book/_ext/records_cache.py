"""The pages that read ``executed/`` are executed once per change of the records, not once per build.

They run through myst-nb's execution cache like every chapter, so that the PDF and the HTML
built one after the other share one execution. The cache keys a page on its code alone and
cannot see the records change, so this extension fingerprints the records (every record's name
and content) when a build starts: where the fingerprint differs from the last build's, it empties
the execution cache and has Sphinx read every page that names ``executed`` again.
"""

import hashlib
import shutil
from pathlib import Path

from sphinx.application import Sphinx

FINGERPRINT = ".records-fingerprint"


def fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*.json")):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_records(app: Sphinx) -> None:
    cache = Path(getattr(app.config, "nb_execution_cache_path", "") or Path(app.outdir).parent / ".jupyter_cache")
    stamp = cache.parent / FINGERPRINT
    current = fingerprint(Path(app.srcdir) / "executed")
    app.records_changed = not stamp.is_file() or stamp.read_text() != current
    if app.records_changed:
        shutil.rmtree(cache, ignore_errors=True)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(current)


def pages_reading_records(app: Sphinx, env, added, changed, removed) -> list[str]:
    if not getattr(app, "records_changed", False):
        return []
    return [name for name in env.found_docs if "executed" in Path(env.doc2path(name)).read_text(encoding="utf-8")]


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", check_records)
    app.connect("env-get-outdated", pages_reading_records)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
