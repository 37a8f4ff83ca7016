"""The refresh flow: an unchanged corpus is a quick no-op; a changed one is rebuilt and linked."""

import time

from flows.refresh import RefreshConfig, refresh
from storage import ArtifactStore, Catalog
from tasks.corpus.user import CorpusConfig


def test_refresh_rebuilds_only_when_the_corpus_changes(prefect_harness, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.jsonl").write_text(
        '{"id": "1", "title": "Alder", "text": "Alder Mill stands on the river."}\n'
    )
    config = RefreshConfig(corpus=CorpusConfig(path=str(docs)), home=str(tmp_path / "home"))
    store = ArtifactStore(config.home)
    catalog = Catalog(store.catalog_path)

    first = refresh(config)
    assert first.changed and store.exists("corpus", first.corpus_id) and store.exists("index", first.index_id)

    def snapshot():
        """Every artifact's id and full _meta.json (build times included), and the lineage tables."""
        metas = {p.parent.name: p.read_text() for p in store.artifacts.rglob("_meta.json")}
        rows = catalog.query("SELECT id, created_at FROM artifacts ORDER BY id")
        return metas, rows, catalog.query("SELECT * FROM edges ORDER BY child, role")

    before = snapshot()
    started = time.perf_counter()
    again = refresh(config)
    assert time.perf_counter() - started < 15
    assert not again.changed and (again.corpus_id, again.index_id) == (first.corpus_id, first.index_id)
    assert snapshot() == before

    (docs / "a.jsonl").write_text(
        '{"id": "1", "title": "Alder", "text": "Alder Mill burned down in 1911."}\n'
    )
    changed = refresh(config)
    assert changed.changed and changed.corpus_id != first.corpus_id and changed.index_id != first.index_id
    # the new version supersedes the old: history, not an input (no edge, no ancestor)
    assert catalog.versions_of(changed.corpus_id) == {"supersedes": [first.corpus_id], "superseded_by": []}
    assert catalog.query("SELECT * FROM edges WHERE child = ?", [changed.corpus_id]) == []
    assert catalog.ancestors(changed.corpus_id) == []
    runs = catalog.query("SELECT flow_name, state FROM runs WHERE flow_name = 'trailforge-refresh'")
    assert runs and all(r["state"] == "Completed" for r in runs)  # built through a recorded run
    assert store.ref("index", changed.index_id).rows == 1
