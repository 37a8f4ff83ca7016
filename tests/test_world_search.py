import pytest

from storage.schemas import Entity, Triple
from storage.store import read_rows
from tasks.corpus.world import RELATIONS, WorldConfig, generate_world
from tasks.search.tools import CalculationError, SearchTool, calculate, query_biased_snippet


def test_world_is_deterministic_and_seeded():
    a, b = generate_world(WorldConfig(seed=3)), generate_world(WorldConfig(seed=3))
    assert [d.text for d in a.documents] == [d.text for d in b.documents]
    assert [d.text for d in generate_world(WorldConfig(seed=4)).documents] != [d.text for d in a.documents]


def test_every_fact_is_stated_in_its_document(world_ref):
    entities = {e.id: e for e in read_rows(world_ref, Entity, "entities")}
    docs = {d["id"]: d["text"] for d in read_rows_dicts(world_ref)}
    triples = read_rows(world_ref, Triple, "triples")
    assert len({t.relation for t in triples}) == len(RELATIONS)
    for t in triples:
        sentence = RELATIONS[t.relation][2].format(s=entities[t.subject].name, o=entities[t.object].name)
        assert all(sentence in docs[d] for d in t.doc_ids)


def read_rows_dicts(ref):
    from storage.store import read_table

    return read_table(ref).to_pylist()


def test_search_ranks_the_entity_page_first(index_ref, world_ref):
    tool = SearchTool(index_ref.uri)
    person = next(e for e in read_rows(world_ref, Entity, "entities") if e.type == "person")
    hits, nothing = tool.search([f"{person.name} born in", "qqqqzzzz"], k=3)
    assert hits[0].doc_id == f"doc-{person.id}"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert nothing == []
    assert tool.open(f"doc-{person.id}").startswith(person.name)
    assert tool.open("no-such-doc") is None


def test_snippet_keeps_the_sentences_that_match_the_query():
    text = "Ann is a person. Ann was born in 1900. Ann studied at Kell Society. Ann works for Bram Group."
    snippet = query_biased_snippet(text, {"works"}, 50)
    assert "Bram Group" in snippet and len(snippet) < len(text)


def test_calculate_is_arithmetic_only():
    assert calculate("(2026 - 1938) * 2") == 176
    assert calculate("7 / 2") == 3.5
    assert calculate("2024-03-01 - 2024-02-01") == 29  # dates are day numbers: a leap February
    assert calculate("1,250 * 2") == 2500
    for bad in ["__import__('os')", "a + 1", "2 ** 1000", "1 / 0", "open('x')", "2024-02-30 - 1"]:
        with pytest.raises(CalculationError):
            calculate(bad)


def test_long_documents_open_page_by_page():
    from tasks.search.tools import open_page

    text = " ".join(f"Sentence {i} of a long page." for i in range(400))
    pages = {"long": ("Long Page", text), "short": ("Short", "A short page.")}
    first = open_page(pages.get, "long", page_chars=1000)
    assert first.startswith("Long Page (page 1 of ") and "open 'long page 2' for more" in first
    second = open_page(pages.get, "long page 2", page_chars=1000)
    assert "(page 2 of" in second and text[1000:2000] in second
    last = open_page(pages.get, "long#99", page_chars=1000)  # past the end: the last page
    assert last.split("\n")[0] == "Long Page (page 12 of 12)" and last.endswith(text[11000:])
    assert open_page(pages.get, "short", page_chars=1000) == "Short\nA short page."
    assert open_page(pages.get, "missing page 2") is None


def test_dense_and_hybrid_retrieval_find_the_page(shared_store, world_ref):
    from tasks.search.index import IndexConfig
    from tasks.stage import execute_stage

    index = execute_stage("index", shared_store, IndexConfig(dense=True), {"corpus": world_ref})
    works = [e for e in read_rows(world_ref, Entity, "entities") if e.type == "work"][:10]
    queries = [f"who wrote {w.name}" for w in works]
    for retrieval in ("dense", "hybrid"):
        tool = SearchTool(index.uri, retrieval=retrieval)
        results = tool.search(queries, k=5)
        found = sum(f"doc-{w.id}" in {h.doc_id for h in hits} for w, hits in zip(works, results, strict=True))
        assert found >= 9, (retrieval, found)
        assert all(len(hits) == 5 for hits in results)
    with pytest.raises(ValueError, match="dense=True"):
        SearchTool(
            shared_store.path(
                "index", execute_stage("index", shared_store, IndexConfig(), {"corpus": world_ref}).id
            ),
            retrieval="dense",
        )
