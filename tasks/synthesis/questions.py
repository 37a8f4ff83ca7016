"""Question writing: a sampled subgraph and its answer become one question.

Templates per shape, with three twists from REDSearcher and ASearcher:

- **obfuscation**: a described root is written as what it is, not what it is called ("the
  organisation that was established in 1871 and has its headquarters in Dovra"), so matching a
  name alone does not answer it; later mentions say "that organisation";
- **tool-augmented** questions ask for something no page states: a difference of years, a sum of
  populations, which of two people was born first. The task carries the ``calculation`` over the
  looked-up values that answers it, the expression the oracle gives ``calculate``;
- an optional **paraphrase** by any model backend (a model spec, like the teacher's); the template's
  question is kept beside it, and a paraphrase that drops a name the question needs or leaks the
  answer is not used.

The eight two-hop templates of the first synthesiser are the wording of two-hop chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.corpus.world import ATTRIBUTES, RELATIONS
from tasks.search.tools import calculate
from tasks.synthesis.graph import Fact, KnowledgeGraph, Subgraph

# (first relation, second relation) -> question, for two-hop chains from a named entity
TWO_HOP_TEMPLATES: dict[tuple[str, str], str] = {
    ("founded_by", "born_in"): "In which city was the founder of {a} born?",
    ("born_in", "located_in"): "In which country is the city where {a} was born?",
    ("works_for", "headquartered_in"): "In which city is the headquarters of the organisation {a} works for?",
    ("published_by", "founded_by"): "Who founded the organisation that published {a}?",
    ("created_by", "born_in"): "In which city was the author of {a} born?",
    ("held_in", "located_in"): "In which country did {a} take place?",
    ("created_by", "spouse_of"): "Who is the spouse of the author of {a}?",
    ("organised_by", "headquartered_in"): "In which city is the organiser of {a} headquartered?",
}

# relation -> noun phrase for its object, given its subject: chains nest these
NOUN = {
    "located_in": "the country where {x} lies",
    "capital_of": "the country whose capital is {x}",
    "born_in": "the birthplace of {x}",
    "died_in": "the place where {x} died",
    "works_for": "the employer of {x}",
    "educated_at": "the place where {x} studied",
    "spouse_of": "the spouse of {x}",
    "founded_by": "the founder of {x}",
    "headquartered_in": "the headquarters city of {x}",
    "subsidiary_of": "the parent organisation of {x}",
    "created_by": "the author of {x}",
    "published_by": "the publisher of {x}",
    "held_in": "the host city of {x}",
    "organised_by": "the organiser of {x}",
    "set_in": "the city where {x} is set",
}

OPENER = {"person": "Who is {np}?"}  # everything else: "What is {np}?"


def clause(fact: Fact, obj: str) -> str:
    """What a fact says about its subject, as a relative clause: "was born in {obj}"."""
    if fact.is_attribute:
        template = ATTRIBUTES[fact.relation][1]
        return template.removeprefix("{s} ").removesuffix(".").format(v=fact.value)
    return RELATIONS[fact.relation][2].removeprefix("{s} ").removesuffix(".").format(o=obj)


@dataclass
class Written:
    question: str
    answer: str
    calculation: str = ""
    choices: list[str] = field(default_factory=list)


class _Namer:
    """Names entities as the question first mentions them, then refers back to them."""

    def __init__(self, graph: KnowledgeGraph, sub: Subgraph) -> None:
        self.graph, self.sub, self.mentioned = graph, sub, set()

    def __call__(self, node: str) -> str:
        if node not in self.sub.described:
            return self.graph.name(node)
        if node in self.mentioned:
            return f"that {self.graph.type_of(node)}"
        self.mentioned.add(node)
        attribute, relation = self.sub.described[node]
        kind = self.graph.type_of(node)
        return f"the {kind} that {clause(attribute, '')} and {clause(relation, self.graph.name(relation.object))}"


def write_question(graph: KnowledgeGraph, sub: Subgraph) -> Written:
    name = _Namer(graph, sub)
    own = [f for f in sub.facts if not any(f in d for d in sub.described.values())]
    shape = sub.pattern.removesuffix("+described")
    answer_type = graph.type_of(sub.answer) if sub.answer else ""
    if shape == "chain":
        relations = tuple(f.relation for f in own)
        if relations in TWO_HOP_TEMPLATES:
            return Written(TWO_HOP_TEMPLATES[relations].format(a=name(sub.root)), graph.name(sub.answer))
        phrase = name(sub.root)
        for fact in own:
            phrase = NOUN[fact.relation].format(x=phrase)
        opener = OPENER.get(answer_type, "What is {np}?")
        return Written(opener.format(np=phrase), graph.name(sub.answer))
    if shape.startswith("tool:"):
        return _tool_question(graph, sub, shape, name)
    extra = [clause(f, "") for f in own if f.is_attribute]
    if shape == "hub":
        clauses = [clause(f, name(f.object)) for f in own if not f.is_attribute]
    else:
        clauses = _converging_clauses(shape, own, sub, name)
    return Written(f"Which {answer_type} {_join(clauses + extra)}?", graph.name(sub.answer))


def _converging_clauses(shape: str, facts: list[Fact], sub: Subgraph, name) -> list[str]:
    anchor = sub.root
    first = name(anchor)
    again = name(anchor)  # a described anchor is "that organisation" the second time
    if shape == "converge:local-employee":
        return [f"works for {first}", f"was born in the city where {again} has its headquarters"]
    if shape == "converge:local-event":
        return [f"was organised by {first}", f"took place in the city where {again} has its headquarters"]
    if shape == "converge:house-author":
        return [f"was published by {first}", f"was written by someone who works for {again}"]
    if shape == "converge:home-setting":
        return [f"was written by {first}", f"is set in the city where {again} was born"]
    if shape == "clique:local-work":
        return [
            f"was published by {first}",
            f"is set in the city where {again} has its headquarters",
            f"was written by someone who works for {again} and was born in that same city",
        ]
    raise ValueError(f"no wording for shape {shape!r}")


def _tool_question(graph: KnowledgeGraph, sub: Subgraph, shape: str, name) -> Written:
    root = name(sub.root)
    again = name(sub.root)
    first, second = sub.lookups
    if shape == "tool:founding-age":
        founded, born = first.value, second.value[:4]
        expression = f"{founded} - {born}"
        question = (
            f"How many years passed between the birth year of the founder of {root} and the year "
            f"{again} was established?"
        )
        return Written(question, str(calculate(expression)), calculation=expression)
    if shape == "tool:earlier-born":
        author, founder = graph.name(first.subject), graph.name(second.subject)
        expression = f"{first.value} - {second.value}"
        question = (
            f"Who was born first: the author of {root} or the founder of the organisation that "
            f"published {again}?"
        )
        answer = author if calculate(expression) < 0 else founder
        return Written(question, answer, calculation=expression, choices=[author, founder])
    if shape == "tool:population-sum":
        expression = f"{first.value.replace(',', '')} + {second.value.replace(',', '')}"
        question = (
            f"What is the combined population of the city where {root} took place and the city "
            f"where the organiser of {again} has its headquarters?"
        )
        return Written(question, str(calculate(expression)), calculation=expression)
    raise ValueError(f"no wording for shape {shape!r}")


def answer_from_calculation(result: float | int, choices: list[str]) -> str:
    """What a calculation's result answers: the number itself, or for a comparison of two dates
    (first minus second) the earlier of the two choices."""
    if choices:
        return choices[0] if result < 0 else choices[1]
    return str(int(result)) if float(result).is_integer() else str(result)


def _join(clauses: list[str]) -> str:
    if len(clauses) == 1:
        return clauses[0]
    return ", ".join(clauses[:-1]) + " and " + clauses[-1]


# --- paraphrase ------------------------------------------------------------------------------------

PARAPHRASE_PROMPT = (
    "Rewrite this question so it reads naturally. Keep its meaning and every name, date and number "
    "exactly; do not answer it. Reply with the rewritten question only.\n\nQuestion: {question}"
)


def paraphrase_ok(original: str, paraphrase: str, must_keep: list[str], answer: str) -> bool:
    """A paraphrase is used only if it keeps every name and value the question needs and does not
    leak the answer."""
    text = paraphrase.strip()
    return bool(text) and all(m in text for m in must_keep) and answer not in text and text != original


def paraphrase_questions(spec: str, questions: list[str]) -> list[str]:
    """One paraphrase per question from the model behind ``spec`` (hf:, vllm: or openai:)."""
    from tasks.llm.engines import generator_from_spec

    generator = generator_from_spec(spec)
    prompts = [
        generator.render([{"role": "user", "content": PARAPHRASE_PROMPT.format(question=q)}])
        for q in questions
    ]
    replies = generator.generate(prompts, max_new_tokens=96, temperature=0.0, seed=0, stop=())
    return [reply.text.strip().splitlines()[0] if reply.text.strip() else "" for reply in replies]
